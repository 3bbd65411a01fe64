"""The rotation watermark (book/paper_setup.md#setup-watermark): embed it in a victim, check whether a suspect carries
it.

Embedding. An auxiliary rotation task is learnt through an MLP on the encoder's representation
(official ``WatermarkMLP`` 512-256-128-2, here ``rep_dim``-256-128-classes). The official task is
binary: was the image rotated by an angle in [0, 180) or in [180, 360) (each training image gives
one copy of each, corners filled with zeros); ``task="four_way"`` offers 0/90/180/270 instead.
The official code embeds during victim training and builds its Adam optimiser over the encoder
only, so its MLP stays at its random initialisation (book/paper_setup.md#setup-official-code item 2). Here both the
encoder and the MLP are trained (``train_mlp=False`` reproduces the official behaviour). The
watermark is embedded by fine-tuning a trained victim (:func:`embed_watermark`) or during
training from scratch (:func:`train_watermarked_victim`): SimCLR batches on the victim's data
alternate with rotation batches on a ``fraction`` of it, so the representation stays useful.
Both cache their result through :class:`ResultCache`, like ``train_victim``.

Verification. The victim's frozen MLP is applied to a suspect's representations of rotated held-out
images (one rotation per image, balanced labels) and the watermark accuracy measured. No alignment
between suspect and victim spaces is fitted: a learnt map would let the frozen MLP read the rotation
from any encoder that captures image orientation, so independent models would look watermarked too.
The decision is NOT a test against chance: encoders trained independently on similar data already
score somewhat above 50%, and on a few thousand test images a binomial test against 50% would call
them stolen (book/paper_setup.md#setup-book-choices). :func:`ownership_test` compares the suspect
with independently trained reference models instead (see there for the test and why).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from encsteal.api import module_fingerprint
from encsteal.augment import Augment
from encsteal.cache import ResultCache
from encsteal.checkpoint import flat_state, load_flat_state
from encsteal.data.imageset import ImageSet
from encsteal.data.transforms import adapt, to_float
from encsteal.losses import nt_xent
from encsteal.probe import extract_features
from encsteal.runtime import RunOptions, seed_everything
from encsteal.training import Batch, OptimizerSpec, StepFn, fit
from encsteal.victims import Victim, VictimConfig, build_victim_modules, victim_training_set

TASKS: dict[str, int] = {"binary": 2, "four_way": 4}
"""Rotation tasks and their number of classes."""
TESTS: tuple[str, ...] = ("prediction", "mean", "z")


@dataclass(frozen=True)
class WatermarkConfig:
    """Everything that determines a watermark embedding (with the victim, its cache key).

    ``epochs`` counts passes over the victim's training data in SimCLR batches; each SimCLR batch
    is followed by ``rotation_steps`` rotation batches of ``batch_size // classes`` images (every
    image in all of its rotation classes) drawn from a ``fraction`` of that data.
    """

    task: str = "binary"
    epochs: int = 5
    fraction: float = 1.0
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 1e-4
    rotation_weight: float = 1.0
    rotation_steps: int = 1
    train_mlp: bool = True
    hidden: tuple[int, ...] = (256, 128)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"Unknown rotation task {self.task!r}. Allowed: {', '.join(TASKS)}.")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}.")
        for name in ("epochs", "batch_size", "rotation_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.batch_size < TASKS[self.task]:
            raise ValueError(f"batch_size must be >= {TASKS[self.task]} for the {self.task} task.")
        if self.rotation_weight <= 0:
            raise ValueError(f"rotation_weight must be > 0, got {self.rotation_weight}.")
        if not self.hidden or any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden}.")

    @property
    def classes(self) -> int:
        return TASKS[self.task]


class WatermarkMLP(nn.Module):
    """The watermark head: MLP from the representation to rotation classes (official 512-256-128-2)."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 128), classes: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU(inplace=True)]
            prev = width
        layers.append(nn.Linear(prev, classes))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.classes = in_dim, classes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class WatermarkedVictim:
    """A victim with its watermark: encoder, projection head, the watermark MLP and the record."""

    base: VictimConfig
    config: WatermarkConfig
    encoder: nn.Module
    head: nn.Module
    mlp: WatermarkMLP
    classes: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def victim(self) -> Victim:
        """As a :class:`Victim` (for an :class:`EncoderAPI`); ``config`` is the base victim's."""
        return Victim(self.base, self.encoder, self.head, self.classes, {"watermark": self.record})


# ---- rotations ---------------------------------------------------------------------------------


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image (N, C, H, W) counter-clockwise by its own angle (degrees), zero corners.

    One batched ``affine_grid``/``grid_sample``; exact multiples of 90 degrees use ``rot90``.
    """
    x = to_float(images)
    degrees = degrees.to(torch.float64).flatten()
    if len(degrees) != len(x):
        raise ValueError(f"One angle per image: got {len(degrees)} angles for {len(x)} images.")
    quarter = torch.remainder(degrees, 360.0) / 90.0
    if torch.all(quarter == quarter.round()) and x.shape[-1] == x.shape[-2]:
        out = torch.empty_like(x)
        k = quarter.round().long() % 4
        for q in range(4):
            sel = k == q
            if sel.any():
                out[sel] = torch.rot90(x[sel], q, dims=(-2, -1))
        return out
    rad = torch.deg2rad(degrees).float()
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    # affine_grid maps output (x right, y down) to input coordinates: R(theta) here turns the
    # picture counter-clockwise on screen, as torchvision's rotate does.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation_angles(labels: torch.Tensor, task: str, generator: torch.Generator) -> torch.Tensor:
    """Angles for rotation-class ``labels``: binary, uniform in [180 * label, 180 * label + 180);
    four-way, exactly 90 * label."""
    if task not in TASKS:
        raise ValueError(f"Unknown rotation task {task!r}. Allowed: {', '.join(TASKS)}.")
    if task == "binary":
        return 180.0 * labels.double() + 180.0 * torch.rand(len(labels), generator=generator, dtype=torch.float64)
    return 90.0 * labels.double()


def rotation_batch(
    images: torch.Tensor, task: str, generator: torch.Generator, every_class: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated copies and their labels. ``every_class``: each image once per class (training, as
    the official binary task uses one copy per range); else one copy per image with balanced,
    shuffled labels (evaluation: independent trials for a binomial confidence interval)."""
    k = TASKS[task] if task in TASKS else 0
    if not k:
        raise ValueError(f"Unknown rotation task {task!r}. Allowed: {', '.join(TASKS)}.")
    n = len(images)
    if every_class:
        x = images.repeat(k, 1, 1, 1)
        labels = torch.arange(k).repeat_interleave(n)
    else:
        x = images
        labels = torch.randperm(n, generator=generator) % k
    return rotate(x, rotation_angles(labels, task, generator)), labels


# ---- embedding ---------------------------------------------------------------------------------


def fit_watermark(
    encoder: nn.Module,
    head: nn.Module,
    images: torch.Tensor,
    config: WatermarkConfig,
    temperature: float,
    device: str = "auto",
    progress: bool = True,
) -> tuple[nn.Module, nn.Module, WatermarkMLP, dict[str, Any]]:
    """Fine-tune ``encoder`` + ``head`` with SimCLR batches on ``images`` alternating with rotation
    batches through a new :class:`WatermarkMLP` (no cache). Works on trained or fresh modules
    (fresh = embedding during training, the official schedule). Trained by the one training loop
    (:func:`encsteal.training.fit`, one process: under ``torchrun`` each process trains its own
    copy); returns the modules on the CPU."""
    gen = seed_everything(config.seed)
    mlp = WatermarkMLP(encoder.rep_dim, config.hidden, config.classes)
    x = adapt(images, encoder.in_channels, encoder.input_size)
    wm_idx = torch.randperm(len(x), generator=gen)[: max(1, round(config.fraction * len(x)))]
    net = _WatermarkNet(encoder, head, mlp)
    params = list(encoder.parameters()) + list(head.parameters())
    if config.train_mlp:
        params += list(mlp.parameters())
    else:
        mlp.requires_grad_(False)
    step = _watermark_step(net, x, wm_idx, config, temperature, gen)
    fitted = fit(
        net,
        params,
        step,
        x,
        optimizer=OptimizerSpec("adam", config.lr, config.weight_decay),
        epochs=config.epochs,
        batch_size=config.batch_size,
        generator=gen,
        options=RunOptions(device=device, channels_last=True),
        steps_per_batch=1 + config.rotation_steps,
        views=2,
        distributed=False,
        progress=progress,
        label=f"watermark ({config.task})",
    )
    net = fitted.model
    record = {
        "seconds": fitted.seconds,
        "simclr_loss": fitted.curves["simclr"],
        "rotation_loss": fitted.curves["rotation"],
        "rotation_train_accuracy": fitted.curves["rotation_accuracy"],
        "watermark_images": len(wm_idx),
        "threads": fitted.threads,
        "device": fitted.device,
        "images_per_second": fitted.images_per_second,
    }
    return net.encoder, net.head, net.mlp.requires_grad_(False), record


class _WatermarkNet(nn.Module):
    """Encoder, projection head and watermark MLP as one module: ``forward`` is the SimCLR branch."""

    def __init__(self, encoder: nn.Module, head: nn.Module, mlp: WatermarkMLP):
        super().__init__()
        self.encoder, self.head, self.mlp = encoder, head, mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def rotation(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encoder(x))


def _watermark_step(
    net: _WatermarkNet,
    x: torch.Tensor,
    wm_idx: torch.Tensor,
    config: WatermarkConfig,
    temperature: float,
    gen: torch.Generator,
) -> StepFn:
    """One SimCLR batch, then ``rotation_steps`` rotation batches (each stepped before the next) of
    ``batch_size // classes`` images of the watermark subset, every image in every rotation class."""
    augment = Augment()
    rot_images = max(1, config.batch_size // config.classes)
    state = {"order": torch.randperm(len(wm_idx), generator=gen), "pos": 0}

    def step(batch: Batch) -> Iterator[tuple[str, torch.Tensor]]:
        z = batch.forward(torch.cat([batch.augment(augment), batch.augment(augment)]))
        n = len(batch.x)
        yield "simclr", nt_xent(z[:n], z[n:], temperature)
        for _ in range(config.rotation_steps):
            if state["pos"] + rot_images > len(state["order"]):
                state["order"], state["pos"] = torch.randperm(len(wm_idx), generator=gen), 0
            chosen = x[wm_idx[state["order"][state["pos"] : state["pos"] + rot_images]]]
            state["pos"] += rot_images
            rotated, labels = rotation_batch(chosen, config.task, gen)
            logits = net.rotation(batch.layout(rotated.to(batch.device)))
            labels = labels.to(batch.device)
            batch.log("rotation_accuracy", int((logits.argmax(1) == labels).sum()), len(labels))
            batch.count_images(len(labels))
            yield "rotation", config.rotation_weight * F.cross_entropy(logits, labels)

    return step


def _watermark_key(victim: Victim, config: WatermarkConfig) -> dict[str, Any]:
    return {"base": victim.config, "base_weights": module_fingerprint(victim.encoder, victim.head), "watermark": config}


def embed_watermark(
    victim: Victim,
    config: WatermarkConfig = WatermarkConfig(),
    cache: ResultCache | None = None,
    device: str = "auto",
    progress: bool = True,
) -> WatermarkedVictim:
    """Fine-tune a trained SimCLR ``victim`` to carry the rotation watermark (cached).

    The victim itself is not changed (a copy is fine-tuned on its own training data).
    """
    if victim.config.method != "simclr":
        raise ValueError(f"embed_watermark fine-tunes a SimCLR victim (method='simclr'); got {victim.config.method!r}.")
    cache = cache if cache is not None else ResultCache()
    data = victim_training_set(victim.config)
    c, h, _ = data.shape
    encoder, head = build_victim_modules(victim.config, c, h, max(data.num_classes, 1))
    encoder.load_state_dict(victim.encoder.state_dict())
    head.load_state_dict(victim.head.state_dict())
    key = _watermark_key(victim, config)

    def load(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> WatermarkedVictim:
        mlp = WatermarkMLP(encoder.rep_dim, config.hidden, config.classes)
        load_flat_state({"encoder": encoder, "head": head, "mlp": mlp}, tensors)
        return WatermarkedVictim(
            victim.config,
            config,
            encoder.eval(),
            head.eval(),
            mlp.eval().requires_grad_(False),
            data.classes,
            meta.get("record", {}),
        )

    def compute() -> WatermarkedVictim:
        enc, hd, mlp, record = fit_watermark(
            encoder, head, data.images, config, victim.config.temperature, device, progress
        )
        return WatermarkedVictim(victim.config, config, enc, hd, mlp, data.classes, record)

    def save(wm: WatermarkedVictim) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return flat_state({"encoder": wm.encoder, "head": wm.head, "mlp": wm.mlp}), {"record": wm.record}

    return cache.get_or_compute("watermarked_victim", key, compute, save, load)


def train_watermarked_victim(
    victim_config: VictimConfig,
    config: WatermarkConfig,
    cache: ResultCache | None = None,
    device: str = "auto",
    progress: bool = True,
) -> WatermarkedVictim:
    """Embed the watermark during training, the official schedule (book/paper_setup.md#setup-watermark): a fresh
    SimCLR victim
    trained from scratch with rotation batches alternating with its SimCLR batches (``config.epochs``,
    ``config.lr``; the victim config gives the data, architecture and temperature). Cached."""
    if victim_config.method != "simclr":
        raise ValueError(f"The watermarked victim is a SimCLR victim; got method {victim_config.method!r}.")
    cache = cache if cache is not None else ResultCache()
    data = victim_training_set(victim_config)
    c, h, _ = data.shape
    seed_everything(victim_config.seed)
    encoder, head = build_victim_modules(victim_config, c, h, max(data.num_classes, 1))
    key = {"base": victim_config, "from_scratch": True, "watermark": config}

    def load(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> WatermarkedVictim:
        mlp = WatermarkMLP(encoder.rep_dim, config.hidden, config.classes)
        load_flat_state({"encoder": encoder, "head": head, "mlp": mlp}, tensors)
        return WatermarkedVictim(
            victim_config,
            config,
            encoder.eval(),
            head.eval(),
            mlp.eval().requires_grad_(False),
            data.classes,
            meta.get("record", {}),
        )

    def compute() -> WatermarkedVictim:
        enc, hd, mlp, record = fit_watermark(
            encoder, head, data.images, config, victim_config.temperature, device, progress
        )
        return WatermarkedVictim(victim_config, config, enc, hd, mlp, data.classes, record)

    def save(wm: WatermarkedVictim) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return flat_state({"encoder": wm.encoder, "head": wm.head, "mlp": wm.mlp}), {"record": wm.record}

    return cache.get_or_compute("watermarked_victim", key, compute, save, load)


# ---- verification -----------------------------------------------------------------------------


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (fractions)."""
    if n <= 0:
        raise ValueError("wilson_interval needs n > 0.")
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class WatermarkScore:
    """Watermark accuracy of one encoder (fraction) with its Wilson 95% interval."""

    accuracy: float
    correct: int
    n: int
    ci_low: float
    ci_high: float


@torch.no_grad()
def watermark_accuracy(
    encoder: nn.Module,
    mlp: WatermarkMLP,
    images: ImageSet | torch.Tensor,
    task: str = "binary",
    seed: int = 0,
    batch_size: int = 512,
) -> WatermarkScore:
    """Top-1 accuracy of the victim's frozen ``mlp`` on ``encoder``'s representations of rotated
    ``images`` (one seeded rotation per image, balanced labels). No alignment is fitted."""
    x = images.images if isinstance(images, ImageSet) else images
    if len(x) == 0:
        raise ValueError("watermark_accuracy needs at least one image.")
    gen = torch.Generator().manual_seed(seed)
    x = adapt(x, encoder.in_channels, getattr(encoder, "input_size", None))
    rotated, labels = rotation_batch(x, task, gen, every_class=False)
    feats = extract_features(encoder, rotated, batch_size)
    if feats.shape[1] != mlp.in_dim:
        raise ValueError(
            f"The suspect's representation has {feats.shape[1]} dimensions but the watermark MLP "
            f"takes {mlp.in_dim}; compare encoders of the victim's output size."
        )
    mlp.eval()
    pred = torch.cat([mlp(feats[s : s + batch_size]).argmax(1) for s in range(0, len(feats), batch_size)])
    correct = int((pred == labels).sum())
    low, high = wilson_interval(correct, len(labels))
    return WatermarkScore(correct / len(labels), correct, len(labels), low, high)


@dataclass(frozen=True)
class OwnershipDecision:
    """Outcome of :func:`ownership_test` (accuracies as fractions)."""

    stolen: bool
    p_value: float
    threshold: float
    statistic: float
    reference_mean: float
    reference_std: float
    n_references: int
    alpha: float
    method: str


def ownership_test(
    suspect: float,
    references: Sequence[float],
    alpha: float = 0.05,
    method: str = "prediction",
    n_images: int | None = None,
) -> OwnershipDecision:
    """Is the ``suspect``'s watermark accuracy significantly above independent ``references``'?

    Methods (all one-sided, all against the references, never against chance):

    * ``"prediction"`` (default): is the suspect an outlier of the reference distribution? Under
      H0 the suspect is one more independent model, so ``(a - mean) / (s * sqrt(1 + 1/n))``
      follows Student's t with n - 1 degrees of freedom (the prediction-interval test). Its
      false-positive rate for a new independent model is alpha.
    * ``"mean"``: the one-sample t-test of the references with mean equal to the suspect's
      accuracy (``scipy.stats.ttest_1samp(..., alternative="less")``). It tests whether the suspect
      is above the references' *mean*; with few references it calls ordinary independent models
      stolen far more often than alpha, hence not the default.
    * ``"z"``: z-test ``(a - mean) / s`` with the references' mean and std taken as known.

    ``s`` is floored at the binomial standard error of one accuracy measured on ``n_images``
    (each reference's accuracy carries that noise), so identical references do not give s = 0.
    ``threshold`` is the accuracy above which the suspect is called stolen at level ``alpha``.
    """
    if method not in TESTS:
        raise ValueError(f"Unknown test {method!r}. Allowed: {', '.join(TESTS)}.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    refs = np.asarray(references, dtype=float)
    n = len(refs)
    if n < 2:
        raise ValueError(f"ownership_test needs at least 2 reference models, got {n}.")
    mean, std = float(refs.mean()), float(refs.std(ddof=1))
    if n_images:
        std = max(std, math.sqrt(max(mean * (1 - mean), 1e-12) / n_images))
    std = max(std, 1e-12)
    if method == "prediction":
        scale, dist = std * math.sqrt(1 + 1 / n), stats.t(n - 1)
    elif method == "mean":
        scale, dist = std / math.sqrt(n), stats.t(n - 1)
    else:
        scale, dist = std, stats.norm()
    statistic = (suspect - mean) / scale
    p_value = float(dist.sf(statistic))
    threshold = mean + float(dist.ppf(1 - alpha)) * scale
    return OwnershipDecision(bool(p_value < alpha), p_value, threshold, statistic, mean, std, n, alpha, method)
