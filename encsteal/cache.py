"""A result cache whose keys change whenever the configuration or the code that computes a result changes.

**Keys.** Every kind of cached result names the module that computes it (:data:`KINDS`, or
:func:`register_kind`). An entry's key is the sha256 (20 hex digits) of its *key material*:

* ``kind``: the kind of result (``"victim"``, ``"stolen"``, ``"watermarked_victim"``, ...);
* ``config``: the full configuration, as JSON;
* ``code``: the sha256 of the source of the kind's module and of every ``encsteal`` module it
  imports, transitively (:func:`dependency_closure`, :func:`code_hash`);
* ``algorithm``: a hand-bumped per-kind version, for a change the code hash cannot see (a new
  behaviour of a third-party library, say).

The dependency closure is found statically with :mod:`ast`: every ``import`` and ``from ... import``
anywhere in a module (also inside functions) that names a module of the ``encsteal`` package,
relative forms included, plus the packages (``__init__.py``) above each module found, since
importing a module runs them. The code hash covers the *raw bytes* of those files: comments and
docstrings count, so an edit to a comment in a dependency also recomputes the result (simple and
never wrong the other way). It hashes module names and file contents, never paths or times, so a
key is the same on every machine with the same code. It does not cover third-party libraries, data
files or other files read at run time (bump ``algorithm`` for those), nor code loaded without an
import statement. The files are hashed the first time a process needs them and the hash is kept
for the life of the process (restart a notebook kernel after editing the package).

**Entries** are ``<root>/<kind>/<key>.safetensors`` (tensors) with a JSON sidecar
``<key>.json`` that records the kind, the key material, the sha256 of the tensor file, the package
version and the caller's metadata. Both are written atomically (temporary file, then rename); a
rewrite removes the old sidecar first and the sidecar is always written last, so an interrupted
run (Ctrl-C) leaves at worst tensors without a sidecar: an incomplete entry, ignored. Every entry
is verified when read (the sidecar parses and records this kind and this key material, the tensor
file matches its sha256 and loads as safetensors); a corrupt entry is not loaded but reported with
a :class:`CacheCorruptionWarning` naming the file, and the result is recomputed and rewritten.
Nothing is pickled, so a cache folder from elsewhere cannot run code when read (joblib.Memory
would pickle results, hence this small module).

**Shipped entries** (``shipped/``, read-only) are searched after the local cache and verified the
same way. Their keys include the code hash, so a shipped entry made by other code is simply not
found (the result is computed), never loaded; ``python -m encsteal.ship --check`` lists stale ones.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from encsteal import __version__
from encsteal.paths import cache_root

PACKAGE_DIR = Path(__file__).resolve().parent
"""The ``encsteal`` package folder whose sources the code hashes cover."""
SHIPPED_DIR = PACKAGE_DIR.parent / "shipped"

T = TypeVar("T")
Entry = tuple[dict[str, torch.Tensor], dict[str, Any]]


class CacheCorruptionWarning(UserWarning):
    """A cache entry failed verification: it is ignored and the result recomputed."""


# ---- kinds and the code they depend on ----------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of cached result: the module that computes it and a hand-bumped algorithm version."""

    module: str
    algorithm: int = 1


KINDS: dict[str, Kind] = {
    "victim": Kind("encsteal.victims"),
    "stolen": Kind("encsteal.attack"),
    "watermarked_victim": Kind("encsteal.watermark"),
}
"""Every kind of result the cache stores; a kind not listed (or registered) cannot be cached."""


def register_kind(kind: str, module: str, algorithm: int = 1) -> None:
    """Declare a new kind of cached result, computed by ``module`` (a dotted ``encsteal`` module name)."""
    new = Kind(module, algorithm)
    if KINDS.get(kind, new) != new:
        raise ValueError(f"Cache kind {kind!r} is already registered as {KINDS[kind]}.")
    dependency_closure(module)  # fails now if the module does not exist
    KINDS[kind] = new


def kind_spec(kind: str) -> Kind:
    """The registered :class:`Kind` of ``kind``; an unknown kind is an error (its key would miss its code)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(
            f"Unknown cache kind {kind!r}: register it with encsteal.cache.register_kind(kind, "
            f"module) so that its key covers the code that computes it. Known: {', '.join(KINDS)}."
        ) from None


def module_source(name: str, root: Path = PACKAGE_DIR) -> Path | None:
    """The source file of module ``name`` of the package in ``root`` (``__init__.py`` for a package), or None."""
    parts = name.split(".")
    if parts[0] != root.name:
        return None
    base = root.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if len(parts) > 1 and base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.cache
def direct_imports(name: str, root: Path = PACKAGE_DIR) -> frozenset[str]:
    """The package's modules that module ``name`` imports anywhere in its source (also inside functions)."""
    path = module_source(name, root)
    if path is None:
        raise ModuleNotFoundError(f"No source for module {name!r} under {root}.")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")
                if node.level - 1 >= len(up):
                    continue  # beyond the top-level package
                base = ".".join(up[: len(up) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    mine = {m for m in found if m.split(".")[0] == root.name and module_source(m, root) is not None}
    return frozenset(p for m in mine for p in _with_parents(m))


@functools.cache
def dependency_closure(name: str, root: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """Module ``name``, its parent packages and every package module they import, transitively (sorted)."""
    if module_source(name, root) is None:
        raise ModuleNotFoundError(f"No source for module {name!r} under {root}.")
    seen: set[str] = set()
    todo = _with_parents(name)
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(direct_imports(mod, root) - seen)
    return tuple(sorted(seen))


@functools.cache
def code_hash(name: str, root: Path = PACKAGE_DIR) -> str:
    """sha256 of the raw source bytes of :func:`dependency_closure` (module names + file contents, no paths)."""
    digest = hashlib.sha256()
    for mod in dependency_closure(name, root):
        source = module_source(mod, root)
        assert source is not None
        digest.update(f"{mod}\0{hashlib.sha256(source.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


# ---- keys --------------------------------------------------------------------------------------


def to_jsonable(config: Any) -> Any:
    """Dataclasses, tuples and paths become JSON-friendly values."""
    if is_dataclass(config) and not isinstance(config, type):
        return to_jsonable(asdict(config))
    if isinstance(config, Mapping):
        return {str(k): to_jsonable(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_jsonable(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    if isinstance(config, np.generic):
        return config.item()
    return config


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def key_material(kind: str, config: Any) -> dict[str, Any]:
    """What an entry's key hashes: kind, configuration, the code hash of the kind's module, its algorithm."""
    spec = kind_spec(kind)
    return {"kind": kind, "config": to_jsonable(config), "code": code_hash(spec.module), "algorithm": spec.algorithm}


def _material_key(material: Any) -> str:
    return hashlib.sha256(_canonical(material).encode()).hexdigest()[:20]


def config_key(kind: str, config: Any) -> str:
    """A stable 20-hex-digit hash of :func:`key_material` (kind, configuration, code hash, algorithm)."""
    return _material_key(key_material(kind, config))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """sha256 (20 hex digits) of tensors' shapes, dtypes and bytes: identifies data in cache keys."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy())
    return digest.hexdigest()[:20]


# ---- atomic writes -----------------------------------------------------------------------------


def _fsync(path: str) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Save tensors as safetensors through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryStatus:
    """What :func:`inspect_entry` found: ``status`` is "fresh", "stale", "corrupt" or "incomplete"."""

    path: Path
    kind: str
    status: str
    reason: str = ""


def _verified(
    tensor_path: Path, meta_path: Path, kind: str, material: Mapping[str, Any] | None
) -> tuple[Entry | None, str]:
    """Read and verify one entry: ``(entry, "")``, or ``(None, why it is corrupt)``.

    ``material``: the key material the entry must record (None: only that it hashes to its file name).
    """
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"its sidecar {meta_path.name} is not valid JSON ({err})"
    if not isinstance(meta, dict):
        return None, f"its sidecar {meta_path.name} is not a JSON object"
    if meta.get("kind") != kind:
        return None, f"its sidecar records kind {meta.get('kind')!r}, not {kind!r}"
    recorded = meta.get("key")
    if not isinstance(recorded, dict) or _material_key(recorded) != meta_path.stem:
        return None, "its sidecar's key material does not hash to the entry's name"
    if material is not None and _canonical(recorded) != _canonical(dict(material)):
        return None, "its sidecar records other key material than the entry's name stands for"
    if not tensor_path.is_file():
        return None, f"its tensor file {tensor_path.name} is missing"
    if meta.get("sha256") != file_sha256(tensor_path):
        return None, "the tensor file does not match the sha256 in its sidecar (truncated or modified)"
    try:
        tensors = load_file(str(tensor_path))
    except Exception as err:  # noqa: BLE001 - any failure to parse means a bad file
        return None, f"the tensor file cannot be read as safetensors ({err})"
    return (tensors, meta), ""


def inspect_entry(meta_path: str | os.PathLike) -> EntryStatus:
    """Classify the entry of sidecar ``<root>/<kind>/<key>.json`` without knowing its configuration.

    "fresh": valid and made by the current code; "stale": its code hash or algorithm version is not
    the current one (or it predates code hashes, or its kind is unknown), so it is never found;
    "corrupt": fails verification; "incomplete": no sidecar.
    """
    meta_path = Path(meta_path)
    tensor_path, kind = meta_path.with_suffix(".safetensors"), meta_path.parent.name
    if not meta_path.is_file():
        return EntryStatus(tensor_path, kind, "incomplete", "no sidecar")
    try:
        raw = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raw = None
    if isinstance(raw, dict) and "key" not in raw and "config" in raw:
        return EntryStatus(tensor_path, kind, "stale", "written before keys included a code hash")
    entry, why = _verified(tensor_path, meta_path, kind, None)
    if entry is None:
        return EntryStatus(tensor_path, kind, "corrupt", why)
    if kind not in KINDS:
        return EntryStatus(tensor_path, kind, "stale", f"unknown kind {kind!r}")
    recorded, now = entry[1]["key"], key_material(kind, entry[1]["key"].get("config"))
    if recorded.get("code") != now["code"]:
        return EntryStatus(tensor_path, kind, "stale", f"the code of {KINDS[kind].module} or its imports changed")
    if recorded.get("algorithm") != now["algorithm"]:
        return EntryStatus(
            tensor_path, kind, "stale", f"algorithm version {recorded.get('algorithm')} is not {now['algorithm']}"
        )
    return EntryStatus(tensor_path, kind, "fresh")


# ---- the cache ---------------------------------------------------------------------------------


class ResultCache:
    """Tensors + metadata stored under ``root/<kind>/<key>.{safetensors,json}``.

    Args:
        root: cache folder (default ``$ENCSTEAL_CACHE`` or ``~/.cache/encsteal/results``).
        enabled: ``False`` bypasses the cache: nothing is read or written.
        shipped: read-only folders searched after ``root`` (default: the repository's
            ``shipped/`` folder, which holds the quick profile's pre-trained victims). Their
            entries are verified like local ones; a corrupt one is skipped with a warning.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        enabled: bool = True,
        shipped: tuple[str | os.PathLike, ...] | None = None,
    ):
        self.root = cache_root(root)
        self.enabled = enabled
        self.shipped = tuple(Path(p) for p in (shipped if shipped is not None else (SHIPPED_DIR,)))

    def paths(self, kind: str, config: Any, root: Path | None = None) -> tuple[Path, Path]:
        """The tensor file and the sidecar of the entry for ``config`` (under ``root``, default the cache)."""
        key = config_key(kind, config)
        folder = (root or self.root) / kind
        return folder / f"{key}.safetensors", folder / f"{key}.json"

    def get(self, kind: str, config: Any) -> Entry | None:
        """The stored tensors and metadata, or None when absent, incomplete, corrupt or disabled.

        A corrupt entry (see the module docstring) is reported with a :class:`CacheCorruptionWarning`.
        """
        if not self.enabled:
            return None
        material = key_material(kind, config)
        for root in (self.root, *self.shipped):
            tensor_path, meta_path = self.paths(kind, config, root)
            if not meta_path.exists():
                continue  # absent, or interrupted before its sidecar was written
            entry, why = _verified(tensor_path, meta_path, kind, material)
            if entry is not None:
                return entry
            where = "" if root == self.root else " (a read-only shipped entry)"
            warnings.warn(
                f"Ignoring corrupt cache entry {tensor_path}: {why}{where}. It is not loaded; the {kind} "
                "result comes from another valid copy or is recomputed and stored again.",
                CacheCorruptionWarning,
                stacklevel=3,
            )
        return None

    def put(
        self, kind: str, config: Any, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Store an entry atomically (tensors first, sidecar last); returns its sidecar record."""
        if not self.enabled:
            return None
        material = key_material(kind, config)
        tensor_path, meta_path = self.paths(kind, config)
        meta_path.unlink(missing_ok=True)  # a rewrite interrupted below leaves an incomplete entry
        atomic_save_tensors(tensor_path, tensors)
        record = {
            **to_jsonable(dict(meta)),
            "kind": kind,
            "key": material,
            "config": material["config"],
            "version": __version__,
            "sha256": file_sha256(tensor_path),
        }
        atomic_write_bytes(meta_path, json.dumps(record, indent=2, sort_keys=True).encode())
        return record

    @overload
    def get_or_compute(
        self, kind: str, config: Any, compute: Callable[[], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]]
    ) -> Entry: ...

    @overload
    def get_or_compute(
        self,
        kind: str,
        config: Any,
        compute: Callable[[], T],
        save: Callable[[T], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
        load: Callable[[dict[str, torch.Tensor], dict[str, Any]], T],
    ) -> T: ...

    def get_or_compute(
        self,
        kind: str,
        config: Any,
        compute: Callable[[], Any],
        save: Callable[[Any], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]] | None = None,
        load: Callable[[dict[str, torch.Tensor], dict[str, Any]], Any] | None = None,
    ) -> Any:
        """The one cached-result path: load the verified entry for ``config``, or compute, store and return it.

        Without ``save``/``load``, ``compute`` returns ``(tensors, metadata)`` and so does this. With
        them, ``compute`` returns any result, ``save(result)`` gives the ``(tensors, metadata)`` to
        store and ``load(tensors, metadata)`` rebuilds a result from a stored entry. Under
        ``torchrun`` every process computes, only rank 0 writes and all wait at a barrier after.
        """
        from encsteal.distributed import barrier
        from encsteal.distributed import info as dist_info

        spec = kind_spec(kind)
        made_in = getattr(compute, "__module__", None) or ""
        if made_in.split(".")[0] == PACKAGE_DIR.name and made_in not in dependency_closure(spec.module):
            raise RuntimeError(
                f"{kind!r} results are computed in {made_in}, which the key of kind {kind!r} does "
                f"not cover ({spec.module} and its imports): register the kind with the module "
                "that computes it."
            )
        hit = self.get(kind, config)
        if hit is not None:
            return hit if load is None else load(*hit)
        result = compute()
        tensors, meta = save(result) if save is not None else result
        record = None
        if dist_info().is_main:
            record = self.put(kind, config, tensors, meta)
        barrier()
        if save is not None:
            return result
        return dict(tensors), record if record is not None else {
            "kind": kind,
            "config": to_jsonable(config),
            **to_jsonable(dict(meta)),
        }
