"""Linear-probe and k-NN evaluation of a frozen encoder on cached features.

The paper judges an encoder (victim or stolen) by the top-1 accuracy of a linear classifier
trained on its frozen representations (book/paper_setup.md#setup-probes). Here the probe is a multinomial logistic
regression fitted with L-BFGS on standardised features, its inverse regularisation ``C`` chosen
on a validation split (the protocol of Kornblith et al. 2019 / SimCLR's transfer experiments),
which is deterministic and takes seconds on a CPU. k-NN accuracy (cosine, k=20, temperature-
weighted votes as in DINO) is a second, hyperparameter-light figure.

The paper-scale runs (:mod:`encsteal.experiments.paper_scale`) encode their images on the
device (:func:`encode`, shared between DDP processes) and train the probe there with the paper's
optimiser settings (:func:`linear_probe_torch`, through :func:`encsteal.training.fit`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm import tqdm

from encsteal import distributed
from encsteal.data.imageset import ImageSet
from encsteal.data.splits import draw_disjoint
from encsteal.data.transforms import adapt
from encsteal.runtime import RunOptions, autocast, channels_last, prepare_device
from encsteal.training import Batch, OptimizerSpec, fit

if TYPE_CHECKING:
    from encsteal.data.hub import DataHub

DEFAULT_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class ProbeResult:
    """Top-1 accuracies (fractions) of a linear probe and k-NN on the probe test split."""

    accuracy: float
    knn_accuracy: float
    val_accuracy: float
    C: float
    n_train: int
    n_test: int
    seconds: float


@torch.no_grad()
def extract_features(
    encoder: nn.Module, images: ImageSet | torch.Tensor, batch_size: int = 512, progress: bool = False
) -> torch.Tensor:
    """Representations (N, rep_dim) of ``images``, adapted to the encoder's channels and size."""
    x = images.images if isinstance(images, ImageSet) else images
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    chunks = []
    starts = range(0, len(x), batch_size)
    for s in tqdm(starts, desc="features", disable=not progress, leave=False):
        batch = adapt(x[s : s + batch_size], encoder.in_channels, getattr(encoder, "input_size", None))
        chunks.append(encoder(channels_last(batch.to(device))).float().cpu())
    encoder.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, encoder.rep_dim)


def pixel_features(images: ImageSet | torch.Tensor) -> torch.Tensor:
    """Raw pixels in [0, 1], flattened: the 'no encoder' baseline."""
    x = images.images if isinstance(images, ImageSet) else images
    return adapt(x, x.shape[1], None).flatten(1)


def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
) -> float:
    """Weighted k-NN top-1 on cosine similarity (Wu et al. 2018; DINO's eval_knn)."""
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    tr = torch.nn.functional.normalize(train_x.float(), dim=1)
    te = torch.nn.functional.normalize(test_x.float(), dim=1)
    k = min(k, len(tr))
    correct = 0
    for s in range(0, len(te), 1024):
        sim = te[s : s + 1024] @ tr.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(top_idx), num_classes)
        votes.scatter_add_(1, train_y[top_idx], weights)
        correct += int((votes.argmax(1) == test_y[s : s + 1024]).sum())
    return correct / len(te)


@dataclass(frozen=True)
class FittedProbe:
    """A fitted linear probe: the feature scaler and the logistic regression chosen on validation."""

    scaler: StandardScaler
    classifier: LogisticRegression
    C: float
    val_accuracy: float

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 of this probe on features ``x`` (for example another encoder's, same dimension)."""
        return float(self.classifier.score(self.scaler.transform(x.numpy().astype(np.float64)), y.numpy()))


def fit_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    Cs: tuple[float, ...] = DEFAULT_CS,
    max_iter: int = 300,
) -> FittedProbe:
    """Fit L-BFGS multinomial logistic regression on standardised features for each ``C`` and keep
    the one with the best validation accuracy."""
    if len(train_x) == 0:
        raise ValueError("The probe needs at least one training image.")
    scaler = StandardScaler().fit(train_x.numpy().astype(np.float64))
    tr, va = (scaler.transform(a.numpy().astype(np.float64)) for a in (train_x, val_x))
    best: FittedProbe | None = None
    # One BLAS thread: on a loaded 2-core machine two threads made the probe 10-30x slower.
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in sorted(Cs):
            clf = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs").fit(tr, train_y.numpy())
            val_acc = float(clf.score(va, val_y.numpy())) if len(va) else float("nan")
            if best is None or val_acc > best.val_accuracy:
                best = FittedProbe(scaler, clf, C, val_acc)
    assert best is not None
    return best


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    Cs: tuple[float, ...] = DEFAULT_CS,
    max_iter: int = 500,
) -> ProbeResult:
    """Fit the probe (:func:`fit_probe`) and report its test top-1 and the k-NN top-1."""
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError("The probe needs at least one training and one test image.")
    start = time.perf_counter()
    probe = fit_probe(train_x, train_y, val_x, val_y, Cs, max_iter)
    acc = probe.accuracy(test_x, test_y)
    tr = torch.from_numpy(probe.scaler.transform(train_x.numpy().astype(np.float64))).float()
    te = torch.from_numpy(probe.scaler.transform(test_x.numpy().astype(np.float64))).float()
    knn = knn_accuracy(tr, train_y, te, test_y)
    return ProbeResult(acc, knn, probe.val_accuracy, probe.C, len(train_x), len(test_x), time.perf_counter() - start)


def few_label_indices(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` randomly chosen images of every class (sorted)."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < per_class:
            raise ValueError(f"Class {int(c)} has only {len(idx)} images; cannot take {per_class} per class.")
        picked.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return torch.sort(torch.cat(picked)).values


def probe_features(
    features: dict[str, torch.Tensor],
    splits: dict[str, ImageSet],
    per_class: int | None = None,
    seed: int = 0,
    Cs: tuple[float, ...] = DEFAULT_CS,
) -> ProbeResult:
    """Probe precomputed features of ``probe_train``/``probe_val``/``probe_test``.

    ``per_class`` restricts the probe's training labels to that many per class (a few-label probe,
    which separates good and poor encoders better than a saturated many-label one).
    """
    train_x, train_y = features["probe_train"], splits["probe_train"].labels
    if per_class is not None:
        idx = few_label_indices(train_y, per_class, seed)
        train_x, train_y = train_x[idx], train_y[idx]
    return linear_probe(
        train_x,
        train_y,
        features["probe_val"],
        splits["probe_val"].labels,
        features["probe_test"],
        splits["probe_test"].labels,
        Cs,
    )


def evaluate_encoder(
    encoder: nn.Module | None, splits: dict[str, ImageSet], per_class: int | None = None, seed: int = 0
) -> ProbeResult:
    """Probe ``encoder`` (or raw pixels when ``encoder`` is None) on the probe roles of ``splits``."""
    roles = ("probe_train", "probe_val", "probe_test")
    missing = [r for r in roles if r not in splits]
    if missing:
        raise ValueError(f"evaluate_encoder needs the splits {roles}; missing {missing}.")
    if encoder is None:
        feats = {r: pixel_features(splits[r]) for r in roles}
    else:
        feats = {r: extract_features(encoder, splits[r]) for r in roles}
    return probe_features(feats, splits, per_class, seed)


# ---------------------------------------------------------------------------- paper-scale probe


@torch.no_grad()
def encode(
    encoder: nn.Module, images: torch.Tensor, dev: torch.device, amp: bool = False, batch_size: int = 512
) -> torch.Tensor:
    """Representations (N, d) of uint8 ``images``, adapted to the encoder on the device; under
    DDP every process encodes its share and the features are gathered (in order)."""
    d = distributed.info()
    lo, hi = distributed.shard_bounds(len(images), d.rank, d.world_size)
    encoder = encoder.to(dev).eval()
    chunks = []
    for s in range(lo, hi, batch_size):
        x = adapt(
            images[s : min(s + batch_size, hi)].to(dev, non_blocking=True), encoder.in_channels, encoder.input_size
        )
        with autocast(dev, amp):
            chunks.append(encoder(x.contiguous(memory_format=torch.channels_last)).float())
    mine = torch.cat(chunks) if chunks else torch.empty(0, encoder.rep_dim, device=dev)
    return distributed.gather_nograd(mine).cpu()


def linear_probe_torch(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    settings: dict,
    options: RunOptions,
    seed: int = 0,
) -> dict:
    """A linear classifier on frozen, standardised features, trained on the device with the
    paper's optimiser settings (book/paper_setup.md#setup-probes: CIFAR scale Adam lr 3e-4, weight decay 8e-4,
    batch 256, 100 epochs; ImageNet scale SGD + LARS, lr 1.0 x batch/256, no weight decay). Trained by the one
    training loop
    (:func:`encsteal.training.fit`) on ``options.device``, in fp32, in this process only. Reports
    test top-1 and k-NN top-1."""
    start = time.perf_counter()
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
    tr, te = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(seed)
    clf = nn.Linear(tr.shape[1], num_classes)
    nn.init.normal_(clf.weight, std=0.01)
    nn.init.zeros_(clf.bias)

    def step(batch: Batch) -> torch.Tensor:
        return F.cross_entropy(batch.model(batch.x), train_y[batch.idx].to(batch.device))

    spec = OptimizerSpec(
        settings.get("optimizer", "adam"), float(settings.get("lr", 3e-4)), float(settings.get("weight_decay", 8e-4))
    )
    fitted = fit(
        clf,
        list(clf.parameters()),
        step,
        tr,
        optimizer=spec,
        epochs=int(settings.get("epochs", 100)),
        batch_size=int(settings.get("batch_size", 256)),
        generator=torch.Generator().manual_seed(seed),
        options=replace(options, amp=False, channels_last=False, loader="memory"),
        drop_last=False,
        distributed=False,
        progress=False,
        label="linear probe",
    )
    with torch.no_grad():
        acc = (fitted.model(te).argmax(1) == test_y).float().mean().item()
    knn = knn_accuracy(tr, train_y, te, test_y, num_classes=num_classes)
    return {
        "accuracy": acc,
        "knn_accuracy": knn,
        "n_train": len(tr),
        "n_test": len(te),
        "seconds": time.perf_counter() - start,
    }


def probe_all(
    encoders: dict[str, nn.Module],
    probes: dict,
    settings: dict,
    hub: DataHub,
    options: RunOptions,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, dict]]:
    """Probe accuracy of every encoder on every probe set: ``{encoder: {probe: result}}``.

    Every process encodes its share of the images; the probe itself is fitted on rank 0 (the
    others return empty results). ``settings["method"]``: ``"linear"`` (default,
    :func:`linear_probe_torch`) or ``"lbfgs"`` (the package's protocol, :func:`linear_probe`).
    ``log`` gets one line per result.
    """
    dev = prepare_device(options)
    out: dict[str, dict[str, dict]] = {name: {} for name in encoders}
    for pname, pspec in probes.items():
        train, test = hub.probe_sets(pspec)
        num_classes = max(len(train.classes), int(train.labels.max()) + 1)
        for ename, enc in encoders.items():
            ftr, fte = encode(enc, train.images, dev, options.amp), encode(enc, test.images, dev, options.amp)
            if distributed.is_main():
                if settings.get("method", "linear") == "lbfgs":
                    res = _lbfgs_probe(ftr, train.labels, fte, test.labels, settings, seed)
                else:
                    res = linear_probe_torch(ftr, train.labels, fte, test.labels, num_classes, settings, options, seed)
                out[ename][pname] = res
                if log is not None:
                    log(
                        f"probe {pname:9s} {ename:28s} top-1 {100 * res['accuracy']:5.1f}%  "
                        f"k-NN {100 * res['knn_accuracy']:5.1f}%"
                    )
            enc.cpu()
    return out


def _lbfgs_probe(
    ftr: torch.Tensor, ytr: torch.Tensor, fte: torch.Tensor, yte: torch.Tensor, settings: dict, seed: int
) -> dict:
    """The package's probe protocol (:func:`linear_probe`: L-BFGS, C chosen on a validation split)."""
    n_val = max(1, int(len(ftr) * float(settings.get("val_fraction", 0.1))))
    idx = draw_disjoint(len(ftr), {"val": n_val, "train": len(ftr) - n_val}, seed)
    r = linear_probe(ftr[idx["train"]], ytr[idx["train"]], ftr[idx["val"]], ytr[idx["val"]], fte, yte)
    return {
        "accuracy": r.accuracy,
        "knn_accuracy": r.knn_accuracy,
        "val_accuracy": r.val_accuracy,
        "C": r.C,
        "n_train": r.n_train,
        "n_test": r.n_test,
        "seconds": r.seconds,
    }
