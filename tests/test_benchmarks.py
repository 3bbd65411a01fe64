"""The performance appendix's tables, figure, sentence and saved results, from synthetic measurements
(nothing is timed here)."""

import matplotlib
import pandas as pd
import pytest

from encsteal import benchmarks, tables

matplotlib.use("Agg")

ONCE, AGAIN = "steal, augment=none, query once", "steal, augment=none, re-query every epoch (official)"


def _perf(once=300.0, again=100.0):
    return pd.DataFrame(
        [
            {"what": "supervised victim training", "images_per_s": 900.0, "seconds": 2.5, "queries": float("nan")},
            {"what": ONCE, "images_per_s": once, "seconds": 1.0, "queries": 1000.0},
            {"what": AGAIN, "images_per_s": again, "seconds": 3.0, "queries": 5000.0},
            {
                "what": "few-label probe (10 per class)",
                "images_per_s": float("nan"),
                "seconds": 0.25,
                "queries": float("nan"),
            },
        ]
    ).set_index("what")


def test_reader_table_shows_na_where_a_workload_has_no_number():
    table = benchmarks.reader_table(_perf())
    tables.check_for_readers(table)
    assert table.index.name == "workload"
    assert table.loc[ONCE].tolist() == ["300.0", "1.00", "1,000"]
    assert table.loc["few-label probe (10 per class)"].tolist() == [tables.NA, "0.25", tables.NA]
    with pytest.raises(ValueError, match="seconds"):
        benchmarks.reader_table(_perf().drop(columns="seconds"))


def test_machine_table_names_its_rows_and_says_none():
    table = benchmarks.machine_table({"processor": "x86_64", "threads": 1, "cuda": None})
    tables.check_for_readers(table)
    assert table.loc["cuda", "value"] == "none" and table.index.name == "machine"
    assert set(benchmarks.machine_table().index) == set(benchmarks.machine())


def test_build_times_without_a_record_show_one_na_row():
    def missing(name):
        raise FileNotFoundError(name)

    times, totals = benchmarks.build_times_table(missing)
    assert totals == {"performance_chapters_seconds": 0.0, "performance_build_jobs": 0.0}
    shown = benchmarks.build_times_reader(times)
    tables.check_for_readers(shown)
    assert shown["seconds"].tolist() == [tables.NA]


def test_build_times_from_the_builders_record():
    record = {"seconds": {"api_cost": 95.4, "losses": None, "imagenet": 1234.0}, "jobs": 2, "wall_seconds": 1300.0}
    times, totals = benchmarks.build_times_table(lambda name: record)
    assert totals == {"performance_chapters_seconds": 1300.0, "performance_build_jobs": 2.0}
    shown = benchmarks.build_times_reader(times)
    tables.check_for_readers(shown)
    assert shown["seconds"].to_dict() == {"api_cost": "95", "imagenet": "1,234"}  # no time: left out


def test_throughput_figure_draws_one_bar_per_measured_speed():
    fig = benchmarks.throughput_figure(_perf(), {"processor": "x86_64", "threads": 1})
    bars = fig.axes[0].patches
    assert sorted(b.get_width() for b in bars) == [100.0, 300.0, 900.0]
    assert fig.get_size_inches()[0] <= 9.0 and "1 thread" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="no workload"):
        benchmarks.throughput_figure(_perf().assign(images_per_s=float("nan")), {})
    import matplotlib.pyplot as plt

    plt.close("all")


def test_headline_sentence_follows_the_measured_ratio():
    assert benchmarks.headline(_perf())["performance_steal_ratio"] == pytest.approx(3.0)
    assert "is 3.00 times as fast" in benchmarks.headline_text(_perf())["performance_steal_text"]
    slower = benchmarks.headline_text(_perf(once=90.0))["performance_steal_text"]
    assert "was not faster here" in slower and "0.90" in slower


def test_results_hold_every_measurement_and_the_build_times():
    times = pd.DataFrame({"seconds": [12.0]}, index=pd.Index(["api_cost"], name="chapter"))
    saved = benchmarks.results(_perf(), {"processor": "x86_64"}, times)
    assert saved["machine"] == {"processor": "x86_64"} and saved["build_seconds"] == {"api_cost": 12.0}
    assert [r["what"] for r in saved["measurements"]] == list(_perf().index)
