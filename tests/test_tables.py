"""Reader tables: one cell per mean and interval, n/a instead of NaN, no bare index, split widths."""

import math

import pandas as pd
import pytest

from encsteal import tables


def test_cells():
    assert tables.number(float("nan")) == "n/a" and tables.number(None) == "n/a"
    assert tables.number(1234) == "1,234" and tables.number(3.14159, 2) == "3.14"
    assert tables.interval(61.23, 59.81, 62.64) == "61.2 [59.8, 62.6]"
    assert tables.interval(math.nan, 1, 2) == "n/a" and tables.interval(5.0, math.nan, 1) == "5.0"


def test_interval_table_uses_t_intervals_and_fills_gaps():
    grid = pd.DataFrame(
        {
            "loss": ["mse"] * 5 + ["infonce"] * 5 + ["barlow"],
            "task": ["a"] * 10 + ["a"],
            "acc": [1, 2, 3, 4, 5, 2, 2, 2, 2, 2, 7.0],
        }
    )
    t = tables.interval_table(grid, "loss", "task", "acc")
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert t.loc["mse", "a"] == f"3.0 [{3 - half:.1f}, {3 + half:.1f}]"
    assert t.loc["infonce", "a"] == "2.0 [2.0, 2.0]" and t.loc["barlow", "a"] == "7.0"
    grid2 = pd.concat([grid, pd.DataFrame({"loss": ["mse"], "task": ["b"], "acc": [1.0]})])
    assert tables.interval_table(grid2, "loss", "task", "acc").loc["infonce", "b"] == "n/a"


def test_for_readers_and_split():
    raw = pd.DataFrame({"model": ["victim", "copy"], "probe": [61.234, float("nan")], "n": [5, 5]})
    t = tables.for_readers(raw, digits=1)
    assert t.index.name == "model" and list(t.probe) == ["61.2", "n/a"] and tables.has_missing([t])
    wide = pd.DataFrame([range(14)], columns=[f"c{i}" for i in range(14)])
    parts = tables.split_wide(wide, 6)
    assert [p.shape[1] for p in parts] == [6, 6, 2]
    with pytest.raises(ValueError, match="max_columns"):
        tables.split_wide(wide, 0)


def test_to_markdown_formats_numbers_names_rows_and_shows_na() -> None:
    from encsteal.tables import to_markdown

    md = to_markdown(pd.DataFrame({"loss": ["mse", "infonce"], "accuracy (%)": [61.234, float("nan")]}))
    lines = md.splitlines()
    assert lines[0].split("|")[1].strip() == "loss"  # the first column became the row names
    assert "61.2" in lines[2] and "61.23" not in lines[2]
    assert lines[3].split("|")[2].strip() == "n/a"


def test_to_markdown_flattens_multi_level_columns_and_escapes_pipes() -> None:
    from encsteal.tables import to_markdown

    columns = pd.MultiIndex.from_tuples([("in-distribution", "STL10"), ("out", "a|b")])
    md = to_markdown(pd.DataFrame([[1.0, 2.0]], index=pd.Index(["mse"], name="loss"), columns=columns))
    assert "in-distribution: STL10" in md and "out: a\\|b" in md


@pytest.mark.parametrize(
    "table, message",
    [
        (pd.DataFrame({"a": ["x", "nan"]}, index=pd.Index(["r", "s"], name="row")), "missing cells"),
        (pd.DataFrame({"a": ["x", ""]}, index=pd.Index(["r", "s"], name="row")), "missing cells"),
        (pd.DataFrame({f"c{i}": ["1"] for i in range(7)}, index=pd.Index(["r"], name="row")), "split it"),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), "bare 0, 1, 2 index"),
    ],
)
def test_check_for_readers_refuses_what_a_reader_should_not_see(table: pd.DataFrame, message: str) -> None:
    from encsteal.tables import check_for_readers

    with pytest.raises(ValueError, match=message):
        check_for_readers(table)
