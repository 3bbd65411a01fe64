"""The result cache and checkpoints: code-aware keys, verified reads, atomic writes, no pickles."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import encsteal.cache as cache_mod
from encsteal.cache import (
    KINDS,
    PACKAGE_DIR,
    CacheCorruptionWarning,
    Kind,
    ResultCache,
    code_hash,
    config_key,
    dependency_closure,
    direct_imports,
    inspect_entry,
    register_kind,
)
from encsteal.checkpoint import load_checkpoint, save_checkpoint
from encsteal.models import SmallConvNet

register_kind("tiny", "encsteal.paths")  # a test kind whose code is the small paths module


def _counting(calls: list, value: float = 0.0):
    def compute():
        calls.append(1)
        return {"x": torch.arange(3.0) + value}, {"note": "hi"}

    return compute


def _no_warnings_get(cache: ResultCache, kind: str, config):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return cache.get(kind, config)


# ---- keys ---------------------------------------------------------------------------------------


def test_config_key_changes_with_config():
    assert config_key("victim", {"a": 1}) == config_key("victim", {"a": 1})
    assert config_key("victim", {"a": 1}) != config_key("victim", {"a": 2})
    assert config_key("victim", {"a": 1}) != config_key("stolen", {"a": 1})


def test_key_changes_with_algorithm_version(monkeypatch):
    before = config_key("tiny", {"c": 1})
    monkeypatch.setitem(KINDS, "tiny", Kind("encsteal.paths", algorithm=2))
    assert config_key("tiny", {"c": 1}) != before


def test_unknown_kind_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="register_kind"):
        ResultCache(tmp_path).get_or_compute("never_registered", {}, _counting([]))
    with pytest.raises(ValueError, match="already registered"):
        register_kind("victim", "encsteal.paths")


def test_compute_outside_the_kinds_code_is_refused(tmp_path):
    compute = _counting([])
    compute.__module__ = "encsteal.experiments.claims"  # pretend the result is computed by code the key does not cover
    with pytest.raises(RuntimeError, match="encsteal.experiments.claims"):
        ResultCache(tmp_path).get_or_compute("tiny", {"c": 1}, compute)


def _fake_package(root: Path) -> Path:
    files = {
        "__init__.py": "",
        "a.py": "import os\nfrom torch import nn\n\n\ndef f():\n    from fakepkg.b import thing\n    return thing\n",
        "b.py": "from . import c\nfrom .sub.d import y\nthing = 1\n",
        "c.py": "import fakepkg.sub.e as e\n",
        "sub/__init__.py": '"""A subpackage."""\n',
        "sub/d.py": "from .. import c\ny = 2\n",
        "sub/e.py": "x = 3\n",
        "sub/f.py": "from ...outside import z\n",
        "unrelated.py": "from fakepkg import a\n",
    }
    pkg = root / "fakepkg"
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_closure_finds_transitive_relative_and_in_function_imports(tmp_path):
    pkg = _fake_package(tmp_path)
    assert direct_imports("fakepkg.a", pkg) == {"fakepkg", "fakepkg.b"}  # only inside f(); os, torch ignored
    assert direct_imports("fakepkg.sub.f", pkg) == frozenset()  # beyond the top-level package
    assert dependency_closure("fakepkg.a", pkg) == (
        "fakepkg",
        "fakepkg.a",
        "fakepkg.b",
        "fakepkg.c",
        "fakepkg.sub",
        "fakepkg.sub.d",
        "fakepkg.sub.e",
    )


def test_closure_of_the_real_kinds():
    victim = dependency_closure(KINDS["victim"].module)
    assert {
        "encsteal",
        "encsteal.models",
        "encsteal.models.convnet",
        "encsteal.training",
        "encsteal.data.splits",
        "encsteal.cache",
    } <= set(victim)
    assert "encsteal.experiments.claims" not in victim and "encsteal.attack" not in victim
    watermark = dependency_closure(KINDS["watermarked_victim"].module)
    assert "encsteal.watermark" in watermark and "encsteal.training" in watermark
    assert "encsteal.experiments.watermark" not in watermark, "the chapter module uses the watermark, not the reverse"
    assert set(victim) <= set(watermark)


def test_code_hash_is_independent_of_the_path(tmp_path):
    copy = tmp_path / "elsewhere" / "encsteal"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_hash("encsteal.attack", copy) == code_hash("encsteal.attack")
    edited = tmp_path / "edited" / "encsteal"  # another folder: the hash of a folder is kept per process
    shutil.copytree(copy, edited)
    (edited / "models" / "heads.py").write_text((edited / "models" / "heads.py").read_text() + "\n# a comment\n")
    assert code_hash("encsteal.attack", edited) != code_hash("encsteal.attack"), "comments count"


_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import encsteal
    from encsteal.cache import ResultCache

    calls = []

    def compute():
        calls.append(1)
        return {"w": torch.ones(2)}, {}

    ResultCache(sys.argv[1], shipped=()).get_or_compute("stolen", {"tiny": True}, compute)
    print(json.dumps({"computed": len(calls), "package": encsteal.__file__}))
""")


def test_editing_a_dependency_recomputes_and_an_unrelated_module_does_not(tmp_path):
    pkg = tmp_path / "copy"
    shutil.copytree(PACKAGE_DIR, pkg / "encsteal", ignore=shutil.ignore_patterns("__pycache__"))
    dependency = pkg / "encsteal" / "models" / "convnet.py"  # attack -> models -> models.convnet
    unrelated = pkg / "encsteal" / "experiments" / "claims.py"
    closure = dependency_closure("encsteal.attack")
    assert "encsteal.models.convnet" in closure and "encsteal.experiments.claims" not in closure
    assert "encsteal.models.convnet" not in direct_imports("encsteal.attack"), "a transitive dependency"
    env = {**os.environ, "PYTHONPATH": str(pkg), "OMP_NUM_THREADS": "1"}

    def run() -> int:
        out = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(tmp_path / "cache")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert Path(result["package"]).is_relative_to(pkg), result
        return result["computed"]

    assert run() == 1
    unrelated.write_text(unrelated.read_text() + "\n# an unrelated edit\n")
    assert run() == 0, "a module outside the closure does not invalidate the result"
    dependency.write_text(dependency.read_text() + "\n# a comment in a transitive dependency\n")
    assert run() == 1, "the code changed: recomputed, not reused"
    assert len(list((tmp_path / "cache" / "stolen").glob("*.json"))) == 2


# ---- reading, writing, corruption ----------------------------------------------------------------


def test_get_or_compute_computes_once(tmp_path):
    cache = ResultCache(tmp_path, shipped=())
    calls = []
    t1, m1 = cache.get_or_compute("tiny", {"c": 1}, _counting(calls))
    t2, m2 = cache.get_or_compute("tiny", {"c": 1}, _counting(calls))
    assert len(calls) == 1 and torch.equal(t1["x"], t2["x"]) and m2["note"] == "hi"
    assert m2["key"]["code"] == code_hash("encsteal.paths") and m2["kind"] == "tiny"
    cache.get_or_compute("tiny", {"c": 2}, _counting(calls))
    assert len(calls) == 2
    assert not list(tmp_path.rglob("*.tmp")), "no temporary files left behind"


def test_get_or_compute_with_save_and_load(tmp_path):
    cache = ResultCache(tmp_path, shipped=())
    calls = []

    def compute() -> list:
        calls.append(1)
        return [1.0, 2.0]

    def save(result):
        return {"v": torch.tensor(result)}, {"n": len(result)}

    def load(tensors, meta):
        return tensors["v"].tolist()[: meta["n"]]

    assert cache.get_or_compute("tiny", {"c": 1}, compute, save, load) == [1.0, 2.0]
    assert cache.get_or_compute("tiny", {"c": 1}, compute, save, load) == [1.0, 2.0] and len(calls) == 1


def test_disabled_cache_never_stores(tmp_path):
    cache = ResultCache(tmp_path, enabled=False)
    cache.put("tiny", {"c": 1}, {"x": torch.zeros(1)}, {})
    assert cache.get("tiny", {"c": 1}) is None and not any(tmp_path.iterdir())


def test_entry_without_sidecar_is_ignored_silently(tmp_path):
    cache = ResultCache(tmp_path, shipped=())
    cache.put("tiny", {"c": 1}, {"x": torch.zeros(1)}, {})
    _, meta_path = cache.paths("tiny", {"c": 1})
    meta_path.unlink()
    assert _no_warnings_get(cache, "tiny", {"c": 1}) is None


def test_failed_compute_leaves_nothing(tmp_path):
    cache = ResultCache(tmp_path, shipped=())

    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("tiny", {"c": 1}, boom)
    assert not list(tmp_path.rglob("*"))


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path, shipped=())
    cache.put("tiny", {"c": 1}, {"x": torch.zeros(1)}, {})  # an older entry that the rewrite replaces

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.put("tiny", {"c": 1}, {"x": torch.ones(1)}, {})
    with pytest.raises(KeyboardInterrupt):
        cache.put("tiny", {"c": 2}, {"x": torch.ones(1)}, {})
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.json"))
    assert _no_warnings_get(cache, "tiny", {"c": 1}) is None  # incomplete, not corrupt
    monkeypatch.undo()
    calls = []
    cache.get_or_compute("tiny", {"c": 1}, _counting(calls))
    assert len(calls) == 1 and _no_warnings_get(cache, "tiny", {"c": 1}) is not None


def _truncate(tensors: Path, meta: Path) -> None:
    tensors.write_bytes(tensors.read_bytes()[:-7])


def _flip_byte(tensors: Path, meta: Path) -> None:
    data = bytearray(tensors.read_bytes())
    data[-3] ^= 0xFF
    tensors.write_bytes(bytes(data))


def _garbage_sidecar(tensors: Path, meta: Path) -> None:
    meta.write_text('{"kind": "tiny", "sha2')


def _other_key_material(tensors: Path, meta: Path) -> None:
    record = json.loads(meta.read_text())
    record["key"]["config"] = {"c": 99}
    meta.write_text(json.dumps(record))


def _not_safetensors(tensors: Path, meta: Path) -> None:
    tensors.write_bytes(b"\x80\x04 not a safetensors file")
    record = json.loads(meta.read_text())
    record["sha256"] = cache_mod.file_sha256(tensors)  # the checksum matches, the content does not parse
    meta.write_text(json.dumps(record))


def _missing_tensors(tensors: Path, meta: Path) -> None:
    tensors.unlink()


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncate, "does not match the sha256"),
        (_flip_byte, "does not match the sha256"),
        (_garbage_sidecar, "not valid JSON"),
        (_other_key_material, "key material"),
        (_not_safetensors, "cannot be read as safetensors"),
        (_missing_tensors, "is missing"),
    ],
)
def test_corrupt_entry_is_recomputed_with_a_warning(tmp_path, corrupt, message):
    cache = ResultCache(tmp_path, shipped=())
    calls = []
    cache.get_or_compute("tiny", {"c": 1}, _counting(calls))
    tensors, meta = cache.paths("tiny", {"c": 1})
    corrupt(tensors, meta)
    with pytest.warns(CacheCorruptionWarning, match=message) as record:
        result, _ = cache.get_or_compute("tiny", {"c": 1}, _counting(calls))
    assert tensors.name in str(record[0].message), "the warning names the file"
    assert len(calls) == 2 and torch.equal(result["x"], torch.arange(3.0))
    again = _no_warnings_get(cache, "tiny", {"c": 1})
    assert again is not None and torch.equal(again[0]["x"], torch.arange(3.0)), "the entry was rewritten valid"
    assert inspect_entry(meta).status == "fresh"


def test_corrupt_shipped_entry_is_skipped_and_the_result_stored_locally(tmp_path):
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    ResultCache(shipped, shipped=()).put("tiny", {"c": 1}, {"x": torch.full((3,), 7.0)}, {})
    cache = ResultCache(local, shipped=(shipped,))
    assert torch.equal(_no_warnings_get(cache, "tiny", {"c": 1})[0]["x"], torch.full((3,), 7.0))
    tensors, _ = cache.paths("tiny", {"c": 1}, shipped)
    _truncate(tensors, tensors)
    calls = []
    with pytest.warns(CacheCorruptionWarning, match="shipped"):
        cache.get_or_compute("tiny", {"c": 1}, _counting(calls))
    assert len(calls) == 1 and cache.paths("tiny", {"c": 1})[1].exists()
    assert _no_warnings_get(cache, "tiny", {"c": 1}) is not None


def test_shipped_entry_from_other_code_is_not_found(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    ResultCache(shipped, shipped=()).put("tiny", {"c": 1}, {"x": torch.full((3,), 7.0)}, {})
    (meta,) = shipped.glob("tiny/*.json")
    assert inspect_entry(meta).status == "fresh"
    monkeypatch.setitem(KINDS, "tiny", Kind("encsteal.paths", algorithm=2))  # as if the code had changed
    cache = ResultCache(tmp_path / "local", shipped=(shipped,))
    assert _no_warnings_get(cache, "tiny", {"c": 1}) is None, "not found, never loaded"
    assert inspect_entry(meta).status == "stale"
    calls = []
    result, _ = cache.get_or_compute("tiny", {"c": 1}, _counting(calls))
    assert len(calls) == 1 and torch.equal(result["x"], torch.arange(3.0))


def test_ship_copies_checks_and_prunes(tmp_path, monkeypatch):
    from encsteal.ship import copy_entry, prune, shipped_status

    local, shipped = ResultCache(tmp_path / "local", shipped=()), tmp_path / "shipped"
    local.put("tiny", {"c": 1}, {"x": torch.zeros(2)}, {})
    old = copy_entry(local, "tiny", {"c": 1}, shipped)
    monkeypatch.setitem(KINDS, "tiny", Kind("encsteal.paths", algorithm=2))  # the code changes
    assert [s.status for s in shipped_status(shipped)] == ["stale"]
    local.put("tiny", {"c": 1}, {"x": torch.ones(2)}, {})
    new = copy_entry(local, "tiny", {"c": 1}, shipped)
    (shipped / "tiny" / "junk.safetensors").write_bytes(b"x")
    statuses = {s.path.name: s.status for s in shipped_status(shipped)}
    assert statuses == {old.name: "stale", new.name: "fresh", "junk.safetensors": "incomplete"}
    removed = prune(shipped, {new})
    assert {p.name for p in removed} == {old.name, old.with_suffix(".json").name, "junk.safetensors"}
    assert [s.status for s in shipped_status(shipped)] == ["fresh"]
    assert torch.equal(ResultCache(tmp_path / "empty", shipped=(shipped,)).get("tiny", {"c": 1})[0]["x"], torch.ones(2))


class _RecordingCache(ResultCache):
    def put(self, kind, config, tensors, meta):
        (self.root.parent / f"put-{os.environ['RANK']}").touch()
        return super().put(kind, config, tensors, meta)


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    from encsteal import distributed

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    distributed.init_from_env(backend="gloo")

    def compute():
        (Path(out) / f"computed-{rank}").touch()
        return {"x": torch.full((2,), float(rank))}, {}

    tensors, _ = _RecordingCache(Path(out) / "cache", shipped=()).get_or_compute("tiny", {"ddp": 1}, compute)
    assert torch.equal(tensors["x"], torch.full((2,), float(rank))), "each process keeps its own result"
    distributed.shutdown()


def test_under_ddp_only_rank_0_writes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    assert {p.name for p in tmp_path.iterdir() if p.is_file()} == {"computed-0", "computed-1", "put-0"}
    entry = _no_warnings_get(ResultCache(tmp_path / "cache", shipped=()), "tiny", {"ddp": 1})
    assert entry is not None and torch.equal(entry[0]["x"], torch.zeros(2))


# ---- checkpoints --------------------------------------------------------------------------------


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
