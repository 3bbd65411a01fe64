"""The paper's tables at paper scale (Dziedzic et al. 2022, arXiv:2205.07890): the experiment
YAML (its ``experiments`` section, checked before any training) and the two chapters.

* ``cifar``: the loss table. A SimCLR ResNet-34 victim trained on CIFAR10; each loss steals it
  with CIFAR10-test and SVHN queries; linear probes of the victim and every copy on CIFAR10 and
  STL10 at 32x32.
* ``imagenet``: the ImageNet table. The SimSiam ResNet-50 from its published checkpoint, stolen
  with InfoNCE from CIFAR10, SVHN and ImageNet queries; probes at 224 px.

:func:`run` runs the chosen chapters (data checked first, results cached so that an interrupted
run resumes) and writes ``results.json`` and ``summary.md``; :func:`tiny_setup` points a run at
tiny stand-in files. The command line is :mod:`encsteal.full`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from torch import nn

from encsteal import distributed, simsiam
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data.hub import DataHub, log
from encsteal.data.paper import PAPER_SPLITS
from encsteal.data.splits import draw_disjoint
from encsteal.losses import LOSSES
from encsteal.probe import probe_all
from encsteal.runtime import RunOptions, prepare_device
from encsteal.victims import VictimConfig, train_victim

CHAPTERS: tuple[str, ...] = ("cifar", "imagenet")


# ---------------------------------------------------------------------------- configuration


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``: nested dicts merged, ``~`` (null) removes a key,
    everything else replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_experiments(path: str | os.PathLike, tiny: bool = False) -> dict:
    """The ``experiments`` section of a profile YAML (with its ``tiny`` overlay if ``tiny``)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if "experiments" not in raw:
        raise ValueError(
            f"{path} has no 'experiments' section: the full-profile pipeline reads it (see params/full.yaml)."
        )
    exp = raw["experiments"]
    if tiny:
        if "tiny" not in raw:
            raise ValueError(f"{path} has no 'tiny' overlay for --tiny.")
        exp = deep_merge(exp, raw["tiny"])
    validate(exp)
    return exp


def validate(exp: dict) -> None:
    """Build every configuration once so that a typo fails before hours of training."""
    RunOptions(**exp.get("runtime", {}))
    if "cifar" in exp:
        c = exp["cifar"]
        VictimConfig(**c["victim"])
        for loss in c["run_losses"]:
            if loss not in c["losses"]:
                raise ValueError(f"cifar.run_losses names {loss!r} but cifar.losses has no settings for it.")
            steal_config(c, loss, 0)
        for q in c["queries"].values():
            _check_query_spec(q)
    if "imagenet" in exp:
        m = exp["imagenet"]
        StealConfig(**m["steal"])
        for q in m["queries"].values():
            _check_query_spec(q)


def steal_config(chapter: dict, loss: str, seed: int) -> StealConfig:
    """The CIFAR chapter's StealConfig for ``loss``: common settings + that loss's
    (book/paper_setup.md#setup-stealing-cifar)."""
    return StealConfig(**{**chapter["steal"], **chapter["losses"][loss], "loss": loss, "seed": seed})


def _check_query_spec(q: dict) -> None:
    splits = q.get("splits") or [q.get("split", "train")]
    name = q["dataset"]
    if name not in PAPER_SPLITS:
        raise ValueError(f"Unknown query data set {name!r}. Known: {', '.join(PAPER_SPLITS)}.")
    bad = [s for s in splits if s not in PAPER_SPLITS[name]]
    if bad:
        raise ValueError(f"Unknown split(s) {bad} for {name!r}; allowed: {PAPER_SPLITS[name]}.")


def chapter_needs(exp: dict, chapters: tuple[str, ...]) -> set[tuple[str, str]]:
    """Every (data set, split) the chosen chapters read."""
    needs: set[tuple[str, str]] = set()
    for ch in chapters:
        spec = exp[ch]
        if ch == "cifar":
            needs.add((spec["victim"]["dataset"], "train"))
        for q in spec["queries"].values():
            for s in q.get("splits") or [q.get("split", "train")]:
                needs.add((q["dataset"], s))
        for p in spec["probes"].values():
            needs.add((p["dataset"], p.get("train_split", "train")))
            needs.add((p["dataset"], p.get("test_split", "test")))
    return needs


# ---------------------------------------------------------------------------- chapters


def _steal_record(res) -> dict:
    return {
        "queries": res.queries,
        "seconds": res.seconds,
        "images_per_second": res.images_per_second,
        "final_loss": res.loss_curve[-1] if res.loss_curve else None,
        "from_cache": res.from_cache,
    }


def run_cifar(spec: dict, hub: DataHub, opts: RunOptions, cache: ResultCache, seed: int, progress: bool) -> dict:
    """The loss table: SimCLR ResNet-34 victim on CIFAR10, six losses x two query sets, probes."""
    dev = prepare_device(opts)
    vcfg = VictimConfig(**spec["victim"])
    train = hub.load(vcfg.dataset, "train")
    if vcfg.num_train > len(train):
        raise ValueError(f"victim.num_train={vcfg.num_train} but {vcfg.dataset} train has {len(train)} images.")
    picked = draw_disjoint(len(train), {"victim": vcfg.num_train}, vcfg.split_seed)["victim"]
    log(
        f"victim: SimCLR {vcfg.arch} on {vcfg.dataset} ({vcfg.num_train} images, {vcfg.epochs} epochs, "
        f"batch {vcfg.batch_size})"
    )
    victim = train_victim(vcfg, cache, progress=progress, options=opts, data=train.subset(picked))
    record: dict[str, Any] = {"victim": {k: v for k, v in victim.record.items() if k != "loss_curve"}, "steals": {}}
    api = EncoderAPI(victim.encoder, victim.head, device=dev)
    encoders: dict[str, nn.Module] = {"victim": victim.encoder}
    size = spec.get("image_size", 32)
    for qname, qspec in spec["queries"].items():
        queries = hub.query_set(qspec)
        for loss in spec["run_losses"]:
            cfg = steal_config(spec, loss, seed)
            labels = queries.labels if LOSSES[loss].needs_labels else None
            log(
                f"steal {qname} ({len(queries)} queries) with {loss}: batch {cfg.batch_size}, "
                f"{cfg.optimizer} lr {cfg.lr}, {cfg.epochs} epochs"
            )
            res = steal(
                api, queries, cfg, query_labels=labels, input_size=size, cache=cache, progress=progress, options=opts
            )
            encoders[f"{qname}/{loss}"] = res.encoder
            record["steals"][f"{qname}/{loss}"] = _steal_record(res)
    api.encoder.cpu()
    record["probes"] = probe_all(encoders, spec["probes"], spec["probe"], hub, opts, seed, log)
    return record


def run_imagenet(
    spec: dict, hub: DataHub, opts: RunOptions, cache: ResultCache, seed: int, progress: bool, download_weights: bool
) -> dict:
    """The ImageNet table: SimSiam ResNet-50 victim, InfoNCE stealing from 50K/250K queries, probes at 224 px."""
    dev = prepare_device(opts)
    v = spec["victim"]
    path = Path(v["checkpoint"]) if v.get("checkpoint") else None
    if distributed.is_main():  # download (opt-in) and record/verify the checksum once
        simsiam.fetch_simsiam(path, download=download_weights or bool(v.get("download")), sha256=v.get("sha256"))
    distributed.barrier()
    victim = simsiam.load_simsiam_resnet50(path, sha256=v.get("sha256"))
    size = int(spec.get("image_size", 224))
    victim.input_size = size
    api = EncoderAPI(victim, device=dev, batch_size=int(spec.get("api_batch_size", 512)))
    record: dict[str, Any] = {
        "victim": {"checkpoint": str(path or simsiam.default_path()), "url": simsiam.SIMSIAM_URL},
        "steals": {},
    }
    encoders: dict[str, nn.Module] = {"victim": victim}
    cfg = StealConfig(**{**spec["steal"], "seed": seed})
    for qname, qspec in spec["queries"].items():
        queries = hub.query_set(qspec)
        classes = len(torch.unique(queries.labels)) if len(queries) else 0
        log(
            f"steal with {qname}: {len(queries)} queries from {qspec['dataset']} "
            f"{'+'.join(qspec.get('splits') or [qspec.get('split', 'train')])} ({classes} classes), {cfg.loss}, "
            f"batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, {cfg.epochs} epochs at {size} px"
        )
        res = steal(api, queries, cfg, input_size=size, cache=cache, progress=progress, options=opts)
        encoders[qname] = res.encoder
        record["steals"][qname] = {**_steal_record(res), "classes_in_queries": classes}
    api.encoder.cpu()
    probes = {k: {**p, "image_size": size} for k, p in spec["probes"].items()}
    for enc in encoders.values():
        enc.input_size = size
    record["probes"] = probe_all(encoders, probes, spec["probe"], hub, opts, seed, log)
    return record


def results_table(results: dict) -> pd.DataFrame:
    """Probe top-1 (%) of every encoder on every probe set: one row per (chapter, encoder), one
    column per probe set (in the YAML's order), and the queries a stolen copy took (<NA> for victims)."""
    rows = []
    for ch, rec in results.items():
        for enc, probes in rec.get("probes", {}).items():
            rows.append(
                {"chapter": ch, "encoder": enc}
                | {p: 100 * r["accuracy"] for p, r in probes.items()}
                | {"queries": rec.get("steals", {}).get(enc, {}).get("queries")}
            )
    table = pd.DataFrame(rows, columns=None if rows else ["chapter", "encoder", "queries"])
    table = table.set_index(["chapter", "encoder"])
    table = table[[c for c in table.columns if c != "queries"] + ["queries"]]
    return table.astype({"queries": "Int64"})


def summary_table(results: dict) -> str:
    """Markdown: per chapter, :func:`results_table`'s rows with that chapter's probe sets."""
    table = results_table(results)
    parts = []
    for ch in table.index.unique("chapter"):
        sub = table.loc[ch].dropna(axis=1, how="all")
        cells = sub.astype(object).where(sub.notna(), None)  # empty cells, not nan / <NA>
        parts += [f"### {ch}", "", cells.to_markdown(floatfmt=".1f", missingval=""), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------- runs


def run(
    exp: dict,
    chapters: tuple[str, ...] = CHAPTERS,
    progress: bool = True,
    download: bool = False,
    download_weights: bool = False,
    prepare_only: bool = False,
) -> dict:
    """Run the chosen chapters of ``exp`` (the YAML's ``experiments``); returns the results."""
    info = distributed.init_from_env()
    seed = int(exp.get("seed", 0))
    opts = RunOptions(**exp.get("runtime", {}))
    dev = prepare_device(opts)
    log(
        f"{info.world_size} process(es), device {dev}, bf16 autocast {'on' if opts.amp else 'off'}, "
        f"channels_last {opts.channels_last}, loader {opts.loader} ({opts.num_workers} workers)"
    )
    hub = DataHub(exp.get("data_root"), download, exp.get("cache"), seed)
    hub.require(chapter_needs(exp, chapters))
    cache = ResultCache(exp.get("cache"))
    if prepare_only:
        for ch in chapters:
            for q in exp[ch]["queries"].values():
                hub.query_set(q)
        if "imagenet" in chapters and distributed.is_main():
            v = exp["imagenet"]["victim"]
            simsiam.fetch_simsiam(v.get("checkpoint"), download=download_weights, sha256=v.get("sha256"))
        log("data and weights are in place")
        return {}
    results: dict[str, Any] = {}
    for ch in chapters:
        start = time.perf_counter()
        if ch == "cifar":
            results[ch] = run_cifar(exp[ch], hub, opts, cache, seed, progress)
        else:
            results[ch] = run_imagenet(exp[ch], hub, opts, cache, seed, progress, download_weights)
        results[ch]["seconds"] = time.perf_counter() - start
    if distributed.is_main():
        out = Path(exp.get("out", "results/full"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        table = summary_table(results)
        (out / "summary.md").write_text(table)
        print(table, flush=True)
        log(f"results in {out / 'results.json'}")
    return results


def tiny_setup(exp: dict, folder: Path) -> dict:
    """Write the stand-in data and checkpoint under ``folder`` (rank 0) and point ``exp`` at them."""
    from encsteal import standin

    if distributed.is_main():
        shutil.rmtree(folder, ignore_errors=True)
        standin.write_tiny_data(folder / "data")
        simsiam.standin_checkpoint(folder / "weights" / simsiam.SIMSIAM_FILE)
    distributed.barrier()
    exp = copy.deepcopy(exp)
    exp["data_root"], exp["cache"], exp["out"] = str(folder / "data"), str(folder / "cache"), str(folder / "out")
    if "imagenet" in exp:
        exp["imagenet"]["victim"]["checkpoint"] = str(folder / "weights" / simsiam.SIMSIAM_FILE)
    return exp
