"""Tables for readers: formatted cells (mean with its 95 % interval in one cell), explicit "n/a"
instead of NaN, named indexes, and tables split so that none is wider than the text column.
Every chapter formats the tables it shows with these functions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from encsteal.stats import mean_interval

NA = "n/a"
"""What a cell without a value shows (the table's footnote says why)."""
MAX_COLUMNS = 6
"""Data columns that fit the book's text column at the default font size."""


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def number(value: object, digits: int = 1) -> str:
    """A number with ``digits`` decimals (thousands separated), or :data:`NA`."""
    if is_missing(value):
        return NA
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.{digits}f}"
    return str(value)


def interval(mean: float, low: float, high: float, digits: int = 1) -> str:
    """``mean [low, high]``, e.g. ``61.2 [59.8, 62.6]``; :data:`NA` when the mean is missing."""
    if is_missing(mean):
        return NA
    if is_missing(low) or is_missing(high):
        return number(mean, digits)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def interval_table(
    data: pd.DataFrame, rows: str, columns: str | None, value: str, digits: int = 1, confidence: float = 0.95
) -> pd.DataFrame:
    """Mean and ``confidence`` interval over seeds of ``value`` for each ``rows`` (x ``columns``)
    group, one formatted cell each; a group with a single value shows it alone, an absent one n/a."""
    keys = [rows] + ([columns] if columns else [])

    def cell(values: pd.Series) -> str:
        finite = values.dropna().to_numpy(dtype=float)
        if len(finite) == 0:
            return NA
        if len(finite) == 1:
            return number(float(finite[0]), digits)
        iv = mean_interval(finite, confidence)
        return interval(iv.mean, iv.low, iv.high, digits)

    cells = data.groupby(keys, sort=False)[value].apply(cell)
    table = cells.unstack(columns) if columns else cells.to_frame(value)
    return table.fillna(NA)


def for_readers(table: pd.DataFrame, digits: int = 1, index_name: str | None = None) -> pd.DataFrame:
    """Format every cell (numbers to ``digits`` decimals, missing to n/a) and give the index a
    name; a bare 0, 1, 2 index is replaced by the first column."""
    out = table.copy()
    if isinstance(out.index, pd.RangeIndex) and len(out.columns):
        out = out.set_index(out.columns[0])
    if index_name is not None:
        out.index.name = index_name
    return out.apply(lambda col: col.map(lambda v: number(v, digits))).astype(str)


def split_wide(table: pd.DataFrame, max_columns: int = MAX_COLUMNS) -> list[pd.DataFrame]:
    """The table in pieces of at most ``max_columns`` data columns (the index repeated in each)."""
    if max_columns < 1:
        raise ValueError(f"max_columns must be >= 1, got {max_columns}.")
    return [table.iloc[:, s : s + max_columns] for s in range(0, max(len(table.columns), 1), max_columns)]


def has_missing(tables: Sequence[pd.DataFrame]) -> bool:
    """Whether any cell shows n/a (the page then needs its footnote)."""
    return any((t == NA).to_numpy().any() for t in tables)


def flat_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Multi-level column labels joined into one line each (``("in-distribution", "STL10")`` ->
    ``"in-distribution: STL10"``), so that a Markdown table keeps them readable."""
    if not isinstance(table.columns, pd.MultiIndex):
        return table
    out = table.copy()
    out.columns = [": ".join(str(level) for level in label if str(level)) for label in table.columns]
    return out


_MISSING_TEXT = frozenset({"nan", "NaN", "<NA>", "None", "NaT", ""})


def check_for_readers(table: pd.DataFrame, max_columns: int = MAX_COLUMNS) -> None:
    """Raise if ``table`` is not fit for a page: a missing-value cell (NaN, None, empty: write
    :data:`NA` and say why in the caption), more than ``max_columns`` data columns (split it with
    :func:`split_wide` or transpose it) or a bare 0, 1, 2 index (name the rows)."""
    if len(table.columns) > max_columns:
        raise ValueError(
            f"The table has {len(table.columns)} data columns; at most {max_columns} fit the text column: "
            "split it with encsteal.tables.split_wide or transpose it."
        )
    if isinstance(table.index, pd.RangeIndex):
        raise ValueError("The table has a bare 0, 1, 2 index: name its rows (encsteal.tables.for_readers does).")
    cells = table.astype(str).to_numpy()
    bad = sorted({c for c in cells.flatten() if c.strip() in _MISSING_TEXT})
    if table.isna().to_numpy().any() or bad:
        raise ValueError(f"The table has missing cells ({bad or 'NaN'}): show {NA!r} and say why in the caption.")


def to_markdown(table: pd.DataFrame, digits: int = 1, max_columns: int = MAX_COLUMNS) -> str:
    """``table`` as a Markdown table for a page (through :func:`for_readers` unless every cell is
    already text), checked by :func:`check_for_readers`."""
    table = flat_columns(table)
    if not all(table[c].map(lambda v: isinstance(v, str)).all() for c in table.columns):
        table = for_readers(table, digits)
    check_for_readers(table, max_columns)
    escaped = table.map(lambda v: " ".join(str(v).split()).replace("|", "\\|"))
    escaped.index = [str(i).replace("|", "\\|") for i in table.index]
    escaped.index.name = None if table.index.name is None else str(table.index.name).replace("|", "\\|")
    escaped.columns = [str(c).replace("|", "\\|") for c in table.columns]
    return escaped.to_markdown(disable_numparse=True)
