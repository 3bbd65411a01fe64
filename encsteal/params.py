"""The one parameter schema of the book's chapters: names, types, defaults, checks and profiles.

Every chapter notebook declares its parameters in a papermill ``parameters`` cell with the value
``None`` ("take it from the profile"), and its first code cell calls
:func:`encsteal.notebook.setup`, which resolves them here:

1. the defaults of :class:`Params` (the quick profile, the book's default: minutes on 2 CPU cores);
2. overlaid by the profile's YAML file ``params/<profile>.yaml`` (``smoke``: seconds, for tests;
   ``full``: paper scale on GPUs); a profile may name a ``base`` profile it extends;
3. overlaid by the values passed to the notebook (``papermill -p name value``, ``-y``/``-f`` YAML).

Every value is checked (:func:`check`); an unknown or misspelled name stops the chapter with the
list of the parameters it knows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from encsteal.data.registry import DATASETS
from encsteal.later.b4b import HASH_SOURCES, MAX_HYPERPLANES, TRANSFORMS, b4b_sigma
from encsteal.losses import LOSSES, get_loss
from encsteal.victims import VictimConfig

if TYPE_CHECKING:
    from encsteal.watermark import WatermarkConfig

PROFILE_DIR = Path(__file__).resolve().parent.parent / "params"
PROFILES: tuple[str, ...] = ("smoke", "quick", "full")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
WATERMARK_TASKS: tuple[str, ...] = ("binary", "four_way")

OVERVIEW, API, LOSS, IMAGENET, DEFENSES, WATERMARK, LATER, CLAIMS, PERFORMANCE = (
    "overview",
    "api_cost",
    "losses",
    "imagenet",
    "defenses",
    "watermark",
    "later",
    "claims",
    "performance",
)
CHAPTERS: tuple[str, ...] = (OVERVIEW, API, LOSS, IMAGENET, DEFENSES, WATERMARK, LATER, CLAIMS, PERFORMANCE)
"""Chapter names: the notebooks are ``notebooks/NN_<chapter>.ipynb`` (the overview is the book's
landing page, with the paper at a glance)."""

ALL = CHAPTERS
VICTIM_CHAPTERS = (API, LOSS, DEFENSES, WATERMARK, LATER)
PROBE_CHAPTERS = (API, LOSS, IMAGENET, DEFENSES, WATERMARK, LATER)
JUDGED = (API, LOSS, IMAGENET, DEFENSES, WATERMARK, LATER)

#: What kind of value each parameter takes: "int+" (positive integer), "int0" (non-negative),
#: "float+", "float0", "str", "choice", "datasets", "losses", "budgets", "seeds", "floats+",
#: "floats0", "loss_settings", "path".


def _p(default: Any, kind: str, chapters: tuple[str, ...], help: str, choices: tuple[str, ...] = ()) -> Any:
    """A schema field: its default, kind of value, the chapters that declare it and a help line."""
    meta = {"kind": kind, "chapters": chapters, "help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Params:
    """Every chapter parameter with its quick-profile default (see the module docstring)."""

    # -- run ------------------------------------------------------------------------------
    profile: str = _p("quick", "choice", ALL, "parameter profile (params/<profile>.yaml)", PROFILES)
    seed: int = _p(0, "int0", ALL, "seed of the data splits and of single-seed runs")
    seeds: list = _p(
        [0, 1, 2, 3, 4], "seeds", JUDGED, "seeds of every judged cell: each draws its own initialisation and subsets"
    )
    device: str = _p("cpu", "device", ALL, "auto, cpu, cuda or cuda:N")
    threads: int = _p(2, "int+", ALL, "torch threads")
    results_dir: str = _p(
        "results", "path", ALL, "folder of the chapter's results JSON (relative paths: from the repository root)"
    )
    # -- victim ---------------------------------------------------------------------------
    victim_dataset: str = _p("fmnist", "dataset", VICTIM_CHAPTERS, "the SimCLR victim's training data")
    victim_num_train: int = _p(5000, "int+", VICTIM_CHAPTERS + (PERFORMANCE,), "victim training images")
    victim_epochs: int = _p(20, "int+", VICTIM_CHAPTERS, "victim training epochs")
    victim_temperature: float = _p(0.2, "float+", VICTIM_CHAPTERS, "victim NT-Xent temperature")
    victim_lr: float = _p(2e-3, "float+", VICTIM_CHAPTERS, "victim Adam learning rate")
    victim_seed: int = _p(0, "int0", VICTIM_CHAPTERS, "victim initialisation seed")
    # -- downstream probes ------------------------------------------------------------------
    probe_train: int = _p(1000, "int+", PROBE_CHAPTERS, "probe training images per task")
    probe_val: int = _p(500, "int+", PROBE_CHAPTERS, "probe validation images (choose C)")
    probe_test: int = _p(2000, "int+", PROBE_CHAPTERS, "probe test images")
    few_label_per_class: int = _p(10, "int+", (API, LOSS, IMAGENET), "labels per class of the few-label probe")
    probe_cs: list = _p([0.1, 1.0], "floats+", (API, LOSS, IMAGENET), "inverse regularisation strengths tried")
    # -- stealing -------------------------------------------------------------------------
    steal_epochs: int = _p(10, "int+", (API, LOSS, IMAGENET, WATERMARK, PERFORMANCE), "epochs of every stealing run")
    loss_settings: dict = _p(
        {},
        "loss_settings",
        (LOSS, IMAGENET, DEFENSES, WATERMARK, LATER),
        "per-loss stealing settings: {loss: {loss parameter: value}}",
    )
    # -- chapter 1: APIs and cost ----------------------------------------------------------------
    leak_budgets: list = _p(
        [300, 600], "budgets", (API,), "query budgets of the API comparison (each seed's queries are nested)"
    )
    downstream_sets: list = _p(
        ["mnistm", "photocrops"],
        "datasets",
        (API, LOSS, DEFENSES, LATER),
        "judged downstream tasks (there the victim beats a random-init encoder by >= 10 points)",
    )
    top_k: int = _p(3, "int+", (API,), "k of the supervised victim's top-k API")
    leak_batch_size: int = _p(32, "int+", (API,), "batch size of the API comparison's stealing runs")
    leak_lr: float = _p(3e-3, "float+", (API,), "Adam learning rate of the API comparison's stealing runs")
    ssl_budgets: list = _p(
        [], "budgets", (API,), "budgets at which the SSL victim's representation API is stolen too ([]: none)"
    )
    compute_prices_per_hour: list = _p(
        [0.01, 0.03, 0.1], "floats+", (API,), "compute prices (USD per hour of the measured machine) of the cost range"
    )
    api_prices_per_1k: list = _p(
        [0.01, 0.1, 1.0, 10.0], "floats0", (API,), "API prices (USD per 1,000 queries) of the cost range"
    )
    bench_batch: int = _p(4, "int+", (API,), "images per timed step of the paper's architectures (even, >= 2)")
    bench_steps: int = _p(2, "int+", (API,), "timed steps per workload (after one warm-up step)")
    # -- chapter 2: losses ------------------------------------------------------------------
    query_sets: list = _p(["fmnist", "digits"], "datasets", (LOSS,), "query data sets (first: in-distribution)")
    losses: list = _p(
        ["mse", "infonce", "softnn", "supcon", "wasserstein", "barlow", "barlow_official"],
        "losses",
        (LOSS,),
        "stealing losses of the loss grid",
    )
    budget: int = _p(500, "int+", (LOSS, PERFORMANCE), "queries of each stealing run")
    shown_seeds: list = _p(
        [0],
        "seeds",
        (LOSS,),
        "seeds of the cells shown but never judged: out-of-distribution queries, losses that use labels (SupCon)",
    )
    sweep_loss: str = _p(
        "infonce", "choice", (LOSS,), "loss of the few-queries sweep (claim C2)", tuple(sorted(LOSSES))
    )
    budgets: list = _p(
        [50, 250, 500, 1000],
        "budgets",
        (LOSS,),
        "budgets of the few-queries sweep; fewer queries train more epochs (as many optimiser steps as budget)",
    )
    # -- chapter 3: the ImageNet encoder ---------------------------------------------------------
    image_size: int = _p(64, "int+", (IMAGENET,), "size the ImageNet victim sees (pixels)")
    imagenet_query_sets: list = _p(["mnistm", "fmnist"], "datasets", (IMAGENET,), "query data sets")
    imagenet_downstream_sets: list = _p(["mnistm", "photocrops"], "datasets", (IMAGENET,), "downstream tasks")
    imagenet_budgets: list = _p([500, 2000], "budgets", (IMAGENET,), "query budgets")
    imagenet_losses: list = _p(["mse"], "losses", (IMAGENET,), "stealing losses")
    # -- chapter 4: defenses ------------------------------------------------------------------
    strengths: list = _p(
        [0.1, 0.5],
        "floats+",
        (DEFENSES,),
        "noise std as multiples of the representation's std (the undefended API, 0, is always measured)",
    )
    thresholds: list = _p([0.8], "floats0", (DEFENSES,), "duplicate-detector thresholds (official: 0.8)")
    defense_steal_epochs: int = _p(
        6, "int+", (DEFENSES,), "epochs of the attackers' stealing runs (below steal_epochs: the chapter's time budget)"
    )
    defense_attack_losses: list = _p(
        ["mse"], "losses", (DEFENSES,), "losses of the attackers against the defenses (the best one is judged)"
    )
    defense_losses: list = _p(["mse", "infonce"], "losses", (WATERMARK,), "attackers' losses")
    # -- chapter 5: the watermark -----------------------------------------------------------------
    watermark_task: str = _p("binary", "choice", (WATERMARK,), "rotation task", WATERMARK_TASKS)
    watermark_epochs: int = _p(6, "int+", (WATERMARK,), "watermark fine-tuning epochs")
    watermark_budgets: list = _p(
        [250, 1000], "budgets", (WATERMARK,), "queries of the stolen suspects (the smallest: also the two arms')"
    )
    watermark_query_pool: int = _p(
        5000, "int+", (WATERMARK,), "attacker's query pool: each seed draws its own queries from it"
    )
    watermark_alpha: float = _p(0.05, "float+", (WATERMARK,), "family-wise level of the ownership tests (Holm)")
    reference_seeds: list = _p(
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "seeds",
        (WATERMARK, LATER),
        "seeds of the independent references (trained exactly like the victim)",
    )
    # -- chapter 6: after the paper -----------------------------------------------------------------
    later_budget: int = _p(
        1000, "int+", (LATER,), "queries of every attack of the benchmark (sybils: plus their overlap images)"
    )
    later_epochs: int = _p(
        4, "int+", (LATER,), "epochs of every stealing run of the benchmark (below steal_epochs: the time budget)"
    )
    later_noise_std: float = _p(
        0.5, "float+", (LATER,), "Gaussian-noise defense: std in multiples of the representation's (one of chapter 4's)"
    )
    stolenencoder_lambda: float = _p(
        20.0, "float0", (LATER,), "StolenEncoder's lambda in the benchmark (its code's runners: 20, with k = 1)"
    )
    stolenencoder_sweep: list = _p(
        [0.0], "floats0", (LATER,), "more StolenEncoder lambdas, undefended API only (0: no augmentation)"
    )
    b4b_tables: int = _p(20, "int+", (LATER,), "B4B: LSH tables (official 20)")
    b4b_hyperplanes: int = _p(
        8, "int+", (LATER,), "B4B: hyperplanes per table (official 12; 2^r buckets must stay below the queries)"
    )
    b4b_alpha: float = _p(
        1.0, "float+", (LATER,), "B4B: noise std at coverage beta, in representation stds (official 1)"
    )
    b4b_beta: float = _p(
        55.0, "float+", (LATER,), "B4B: coverage (%) where the noise reaches alpha (official 80; set from the curves)"
    )
    b4b_lam: float = _p(1e-7, "float+", (LATER,), "B4B: lambda of the cost function (official 1e-7)")
    b4b_transform: str = _p("affine", "choice", (LATER,), "B4B: per-user transformation", TRANSFORMS)
    b4b_hash: str = _p(
        "embeddings",
        "choice",
        (LATER,),
        "B4B: what is hashed (outputs: the answers; embeddings: head outputs)",
        HASH_SOURCES,
    )
    sybil_accounts: int = _p(4, "int+", (LATER,), "accounts of the sybil attacker against B4B")
    sybil_overlap: int = _p(
        100, "int+", (LATER,), "images the adaptive attackers send to every account (maps and answer statistics)"
    )
    di_images: int = _p(
        1000,
        "int+",
        (LATER,),
        "dataset inference: fit and member images (each) of the victim's, and as many test images",
    )
    di_alpha: float = _p(0.01, "float+", (LATER,), "dataset inference: p-value below which a suspect is flagged")

    def __getitem__(self, name: str) -> Any:
        if name not in _NAMES:
            raise KeyError(unknown_message(name))
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def __contains__(self, name: object) -> bool:
        return name in _NAMES

    def keys(self) -> Iterator[str]:
        return iter(_NAMES)

    def for_chapter(self, chapter: str) -> dict[str, Any]:
        """The values of the parameters ``chapter`` declares, in schema order."""
        return {name: getattr(self, name) for name in chapter_parameters(chapter)}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = {f.name: f for f in fields(Params)}
_NAMES = tuple(_FIELDS)


def chapter_parameters(chapter: str) -> tuple[str, ...]:
    """The names ``chapter`` declares in its parameters cell, in schema order."""
    if chapter not in CHAPTERS:
        raise ValueError(f"Unknown chapter {chapter!r}. Known chapters: {', '.join(CHAPTERS)}.")
    return tuple(n for n, f in _FIELDS.items() if chapter in f.metadata["chapters"])


def unknown_message(name: str, chapter: str | None = None) -> str:
    known = chapter_parameters(chapter) if chapter else _NAMES
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    where = f"chapter {chapter!r}" if chapter else "the schema"
    return (
        f"Unknown parameter {name!r}.{hint} The parameters of {where} are: {', '.join(known)} "
        "(encsteal.params.Params documents each)."
    )


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"Parameter {name}={value!r} is not allowed. {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check(name: str, value: Any) -> Any:
    """Check one value against the schema; returns it (lists as lists). Raises ``ValueError``
    naming the allowed values, or ``KeyError``-style ``ValueError`` for an unknown name."""
    if name not in _FIELDS:
        raise ValueError(unknown_message(name))
    meta = _FIELDS[name].metadata
    kind = meta["kind"]
    list_kinds = ("datasets", "losses", "budgets", "seeds", "floats+", "floats0")
    if kind in list_kinds:
        if not isinstance(value, (list, tuple)):
            _fail(name, value, "Use a list (papermill's -p passes lists as strings: use -y or -f YAML).")
        value = list(value)
    if kind == "choice" and value not in meta["choices"]:
        _fail(name, value, f"Allowed: {', '.join(meta['choices'])}.")
    elif kind == "device" and not (value in DEVICES or str(value).startswith("cuda:")):
        _fail(name, value, f"Allowed: {', '.join(DEVICES)} or cuda:N.")
    elif kind == "int+" and (not _is_int(value) or value <= 0):
        _fail(name, value, "Use a positive integer.")
    elif kind == "int0" and (not _is_int(value) or value < 0):
        _fail(name, value, "Use a non-negative integer.")
    elif kind == "float+" and (not _is_number(value) or value <= 0):
        _fail(name, value, "Use a positive number.")
    elif kind == "float0" and (not _is_number(value) or value < 0):
        _fail(name, value, "Use a non-negative number.")
    elif kind in ("str", "path") and not isinstance(value, str):
        _fail(name, value, "Use a string.")
    elif kind == "dataset" and value not in DATASETS:
        _fail(name, value, f"Known data sets: {', '.join(DATASETS)}.")
    elif kind == "datasets":
        for v in value:
            if v not in DATASETS:
                _fail(name, v, f"Known data sets: {', '.join(DATASETS)}.")
    elif kind == "losses":
        for v in value:
            if v not in LOSSES:
                _fail(name, v, f"Known losses: {', '.join(LOSSES)}.")
    elif kind == "budgets":
        for v in value:
            if not _is_int(v) or v <= 0:
                _fail(name, v, "Each budget is a positive number of queries.")
    elif kind == "seeds":
        for v in value:
            if not _is_int(v) or v < 0:
                _fail(name, v, "Each seed is a non-negative integer.")
    elif kind in ("floats+", "floats0"):
        if not value or any(not _is_number(v) or (v <= 0 if kind == "floats+" else v < 0) for v in value):
            _fail(
                name,
                value,
                "Use a non-empty list of " + ("positive" if kind == "floats+" else "non-negative") + " numbers.",
            )
    elif kind == "loss_settings":
        if not isinstance(value, Mapping):
            _fail(name, value, "Use a mapping {loss: {parameter: value}} (YAML, -y or -f).")
        for loss, settings in value.items():
            if loss not in LOSSES:
                _fail(name, loss, f"Known losses: {', '.join(LOSSES)}.")
            if not isinstance(settings, Mapping):
                _fail(name, settings, f"The settings of {loss!r} must be a mapping of loss parameters.")
            try:
                get_loss(loss, **settings)  # the loss itself names its allowed parameters
            except TypeError as err:
                _fail(name, {loss: dict(settings)}, str(err))
        value = {k: dict(v) for k, v in value.items()}
    return value


def _check_together(p: Params) -> None:
    if len(set(p.budgets)) != len(p.budgets):
        _fail("budgets", p.budgets, "List each budget once.")
    try:
        b4b_sigma(0.0, p.b4b_alpha, p.b4b_beta, p.b4b_lam)  # the cost function checks its parameters
    except ValueError as err:
        _fail("b4b_alpha, b4b_beta, b4b_lam", (p.b4b_alpha, p.b4b_beta, p.b4b_lam), str(err))
    if p.b4b_hyperplanes > MAX_HYPERPLANES:
        _fail(
            "b4b_hyperplanes",
            p.b4b_hyperplanes,
            f"Use at most {MAX_HYPERPLANES} (2^{MAX_HYPERPLANES} buckets per table).",
        )
    if not 0 < p.di_alpha < 1:
        _fail("di_alpha", p.di_alpha, "Use a level in (0, 1), e.g. 0.01.")


def profile_overrides(profile: str) -> dict[str, Any]:
    """The values ``params/<profile>.yaml`` sets (following its ``base`` chain), unchecked."""
    if profile not in PROFILES:
        _fail("profile", profile, f"Allowed: {', '.join(PROFILES)}.")
    path = PROFILE_DIR / f"{profile}.yaml"
    raw = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    raw.pop("experiments", None)  # the full profile's paper-scale pipeline (encsteal.experiments.paper_scale)
    raw.pop("tiny", None)
    base = raw.pop("base", None)
    values = profile_overrides(base) if base else {}
    values.update(raw)
    values["profile"] = profile
    return values


def resolve(profile: str = "quick", overrides: Mapping[str, Any] | None = None, chapter: str | None = None) -> Params:
    """Schema defaults, then the profile's values, then ``overrides`` (``None`` values ignored),
    all checked. With ``chapter``, an override that chapter does not declare is an error."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for name in given:
        if name not in _FIELDS:
            raise ValueError(unknown_message(name, chapter))
        if chapter is not None and name not in chapter_parameters(chapter) and name != "profile":
            users = ", ".join(_FIELDS[name].metadata["chapters"])
            raise ValueError(
                f"Parameter {name!r} is not used by chapter {chapter!r} (it belongs to: {users}). "
                f"The parameters of {chapter!r} are: {', '.join(chapter_parameters(chapter))}."
            )
    profile = given.get("profile", profile)
    values = {**profile_overrides(check("profile", profile)), **given}
    p = replace(Params(), **{k: check(k, v) for k, v in values.items()})
    _check_together(p)
    return p


def validate(values: Mapping[str, Any], chapter: str | None = None) -> Params:
    """Resolve the parameters ``values`` sets (a mapping of names; ``profile`` picks the profile)."""
    return resolve(values.get("profile") or "quick", values, chapter)


# ---- the configurations the parameters imply ------------------------------------------------


def victim_config(p: Params, method: str = "simclr", seed: int | None = None) -> VictimConfig:
    """The chapters' victim (the shipped victims match the quick profile)."""
    return VictimConfig(
        method=method,
        dataset=p.victim_dataset,
        num_train=p.victim_num_train,
        epochs=p.victim_epochs,
        temperature=p.victim_temperature,
        lr=p.victim_lr,
        seed=p.victim_seed if seed is None else seed,
    )


def probe_sizes(p: Params) -> dict[str, int]:
    return {"probe_train": p.probe_train, "probe_val": p.probe_val, "probe_test": p.probe_test}


def other_data_config(p: Params) -> VictimConfig:
    """An independent SimCLR model on other data (MNIST-5k, seed 7): a watermark control."""
    return replace(victim_config(p, seed=7), dataset="mnist5k", num_train=min(p.victim_num_train, 4000))


def reference_configs(p: Params) -> list[VictimConfig]:
    """Independent SimCLR references for the watermark test: trained exactly like the victim (same
    data, epochs and settings), other seeds."""
    return [victim_config(p, seed=s) for s in p.reference_seeds]


def watermark_config(p: Params) -> WatermarkConfig:
    from encsteal.watermark import WatermarkConfig

    return WatermarkConfig(task=p.watermark_task, epochs=p.watermark_epochs, lr=1e-3, seed=p.seed)


def loss_params(p: Params, loss: str) -> dict[str, Any]:
    """The profile's settings of ``loss`` (empty: the loss's own defaults)."""
    return dict(p.loss_settings.get(loss, {}))
