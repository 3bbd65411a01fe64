"""The claims page: every claim's judge is wired, missing chapters are 'not evaluated', results of
another run are an error. (Each judge's own outcomes are tested beside its chapter.)"""

import importlib

import pandas as pd
import pytest

from encsteal.experiments import claims
from encsteal.notebook import StaleResults


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=lambda c: c.id)
def test_every_claim_names_an_existing_judge(claim):
    module, name = claim.judge.split(":")
    assert callable(getattr(importlib.import_module(f"encsteal.experiments.{module}"), name))


def test_judge_all_runs_each_judge_on_its_chapter():
    seen = []

    def fake(results, **options):
        seen.append((results["chapter"], options))
        return claims.Verdict("c", "e", "partly reproduced")

    claims._unused = fake  # a judge that records what it was given
    try:
        wired = tuple(claims.Claim(c.id, c.text, c.chapter, "claims:_unused", c.options) for c in claims.CLAIMS)
        table = claims.judge_all(lambda ch: {"chapter": ch}, wired)
    finally:
        del claims._unused
    assert list(table.verdict) == ["partly reproduced"] * len(claims.CLAIMS)
    assert seen[0] == ("losses", {"barlow": "barlow"}) and seen[1] == ("losses", {"barlow": "barlow_official"})


def test_a_stale_chapter_is_an_error_and_a_missing_one_not_evaluated():
    def missing(chapter):
        raise FileNotFoundError(chapter)

    table = claims.judge_all(missing)
    assert set(table.verdict) == {"not evaluated"}
    assert claims.verdict_counts(table)["n_missing"] == len(table) == len(claims.CLAIMS)

    def stale(chapter):
        raise StaleResults(chapter)

    with pytest.raises(StaleResults):
        claims.judge_all(stale)


def test_a_verdict_must_be_one_of_the_four():
    with pytest.raises(ValueError, match="Allowed: reproduced"):
        claims.Verdict("c", "e", "mostly")


def _verdict_rows() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"id": "C1", "claim": "A claim.", "chapter": "losses", "paper": "75.5 %", "ours": "61.2 [60.1, 62.3]",
             "evidence": "e1", "verdict": "reproduced"},
            {"id": "C3", "claim": "Another.", "chapter": "api_cost", "paper": "n/a", "ours": "n/a",
             "evidence": "e2\nsecond line", "verdict": "not evaluated"},
        ]
    )  # fmt: skip


def test_at_a_glance_links_each_claim_to_its_chapter_with_paper_ours_and_verdict() -> None:
    from encsteal.experiments.claims import at_a_glance
    from encsteal.tables import to_markdown

    table = at_a_glance(_verdict_rows(), {"losses": "02_losses", "api_cost": "01_api_cost"})
    assert list(table.index) == ["C1", "C3"] and table.index.name == "id"
    assert table.loc["C1", "claim"] == "[A claim.](02_losses.ipynb) (chapter 2)"
    assert table.loc["C1", "paper"] == "75.5 %" and table.loc["C1", "ours (95 % interval)"] == "61.2 [60.1, 62.3]"
    assert table.loc["C3", "verdict"] == "**not evaluated**"
    assert "| C3 " in to_markdown(table)  # fit for a page: no missing cell, named rows


def test_at_a_glance_refuses_a_chapter_without_a_page() -> None:
    from encsteal.experiments.claims import at_a_glance

    with pytest.raises(ValueError, match="No page for chapter"):
        at_a_glance(_verdict_rows(), {"losses": "02_losses"})


def test_verdict_table_and_saved_verdicts_round_trip() -> None:
    from encsteal.experiments.claims import saved_verdicts, verdict_table
    from encsteal.tables import to_markdown

    rows = _verdict_rows()
    again = saved_verdicts({"verdicts": rows.to_dict("records")})
    pd.testing.assert_frame_equal(again, rows)
    md = to_markdown(verdict_table(again))
    assert "e2 second line" in md and "**reproduced**" in md  # one line per row
    with pytest.raises(ValueError, match="no verdicts"):
        saved_verdicts({"other": 1})


def test_every_claim_has_a_short_name_for_the_glance() -> None:
    from encsteal.experiments.claims import CLAIMS, SHORT

    assert set(SHORT) == {c.id for c in CLAIMS}
    assert all(len(c.short) <= 60 for c in CLAIMS)
