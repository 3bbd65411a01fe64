"""Speed measurements (images/s, seconds) used by ``bench/`` and the book's performance appendix.

They measure; they assert nothing. Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping

import pandas as pd
import torch

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data import load, role_splits
from encsteal.models import SmallConvNet, build_encoder
from encsteal.probe import extract_features, probe_features
from encsteal.victims import VictimConfig, fit_victim


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


def machine_table() -> pd.DataFrame:
    """:func:`machine` as a one-column table."""
    return pd.Series(machine(), name="value").to_frame()


def chapter_table(victim_images: int, queries: int, steal_epochs: int) -> pd.DataFrame:
    """The performance appendix's measurements, one row per workload (indexed by ``what``)."""
    rows = (
        victim_training(images=min(victim_images, 2560), epochs=1)
        + stealing(queries=queries, epochs=max(steal_epochs // 4, 1))
        + efficientnet_forward((32, 64))
        + probe_time(probe_train=1000, probe_val=500, probe_test=1000)
    )
    return pd.DataFrame(rows).set_index("what")


def headline(table: pd.DataFrame) -> dict[str, float]:
    """How much faster answering each query once is than re-querying every epoch."""
    once = table.loc["steal, augment=none, query once", "images_per_s"]
    again = table.loc["steal, augment=none, re-query every epoch (official)", "images_per_s"]
    return {"steal_ratio": float(once / again), "has_gpu": float(torch.cuda.is_available())}


def build_times_table(load: Callable[[str], Mapping]) -> tuple[pd.DataFrame, dict[str, float]]:
    """How long each chapter took in the ``make book`` build that last executed it, from the
    builder's ``build_times`` record (``load`` is :meth:`encsteal.notebook.Chapter.load_results`),
    and the totals. A chapter run outside a book build has no such record: an empty table."""
    try:
        record = load("build_times")
    except FileNotFoundError:
        return pd.DataFrame(columns=["seconds"]).rename_axis("chapter"), {"chapters_seconds": 0.0, "build_jobs": 0.0}
    seconds = {name: s for name, s in record["seconds"].items() if s is not None}
    table = pd.Series(seconds, name="seconds").rename_axis("chapter").to_frame()
    return table, {"chapters_seconds": float(record["wall_seconds"]), "build_jobs": float(record["jobs"])}
