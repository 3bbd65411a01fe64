"""The claims page: every claim's judge is wired, missing chapters are 'not evaluated', results of
another run are an error. (Each judge's own outcomes are tested beside its chapter.)"""

import importlib

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
