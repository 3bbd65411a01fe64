"""The result cache and checkpoints: hashing, atomic writes, strict loading, no pickles."""

import json

import pytest
import torch

from encsteal.cache import ResultCache, config_key
from encsteal.checkpoint import load_checkpoint, save_checkpoint
from encsteal.models import SmallConvNet


def test_config_key_changes_with_config():
    assert config_key("victim", {"a": 1}) == config_key("victim", {"a": 1})
    assert config_key("victim", {"a": 1}) != config_key("victim", {"a": 2})
    assert config_key("victim", {"a": 1}) != config_key("stolen", {"a": 1})


def test_get_or_compute_computes_once(tmp_path):
    cache = ResultCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3.0)}, {"note": "hi"}

    t1, m1 = cache.get_or_compute("k", {"c": 1}, compute)
    t2, m2 = cache.get_or_compute("k", {"c": 1}, compute)
    assert len(calls) == 1 and torch.equal(t1["x"], t2["x"]) and m2["note"] == "hi"
    cache.get_or_compute("k", {"c": 2}, compute)
    assert len(calls) == 2
    assert not list(tmp_path.rglob("*.tmp")), "no temporary files left behind"


def test_disabled_cache_never_stores(tmp_path):
    cache = ResultCache(tmp_path, enabled=False)
    cache.put("k", {"c": 1}, {"x": torch.zeros(1)}, {})
    assert cache.get("k", {"c": 1}) is None and not any(tmp_path.iterdir())


def test_entry_without_sidecar_is_ignored(tmp_path):
    cache = ResultCache(tmp_path)
    cache.put("k", {"c": 1}, {"x": torch.zeros(1)}, {})
    _, meta_path = cache.paths("k", {"c": 1})
    meta_path.unlink()
    assert cache.get("k", {"c": 1}) is None


def test_failed_compute_leaves_nothing(tmp_path):
    cache = ResultCache(tmp_path)

    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", {"c": 1}, boom)
    assert not list(tmp_path.rglob("*"))


def test_checkpoint_roundtrip_strict_and_checksum(tmp_path):
    torch.manual_seed(0)
    enc = SmallConvNet(1)
    save_checkpoint(tmp_path / "v", {"encoder": enc}, {"seed": 0, "metrics": {"acc": 0.5}})
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["seed"] == 0 and len(meta["sha256"]) == 64
    other = SmallConvNet(1)
    load_checkpoint(tmp_path / "v", {"encoder": other})
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), other.state_dict().values()))
    with pytest.raises(RuntimeError, match="size mismatch|Missing|Unexpected"):
        load_checkpoint(tmp_path / "v", {"encoder": SmallConvNet(3)})
    (tmp_path / "v.safetensors").write_bytes((tmp_path / "v.safetensors").read_bytes()[:-4] + b"0000")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        load_checkpoint(tmp_path / "v", {"encoder": other})
