"""Speed measurements (images/s, seconds) used by ``bench/`` and the book's performance appendix.

They measure; they assert nothing. Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pandas as pd
import torch

from encsteal import tables
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data import load, role_splits
from encsteal.models import SmallConvNet, build_encoder
from encsteal.probe import extract_features, probe_features
from encsteal.victims import VictimConfig, fit_victim

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def machine() -> dict[str, object]:
    return {
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def victim_training(images: int = 2560, epochs: int = 2) -> list[dict[str, object]]:
    """Victim-training throughput (views through encoder + head, forward + backward) per method."""
    data = load("fmnist", "train").subset(torch.arange(images))
    rows = []
    for method in ("simclr", "supervised"):
        cfg = VictimConfig(method=method, num_train=images, epochs=epochs)
        v = fit_victim(cfg, data, device="cpu", progress=False)
        rows.append(
            {
                "what": f"{method} victim training (convnet, 28x28x1, batch {cfg.batch_size})",
                "images_per_s": v.record["images_per_second"],
                "seconds": v.train_seconds,
            }
        )
    return rows


def probe_time(probe_train: int = 5000, probe_val: int = 1000, probe_test: int = 2000) -> list[dict[str, object]]:
    """Feature extraction and probe fitting time for the quick encoder."""
    enc = SmallConvNet(1).eval()
    splits = role_splits(
        "fmnist", {"probe_train": probe_train, "probe_val": probe_val, "probe_test": probe_test}, seed=0
    )
    start = time.perf_counter()
    feats = {r: extract_features(enc, splits[r]) for r in ("probe_train", "probe_val", "probe_test")}
    t_feat = time.perf_counter() - start
    n = probe_train + probe_val + probe_test
    full = probe_features(feats, splits)
    few = probe_features(feats, splits, per_class=10)
    return [
        {"what": f"features of {n} images (convnet)", "images_per_s": n / t_feat, "seconds": t_feat},
        {
            "what": f"linear probe ({probe_train} labels, 4 C values) + k-NN",
            "images_per_s": float("nan"),
            "seconds": full.seconds,
        },
        {"what": "few-label probe (10 per class)", "images_per_s": float("nan"), "seconds": few.seconds},
    ]


def stealing(queries: int = 1000, epochs: int = 5, views: int = 2) -> list[dict[str, object]]:
    """Stealing throughput, query-once vs the official re-query-every-epoch design."""
    torch.manual_seed(0)
    victim = SmallConvNet(1).eval()
    data = load("fmnist", "train").subset(torch.arange(queries))
    rows = []
    for augment in ("none", "views"):
        for requery in (False, True):
            cfg = StealConfig(loss="infonce", epochs=epochs, augment=augment, views=views, requery_every_epoch=requery)
            start = time.perf_counter()
            res = steal(EncoderAPI(victim), data, cfg, cache=ResultCache(enabled=False), device="cpu", progress=False)
            wall = time.perf_counter() - start
            design = "re-query every epoch (official)" if requery else "query once"
            rows.append(
                {
                    "what": f"steal, augment={augment}, {design}",
                    "images_per_s": res.record_images / wall,
                    "seconds": wall,
                    "queries": res.queries,
                }
            )
    return rows


def efficientnet_forward(sizes: tuple[int, ...] = (32, 64), batch: int = 64) -> list[dict[str, object]]:
    """EfficientNet-Lite0 forward speed at several input sizes."""
    enc = build_encoder("efficientnet_lite0")
    rows = []
    for size in sizes:
        x = torch.rand(batch, 3, size, size)
        with torch.inference_mode():
            enc(x)
            start = time.perf_counter()
            enc(x)
            t = time.perf_counter() - start
        rows.append(
            {
                "what": f"EfficientNet-Lite0 forward at {size} px (batch {batch})",
                "images_per_s": batch / t,
                "seconds": t,
            }
        )
    return rows


def machine_table(info: Mapping[str, object] | None = None) -> pd.DataFrame:
    """:func:`machine` (or ``info``) as a one-column table for readers: rows named, "none" where
    there is nothing (no CUDA device)."""
    info = machine() if info is None else info
    values = {k: "none" if v is None else v for k, v in info.items()}
    return pd.Series(values, name="value", dtype=object).rename_axis("machine").to_frame()


def chapter_table(victim_images: int, queries: int, steal_epochs: int) -> pd.DataFrame:
    """The performance appendix's measurements, one row per workload (indexed by ``what``)."""
    rows = (
        victim_training(images=min(victim_images, 2560), epochs=1)
        + stealing(queries=queries, epochs=max(steal_epochs // 4, 1))
        + efficientnet_forward((32, 64))
        + probe_time(probe_train=1000, probe_val=500, probe_test=1000)
    )
    return pd.DataFrame(rows).set_index("what")


def reader_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`chapter_table` for readers: images per second, seconds and queries billed per workload,
    "n/a" where a workload has no such number (a probe fit has no images per second, only the
    stealing runs bill queries)."""
    missing = [c for c in ("images_per_s", "seconds") if c not in table]
    if missing:
        raise ValueError(f"reader_table needs the columns images_per_s and seconds (missing: {', '.join(missing)}).")
    out = pd.DataFrame(index=table.index.rename("workload"))
    out["images/s"] = [tables.number(v, 1) for v in table["images_per_s"]]
    out["seconds"] = [tables.number(v, 2) for v in table["seconds"]]
    queries = table["queries"] if "queries" in table else pd.Series(float("nan"), index=table.index)
    out["queries billed"] = [tables.NA if tables.is_missing(v) else f"{int(v):,}" for v in queries]
    return out


def throughput_figure(table: pd.DataFrame, info: Mapping[str, object]) -> Figure:
    """Images per second of every workload of :func:`chapter_table` that has one, as horizontal
    bars (fastest at the top), titled with the machine (``info``: :func:`machine`)."""
    speeds = table["images_per_s"].dropna().sort_values()
    if speeds.empty:
        raise ValueError("throughput_figure: no workload has an images-per-second figure.")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 0.9 + 0.32 * len(speeds)))
    ax.barh(list(speeds.index), speeds.to_numpy(), color="#4c72b0")
    ax.set_xlabel("images per second")
    threads = info.get("threads")
    ax.set_title(f"{info.get('processor', 'this machine')}, {threads} thread(s)", fontsize=10)
    fig.tight_layout()
    return fig


def build_times_reader(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`build_times_table` for readers: seconds per chapter, or one "n/a" row when this page
    was not built by ``make book`` (no record)."""
    if table.empty:
        return pd.DataFrame({"seconds": [tables.NA]}, index=pd.Index(["no build record"], name="chapter"))
    return pd.DataFrame(
        {"seconds": [tables.number(float(v), 0) for v in table["seconds"]]},
        index=table.index.rename("chapter"),
    )


def results(table: pd.DataFrame, info: Mapping[str, object], times: pd.DataFrame) -> dict[str, object]:
    """What the performance appendix saves: the machine, every measurement and the build times."""
    return {
        "machine": dict(info),
        "measurements": table.reset_index().to_dict(orient="records"),
        "build_seconds": {str(k): float(v) for k, v in times["seconds"].items()},
    }


def headline(table: pd.DataFrame) -> dict[str, float]:
    """How much faster answering each query once is than re-querying every epoch (glue names of the
    performance appendix)."""
    once = table.loc["steal, augment=none, query once", "images_per_s"]
    again = table.loc["steal, augment=none, re-query every epoch (official)", "images_per_s"]
    return {"performance_steal_ratio": float(once / again), "performance_has_gpu": float(torch.cuda.is_available())}


def headline_text(table: pd.DataFrame) -> dict[str, str]:
    """The appendix's sentence on query-once vs re-query-every-epoch stealing, chosen from the measurement."""
    ratio = headline(table)["performance_steal_ratio"]
    speed = (
        f"is {ratio:.2f} times as fast as re-querying the victim every epoch as the official code does"
        if ratio >= 1
        else f"was not faster here than re-querying the victim every epoch as the official code does ({ratio:.2f} "
        "times its speed, one measurement each on a shared machine)"
    )
    return {
        "performance_steal_text": f"Answering each query once and reusing the answers {speed}; it also pays "
        "for each image once instead of once per epoch."
    }


# ---- the paper's architectures (chapter 1's cost model) -------------------------------------------

PAPER_ARCHITECTURES: tuple[tuple[str, int], ...] = (("resnet34", 32), ("resnet50", 224))
"""(architecture, input size) of the paper's victims: CIFAR ResNet-34 at 32 px, ResNet-50 at 224 px."""


def paper_architecture(arch: str, size: int, batch: int = 4, steps: int = 2, seed: int = 0) -> list[dict[str, object]]:
    """Images per second of ``arch`` at ``size`` px (3 channels, random images, on the CPU), each
    workload sending the same ``batch`` images through the encoder per step:

    * ``victim step``: a SimCLR training step, two views of ``batch / 2`` images through the encoder
      and a 512-512-128 projection head, NT-Xent, backward and an SGD update (per view);
    * ``stealing step``: the copy's training step on ``batch`` queries, MSE to stored answers,
      backward and an SGD update (per query);
    * ``API answer``: a forward-only pass of ``batch`` queries in inference mode (per query).

    Each is timed over ``steps`` calls after one untimed warm-up round, the three workloads
    interleaved. Data loading and augmentation are not timed (assumed to overlap with the steps)."""
    from encsteal.losses import mse_loss, nt_xent
    from encsteal.models import ProjectionHead

    if batch < 2 or batch % 2 or steps < 1:
        raise ValueError(f"Need an even batch >= 2 (two views) and steps >= 1, got batch={batch}, steps={steps}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = build_encoder(arch, 3, size)
        head = ProjectionHead(enc.rep_dim, 512, 128)
        x = torch.rand(batch, 3, size, size)
        target = torch.randn(batch, enc.rep_dim)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    half = batch // 2

    def victim_step() -> None:
        z = head(enc(x))  # rows [:half] and [half:] are the two views
        loss = nt_xent(z[:half], z[half:], 0.07)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def stealing_step() -> None:
        loss = mse_loss(enc(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def api_answer() -> None:
        with torch.inference_mode():
            enc(x)

    workloads = (
        ("victim step", victim_step, True),
        ("stealing step", stealing_step, True),
        ("API answer", api_answer, False),
    )
    seconds = {w: 0.0 for w, _, _ in workloads}
    for timed in range(steps + 1):  # interleaved, so that a change of load hits every workload alike
        for workload, fn, train in workloads:
            enc.train(train)
            head.train(train)
            start = time.perf_counter()
            fn()
            if timed:  # the first round warms up
                seconds[workload] += time.perf_counter() - start
    return [
        {
            "arch": arch,
            "image_size": size,
            "workload": workload,
            "batch": batch,
            "steps": steps,
            "seconds": seconds[workload],
            "images_per_s": batch * steps / seconds[workload],
        }
        for workload, _, _ in workloads
    ]


def paper_architectures(batch: int = 4, steps: int = 2) -> list[dict[str, object]]:
    """:func:`paper_architecture` for every entry of :data:`PAPER_ARCHITECTURES`."""
    return [row for arch, size in PAPER_ARCHITECTURES for row in paper_architecture(arch, size, batch, steps)]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> dict[str, object]:
    """:func:`machine` plus the CPU model, its logical cores and the load average when measured."""
    import os

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {**machine(), "cpu": cpu_model(), "logical cores": os.cpu_count(), "load average (1 min)": load[0]}


def build_times_table(load: Callable[[str], Mapping]) -> tuple[pd.DataFrame, dict[str, float]]:
    """How long each chapter took in the ``make book`` build that last executed it, from the
    builder's ``build_times`` record (``load`` is :meth:`encsteal.notebook.Chapter.load_results`),
    and the totals (glue names of the performance appendix). A chapter run outside a book build
    has no such record: an empty table."""
    try:
        record = load("build_times")
    except FileNotFoundError:
        empty = pd.DataFrame(columns=["seconds"]).rename_axis("chapter")
        return empty, {"performance_chapters_seconds": 0.0, "performance_build_jobs": 0.0}
    seconds = {name: s for name, s in record["seconds"].items() if s is not None}
    table = pd.Series(seconds, name="seconds").rename_axis("chapter").to_frame()
    totals = {
        "performance_chapters_seconds": float(record["wall_seconds"]),
        "performance_build_jobs": float(record["jobs"]),
    }
    return table, totals
