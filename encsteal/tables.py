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
