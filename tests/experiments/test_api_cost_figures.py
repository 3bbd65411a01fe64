"""Chapter 1's figures: what each draws comes from its table, the paper's numbers sit where the paper
puts them, no figure is wider than the text column, and bad input is refused."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from encsteal import paper_tables
from encsteal.experiments import api_cost
from encsteal.experiments import api_cost_figures as figures
from tests.experiments.test_api_cost import synthetic_chapter

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def ch():
    return synthetic_chapter()


@pytest.fixture(autouse=True)
def _close():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _fits(fig):
    """Not wider than the text column, labels and legends included (what ``savefig.bbox: tight`` keeps)."""
    assert fig.get_size_inches()[0] <= figures.WIDTH
    assert fig.get_tightbbox(fig.canvas.get_renderer()).width <= figures.WIDTH + 0.05


def test_curves_figure_draws_each_outputs_means_and_the_victim(ch):
    fig = figures.curves_figure(ch.curves, ch.margin_summary)
    _fits(fig)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["mnistm", "photocrops (not judged)"]
    mnistm = axes[0]
    rep = ch.curves[(ch.curves.task == "mnistm") & (ch.curves.output == "representation")].sort_values("budget")
    line = next(ln for ln in mnistm.get_lines() if ln.get_label() == "representation")
    assert np.allclose(line.get_xdata(), rep.budget) and np.allclose(line.get_ydata(), rep["mean"])
    victim = next(ln for ln in mnistm.get_lines() if ln.get_label() == "victim")
    assert victim.get_ydata()[0] == pytest.approx(ch.margin_summary.loc["mnistm", "victim few_label"])


def test_leakage_figure_puts_the_papers_sizes_beside_our_shares(ch):
    summary = api_cost.leakage_summary(ch.scores)
    sizes = api_cost.values_per_answer(ch.outputs)
    one_task = summary[summary.task == "mnistm"]
    fig = figures.leakage_vs_size_figure(one_task, sizes, ch.judged)
    _fits(fig)
    top, ax = fig.axes[:2]
    paper_x = sorted({ln.get_xdata()[0] for ln in top.get_lines()})
    assert paper_x == sorted(paper_tables.API_DIMENSIONS.values())
    points = ax.containers[0].lines[0]  # the errorbar's markers
    expected = one_task[one_task.output != api_cost.RANDOM]
    assert np.allclose(points.get_xdata(), [sizes[o] for o in expected.output])
    assert np.allclose(points.get_ydata(), expected.share)
    with pytest.raises(ValueError, match="no output"):
        figures.leakage_vs_size_figure(summary, {"nothing": 3}, ch.judged)
    with pytest.raises(ValueError, match="share low"):
        figures.leakage_vs_size_figure(summary.drop(columns="share low"), sizes, ch.judged)


def test_cost_ratio_figure_draws_every_setup_and_compute_price_without_free_queries(ch):
    fig = figures.cost_ratio_figure(ch.cost_grid)
    _fits(fig)
    setups, computes = ch.cost_grid.setup.nunique(), ch.cost_grid.compute_per_hour.nunique()
    for ax in fig.axes:
        curves = [
            ln for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_xdata()[0] > 0 and ln.get_marker() == "o"
        ]
        assert len(curves) == setups * computes
        assert all((np.asarray(ln.get_xdata()) > 0).all() for ln in curves)  # price 0 left out
    with pytest.raises(ValueError, match="no positive API price"):
        figures.cost_ratio_figure(ch.cost_grid[ch.cost_grid.api_per_1k == 0])


def test_cost_figure_sets_the_quoted_ratio_beside_our_range(ch):
    quoted = 5713.92 / 72.49  # the blog's figures, typed here independently of paper_tables
    assert api_cost.quoted_ratio() == pytest.approx(quoted)
    fig = figures.cost_paper_vs_ours_figure(ch.cost_grid, api_cost.quoted_ratio())
    _fits(fig)
    ax = fig.axes[0]
    diamond = next(ln for ln in ax.get_lines() if ln.get_marker() == "D")
    assert diamond.get_xdata()[0] == pytest.approx(quoted)
    segments = ax.collections[0].get_segments()
    ranges = ch.cost_grid.groupby(["setup", "accounting"], sort=False).train_over_steal.agg(["min", "max"])
    assert len(segments) == 1 and len(ax.collections) == len(ranges)
    lows = sorted(c.get_segments()[0][0][0] for c in ax.collections)
    assert np.allclose(lows, sorted(ranges["min"]))
    with pytest.raises(ValueError, match="positive"):
        figures.cost_paper_vs_ours_figure(ch.cost_grid, 0.0)


def test_chapter_figures_are_every_figure_of_the_page(ch):
    made = figures.chapter_figures(ch)
    assert set(made) == {"curves", "leakage_vs_paper", "cost_ratio", "cost_vs_paper"}
    for fig in made.values():
        _fits(fig)


def test_figures_refuse_tables_without_their_columns(ch):
    with pytest.raises(ValueError, match="mean"):
        figures.curves_figure(ch.curves.drop(columns="mean"), ch.margin_summary)
    with pytest.raises(ValueError, match="no curve"):
        figures.curves_figure(ch.curves.iloc[:0], ch.margin_summary)
    with pytest.raises(ValueError, match="train_over_steal"):
        figures.cost_ratio_figure(pd.DataFrame({"setup": []}))
