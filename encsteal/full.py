"""The full profile: the paper's setups at paper scale, on one GPU or several (torchrun + DDP).

One GPU::

    python -m encsteal.full params/full.yaml

N GPUs on one machine (DistributedDataParallel, one process per GPU)::

    torchrun --nproc_per_node=N -m encsteal.full params/full.yaml

Smoke run of the same code path on the CPU, on tiny stand-in files written in the real on-disk
formats and a stand-in SimSiam checkpoint with SimSiam's key names (under a minute)::

    python -m encsteal.full params/full.yaml --tiny

The YAML's ``experiments`` section holds two chapters (``--only`` picks one):

* ``cifar``: the loss table (book/paper_setup.md#setup-tables, #setup-victim-cifar, #setup-stealing-cifar). A SimCLR
ResNet-34 victim trained on CIFAR10
  for 200 epochs; each of the six losses steals it with 9,000 CIFAR10-test queries (the test set
  minus its last 1,000 images, kept for the probe) and with 9,000 SVHN queries, for 100 epochs,
  with the per-loss batch sizes, optimisers and temperatures of the official code; linear probes
  of the victim and every stolen copy on CIFAR10 and on STL10 at 32x32.
* ``imagenet``: the ImageNet table (book/paper_setup.md#setup-victim-imagenet, #setup-stealing-imagenet). The SimSiam
ResNet-50 from its published
  checkpoint (:mod:`encsteal.simsiam`), stolen by a ResNet-50 with InfoNCE from 50K/250K queries
  drawn from CIFAR10, SVHN and ImageNet; probes on CIFAR10, CIFAR100, STL10, SVHN and
  Fashion-MNIST at 224 px. ImageNet query subsets are uniform random draws over the whole train
  folder (every class), not the first images in class order as in the official fallback.
  "250K SVHN queries": SVHN train has only 73,257 images, so the 250,000 queries are distinct
  images drawn uniformly at random from SVHN ``train`` + ``extra`` (73,257 + 531,131 = 604,388).
  The paper does not say how it formed them (book/paper_setup.md#setup-official-code item 8); this is our choice.

Before any training, every data set the chosen chapters need is checked, and a missing one stops
the run with the data root and how to get it (``--download`` lets torchvision fetch the ones it
can; ImageNet must be placed by hand). Results go to ``<out>/results.json`` and
``<out>/summary.md``; victims and stolen encoders are cached (``ResultCache``) so an interrupted
run resumes at the next unfinished step.

This module is the command line only: the chapters are :mod:`encsteal.experiments.paper_scale`,
the data checks and loading :mod:`encsteal.data.hub`, the probes :mod:`encsteal.probe`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml

from encsteal import distributed
from encsteal.data.hub import DataMissing
from encsteal.experiments.paper_scale import CHAPTERS, load_experiments, run, tiny_setup

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen chapters; 0 on success, 2 when data is missing."""
    parser = argparse.ArgumentParser(
        prog="python -m encsteal.full", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("params", nargs="?", default=str(ROOT / "params" / "full.yaml"))
    parser.add_argument("--only", choices=CHAPTERS, action="append", help="run only this chapter (repeatable)")
    parser.add_argument("--tiny", action="store_true", help="smoke run on tiny stand-in files (CPU, < 1 minute)")
    parser.add_argument(
        "--tiny-dir", default=None, help="where --tiny writes its stand-in files (default: a temp folder)"
    )
    parser.add_argument("--data-root", default=None, help="overrides data_root")
    parser.add_argument("--cache", default=None, help="overrides the result cache folder")
    parser.add_argument("--out", default=None, help="overrides the output folder")
    parser.add_argument("--device", default=None, help="overrides runtime.device (auto, cpu, cuda)")
    parser.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast")
    parser.add_argument("--num-workers", type=int, default=None, help="overrides runtime.num_workers")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing data sets")
    parser.add_argument("--download-weights", action="store_true", help="download the SimSiam checkpoint (opt-in)")
    parser.add_argument(
        "--prepare", action="store_true", help="check/download data and weights, decode ImageNet once, exit"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    exp = load_experiments(args.params, tiny=args.tiny)
    runtime = dict(exp.get("runtime", {}))
    if args.device:
        runtime["device"] = args.device
    if args.no_amp:
        runtime["amp"] = False
    if args.num_workers is not None:
        runtime["num_workers"] = args.num_workers
    exp["runtime"] = runtime
    for key, value in (("data_root", args.data_root), ("cache", args.cache), ("out", args.out)):
        if value is not None:
            exp[key] = value
    chapters = tuple(args.only) if args.only else tuple(c for c in CHAPTERS if c in exp)
    if args.dry_run:
        print(yaml.safe_dump({"chapters": list(chapters), "experiments": exp}, sort_keys=False))
        return 0
    torch.set_num_threads(int(os.environ.get("ENCSTEAL_THREADS", torch.get_num_threads())))
    start = time.perf_counter()
    main_rank = True
    try:
        context = nullcontext()
        if args.tiny:
            from encsteal.standin import accept_standin_files

            distributed.init_from_env()
            default = Path(tempfile.gettempdir()) / f"encsteal-tiny-{os.getuid()}"
            folder = Path(args.tiny_dir) if args.tiny_dir else default
            exp = tiny_setup(exp, folder)
            if args.out:
                exp["out"] = args.out
            context = accept_standin_files()
        with context:
            main_rank = distributed.init_from_env().is_main
            run(
                exp,
                chapters,
                progress=not args.no_progress,
                download=args.download,
                download_weights=args.download_weights,
                prepare_only=args.prepare,
            )
    except DataMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    if main_rank:
        print(f"[full] done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
