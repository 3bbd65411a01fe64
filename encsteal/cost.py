"""What training an encoder costs against what stealing it through its API costs, at the paper's scale.

The paper's setups fix how many images pass through the network (book/paper_setup.md#setup-victims,
#setup-stealing): training the CIFAR10 SimCLR victim is 50,000 images x 2 views x 200 epochs of a
ResNet-34 training step; stealing it is 9,000 queries x 100 epochs of the same step, plus an API bill
for the queries. This module turns those counts into hours with throughputs measured by this package
(:func:`encsteal.benchmarks.paper_architectures`: images per second of a victim training step, of a
stealing step and of a forward-only API answer), and hours into money at a compute price per hour;
the queries are billed at an API price per 1,000 queries.

Two accountings of the queries (book/paper_setup.md#setup-query-accounting): each query sent once and
its answer reused (``requery=False``, the paper's budgets), or every query sent again in every epoch
of the attack (``requery=True``, the official code: ``steal_epochs`` times the queries).

What is assumed, not measured: the step of the victim and the step of the copy are timed on the same
machine, so the compute ratio training/stealing rests on measured per-image costs; turning the hours
into money assumes the price per hour applies to the machine that was measured. The API's own
forward passes are the provider's cost, covered by the API price; they are reported (provider
hours), not added to the attacker's bill.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

WORKLOADS: tuple[str, ...] = ("victim step", "stealing step", "API answer")
"""What :func:`encsteal.benchmarks.paper_architectures` times for each architecture."""


@dataclass(frozen=True)
class PaperSetup:
    """One of the paper's victim / stealing pairs, as counts of images through the network."""

    name: str
    victim: str
    arch: str
    image_size: int
    train_images: int
    train_views: int
    train_epochs: int
    queries: int
    steal_epochs: int
    source: str

    def __post_init__(self) -> None:
        for f in ("image_size", "train_images", "train_views", "train_epochs", "queries", "steal_epochs"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{f} must be > 0, got {getattr(self, f)}.")

    @property
    def train_passes(self) -> int:
        """Images (views) through a victim training step: images x views x epochs."""
        return self.train_images * self.train_views * self.train_epochs

    @property
    def steal_passes(self) -> int:
        """Images through a stealing step: queries x epochs (one view, as in the paper's default)."""
        return self.queries * self.steal_epochs

    def api_queries(self, requery: bool) -> int:
        """Queries billed: each once, or again in every epoch (the official code)."""
        return self.queries * (self.steal_epochs if requery else 1)

    def as_dict(self) -> dict:
        return asdict(self)


IMAGENET_TRAIN = 1_281_167
PAPER_SETUPS: tuple[PaperSetup, ...] = (
    PaperSetup(
        "CIFAR10 SimCLR ResNet-34, 9,000 queries",
        "CIFAR10 SimCLR ResNet-34",
        "resnet34",
        32,
        50_000,
        2,
        200,
        9_000,
        100,
        "book/paper_setup.md#setup-victim-cifar, #setup-stealing-cifar",
    ),
    PaperSetup(
        "ImageNet SimSiam ResNet-50, 50K queries",
        "ImageNet SimSiam ResNet-50",
        "resnet50",
        224,
        IMAGENET_TRAIN,
        2,
        100,
        50_000,
        100,
        "book/paper_setup.md#setup-victim-imagenet, #setup-stealing-imagenet",
    ),
    PaperSetup(
        "ImageNet SimSiam ResNet-50, 250K queries",
        "ImageNet SimSiam ResNet-50",
        "resnet50",
        224,
        IMAGENET_TRAIN,
        2,
        100,
        250_000,
        100,
        "book/paper_setup.md#setup-victim-imagenet, #setup-stealing-imagenet",
    ),
)
"""The paper's setups: CIFAR10 SimCLR victim (2 views, 200 epochs) stolen with 9,000 queries for 100
epochs; the SimSiam ImageNet checkpoint (2 views, 100 epochs on 1.28 M images) stolen with 50K or 250K
queries for 100 epochs."""


@dataclass(frozen=True)
class Throughput:
    """Measured images per second of one architecture: a victim training step (per view), a stealing
    step (per query) and a forward-only API answer (per query)."""

    arch: str
    victim_step: float
    stealing_step: float
    api_answer: float

    def __post_init__(self) -> None:
        for f in ("victim_step", "stealing_step", "api_answer"):
            v = getattr(self, f)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{self.arch}: {f} throughput must be a positive number, got {v}.")


def throughputs(rows: Iterable[Mapping]) -> dict[str, Throughput]:
    """:class:`Throughput` per architecture from measurement rows (``arch``, ``workload``, ``images_per_s``)."""
    by: dict[str, dict[str, float]] = {}
    for r in rows:
        by.setdefault(r["arch"], {})[r["workload"]] = float(r["images_per_s"])
    out = {}
    for arch, w in by.items():
        missing = [k for k in WORKLOADS if k not in w]
        if missing:
            raise ValueError(f"No {', '.join(missing)} throughput measured for {arch}.")
        out[arch] = Throughput(arch, w["victim step"], w["stealing step"], w["API answer"])
    return out


def hours(setup: PaperSetup, tp: Throughput, requery: bool = False) -> dict[str, float]:
    """Hours of training, of the attacker's stealing, and of the provider answering the queries."""
    return {
        "train_hours": setup.train_passes / tp.victim_step / 3600.0,
        "steal_hours": setup.steal_passes / tp.stealing_step / 3600.0,
        "provider_hours": setup.api_queries(requery) / tp.api_answer / 3600.0,
        "api_queries": float(setup.api_queries(requery)),
    }


def costs(
    setup: PaperSetup, tp: Throughput, compute_per_hour: float, api_per_1k: float, requery: bool = False
) -> dict[str, float]:
    """USD of training and of stealing (attacker's compute + API bill), and their ratio."""
    if compute_per_hour <= 0 or api_per_1k < 0:
        raise ValueError(f"Need compute_per_hour > 0 and api_per_1k >= 0, got {compute_per_hour}, {api_per_1k}.")
    h = hours(setup, tp, requery)
    train = h["train_hours"] * compute_per_hour
    compute = h["steal_hours"] * compute_per_hour
    api = h["api_queries"] / 1000.0 * api_per_1k
    return {
        **h,
        "train_usd": train,
        "steal_compute_usd": compute,
        "api_usd": api,
        "steal_usd": compute + api,
        "train_over_steal": train / (compute + api),
    }


def api_price_for_ratio(
    setup: PaperSetup, tp: Throughput, compute_per_hour: float, ratio: float = 1.0, requery: bool = False
) -> float | None:
    """The API price per 1,000 queries below which training costs at least ``ratio`` times stealing
    (``ratio=1``: the break-even price above which stealing costs more than training). ``None``
    when the attacker's compute alone already costs more than training / ``ratio``."""
    if ratio <= 0:
        raise ValueError(f"ratio must be > 0, got {ratio}.")
    h = hours(setup, tp, requery)
    room = (h["train_hours"] / ratio - h["steal_hours"]) * compute_per_hour
    if room < 0:
        return None
    return room / h["api_queries"] * 1000.0


def price_grid(
    setups: Sequence[PaperSetup],
    tps: Mapping[str, Throughput],
    compute_prices: Sequence[float],
    api_prices: Sequence[float],
    requery: Sequence[bool] = (False, True),
) -> list[dict]:
    """One row per setup, accounting, compute price and API price: :func:`costs`."""
    rows = []
    for s in setups:
        for rq in requery:
            for c in compute_prices:
                for a in api_prices:
                    rows.append(
                        {
                            "setup": s.name,
                            "accounting": ACCOUNTING[rq],
                            "compute_per_hour": float(c),
                            "api_per_1k": float(a),
                            **costs(s, tps[s.arch], c, a, rq),
                        }
                    )
    return rows


ACCOUNTING = {False: "each query once", True: "re-query every epoch (official code)"}
