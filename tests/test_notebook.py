"""Chapter set-up and result files: unknown names stop a chapter, results carry their run's stamp
and a page refuses results of another run."""

import json

import pytest

from encsteal import notebook


def _namespace(**values):
    return {"In": [], "Out": {}, "get_ipython": print, "_": None, "profile": "smoke", **values}


def test_setup_resolves_the_profile_and_passed_values(tmp_path):
    ch = notebook.setup("losses", _namespace(seed=None, budget=160, results_dir=str(tmp_path)))
    assert ch.p.budget == 160 and ch.p.profile == "smoke" and ch.p.seed == 0
    assert ch.passed == {"profile": "smoke", "budget": 160, "results_dir": str(tmp_path)}


def test_a_misspelled_parameter_stops_the_chapter_with_the_known_names():
    with pytest.raises(ValueError, match="Unknown parameter 'budjet'. Did you mean 'budget'.*seed"):
        notebook.setup("losses", _namespace(budjet=10))


def test_results_of_another_run_are_refused(tmp_path):
    ch = notebook.setup("losses", _namespace(results_dir=str(tmp_path)))
    path = ch.save_results({"x": 1.5})
    assert json.loads(path.read_text())["stamp"] == ch.stamp
    claims = notebook.setup("claims", _namespace(results_dir=str(tmp_path)))
    assert claims.stamp == ch.stamp and claims.load_results("losses") == {"x": 1.5}
    rerun = notebook.setup("losses", _namespace(results_dir=str(tmp_path), seed=3))
    assert rerun.stamp != ch.stamp
    rerun.save_results({"x": 2.5})
    with pytest.raises(notebook.StaleResults, match="chapter 'losses'.*Rebuild chapter 'losses'"):
        claims.load_results("losses")
    with pytest.raises(FileNotFoundError, match="api_cost"):
        claims.load_results("api_cost")


def test_results_dir_threads_do_not_change_the_stamp():
    a = notebook.run_stamp("quick", {"results_dir": "x", "threads": 1})
    assert a == notebook.run_stamp("quick", {}) != notebook.run_stamp("smoke", {})
