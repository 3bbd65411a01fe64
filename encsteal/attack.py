"""Stealing an encoder through its API (Dziedzic et al. 2022, the stealing framework).

The attacker sends its own query images to the victim's API and trains a stolen encoder so that
its outputs match the answers under one of the paper's losses. Two query designs:

* ``requery_every_epoch=False`` (default, as StolenEncoder does): each query is sent once and the
  answers are reused in every epoch, so the number of queries is the number of images (times
  the number of augmented views, if any);
* ``requery_every_epoch=True``: the official code's design, which sends every batch again in
  every epoch (book/paper_setup.md#setup-query-accounting); here every image sent is counted, honestly.

An attacker may also drop answers it recognises as poison (``drop_outlier_ratio``, query-once
design only): the duplicate detector of :mod:`encsteal.defenses` answers suspected duplicates with
N(1000, 0.5^2) noise, whose norm is hundreds of times that of a genuine representation, so such
answers are filtered by their norm alone (:func:`outlier_answers`) before training; they still
count as queries.

Augmentation (``augment``): ``"none"`` sends the plain images; ``"views"`` makes ``views``
augmented copies of each image and the victim answers each copy (each counts as a query);
``"stolen_only"`` lets the victim answer the plain image once while the stolen encoder sees a
fresh augmented copy each epoch (the paper's ImageNet setup, book/paper_setup.md#setup-stealing-imagenet).
Two more modes serve the later attacks (presets in :mod:`encsteal.later.attacks`); both work with
any loss (:func:`make_loss` knows the paper's losses and those of :mod:`encsteal.later.losses`):

* ``"plain_and_augmented"`` (StolenEncoder, arXiv:2201.05889): the victim answers the plain image,
  and the stolen encoder is trained on the plain image and on ``views`` = k fresh augmentations
  of it per epoch, all pulled towards that one answer v:
  ``L = loss(f(x), v) + (augment_weight / k) * sum_j loss(f(A_j(x)), v)``.
  ``augment_weight`` (lambda >= 0) is required; lambda = 0 trains exactly as ``"none"``. The plain
  batch and its k copies go through the stolen encoder in one forward pass (one set of batch-norm
  statistics).
  Queries: one per distinct image (times the epochs with ``requery_every_epoch=True``, where the
  plain image is sent again every epoch).
* ``"independent_views"`` (Cont-Steal, arXiv:2201.07513): the victim answers one augmented view
  of each image and the stolen encoder sees another, independently augmented view. Query-once
  design: one augmented view per image is drawn and answered once (queries = images), and the
  stolen encoder sees a fresh view each epoch; with ``requery_every_epoch=True`` the victim
  answers a fresh augmented view every epoch (queries = images x epochs).

A supervised API (labels or probabilities) is stolen the same way with the same stolen
architecture plus a linear classifier, trained with cross-entropy on the answers: the
supervised-learning baseline at an equal number of queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from encsteal.api import BudgetExceeded, EncoderAPI
from encsteal.augment import Augment
from encsteal.cache import ResultCache, tensor_fingerprint
from encsteal.checkpoint import flat_state, load_flat_state
from encsteal.data.imageset import ImageSet
from encsteal.data.transforms import adapt
from encsteal.distributed import gather_nograd, shard_bounds, sum_over_ranks
from encsteal.distributed import info as dist_info
from encsteal.later.losses import LATER_LOSSES, get_later_loss
from encsteal.losses import LOSSES, StealingLoss, get_loss
from encsteal.models import ARCHS, LinearClassifier, build_encoder
from encsteal.runtime import RunOptions, prepare_device, seed_everything
from encsteal.seeds import derive_seed
from encsteal.training import Batch, OptimizerSpec, StepFn, fit

AUGMENT_MODES: tuple[str, ...] = ("none", "views", "stolen_only", "plain_and_augmented", "independent_views")

#: Every loss an attack may use: the paper's (:data:`encsteal.losses.LOSSES`), then those of the
#: later attacks (:data:`encsteal.later.losses.LATER_LOSSES`).
ALL_LOSSES: dict[str, StealingLoss] = {**LOSSES, **LATER_LOSSES}
if len(ALL_LOSSES) != len(LOSSES) + len(LATER_LOSSES):  # a later loss must not shadow a paper loss
    raise RuntimeError(f"Loss names used twice: {sorted(set(LOSSES) & set(LATER_LOSSES))}.")


def make_loss(name: str, **params: Any) -> Callable[..., torch.Tensor]:
    """The configured loss ``name`` (``loss(stolen, victim, labels=None)``), looked up among the
    paper's losses and then those of the later attacks; an unknown name raises a ``ValueError``
    listing all of them, a bad parameter the error of :func:`~encsteal.losses.get_loss` /
    :func:`~encsteal.later.losses.get_later_loss`."""
    if name in LOSSES:
        return get_loss(name, **params)
    if name in LATER_LOSSES:
        return get_later_loss(name, **params)
    raise ValueError(f"Unknown loss {name!r}. Known losses: {', '.join(ALL_LOSSES)}.")


@dataclass(frozen=True)
class StealConfig:
    """Everything that determines a stealing run (besides the API and the query images).

    ``seed`` drives the stolen encoder's initialisation (its own stream, see :func:`build_stolen`)
    and the batch order; ``init_seed`` (default None) instead initialises it like a victim trained
    with that seed, for experiments that need a copy starting from the victim's initial weights.
    ``drop_outlier_ratio`` (default None: keep every answer) drops, before training, the answers
    :func:`outlier_answers` finds with that ratio (> 1); it needs the query-once design.
    ``augment_weight`` is StolenEncoder's lambda (>= 0), required by ``augment="plain_and_augmented"``
    and refused by the other modes; ``views`` is the number of augmented copies in the modes
    ``"views"`` (copies answered) and ``"plain_and_augmented"`` (k copies trained on).
    """

    loss: str = "infonce"
    loss_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    arch: str = "convnet"
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: str = "none"
    views: int = 2
    requery_every_epoch: bool = False
    seed: int = 0
    init_seed: int | None = None
    drop_outlier_ratio: float | None = None
    augment_weight: float | None = None

    def __post_init__(self) -> None:
        make_loss(self.loss, **self.loss_params)  # validates the name and the parameters now
        if self.arch not in ARCHS:
            raise ValueError(f"Unknown architecture {self.arch!r}. Known: {', '.join(ARCHS)}.")
        if self.augment not in AUGMENT_MODES:
            raise ValueError(f"Unknown augment mode {self.augment!r}. Allowed: {', '.join(AUGMENT_MODES)}.")
        for name in ("epochs", "batch_size", "views"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.augment == "plain_and_augmented":
            w = self.augment_weight
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf"):
                raise ValueError(
                    "augment='plain_and_augmented' needs augment_weight, the weight lambda >= 0 (finite) of "
                    f"the augmented term (0 = no augmentation); got {w!r}."
                )
        elif self.augment_weight is not None:
            raise ValueError(
                f"augment_weight is only used by augment='plain_and_augmented', not augment={self.augment!r}; "
                "leave it None."
            )
        if self.drop_outlier_ratio is not None:
            if isinstance(self.drop_outlier_ratio, bool) or not self.drop_outlier_ratio > 1:
                raise ValueError(f"drop_outlier_ratio must be a number > 1 (or None), got {self.drop_outlier_ratio!r}.")
            if self.requery_every_epoch:
                raise ValueError(
                    "drop_outlier_ratio filters the stored answers of the query-once design; "
                    "it cannot be combined with requery_every_epoch=True."
                )


def outlier_answers(answers: torch.Tensor, ratio: float) -> torch.Tensor:
    """Which answers an outlier-dropping attacker discards (True): all-zero answers (the detector's
    ``"zeros"`` poison), and, among the others, those above the largest ratio between consecutive
    sorted L2 norms when that ratio exceeds ``ratio`` (the detector's N(1000, 0.5^2) poison). With
    one cluster of non-zero norms (no poison, or only poison) none of them is dropped; otherwise
    the poison is dropped whatever its share, and the lowest cluster is always kept."""
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1, got {ratio!r}.")
    norms = answers.float().flatten(1).norm(dim=1)
    flags = norms == 0
    live = torch.nonzero(~flags).flatten()
    if len(live) < 2:
        return flags
    values, order = norms[live].sort()
    gaps = values[1:] / values[:-1]
    split = int(gaps.argmax())
    if float(gaps[split]) > ratio:
        flags[live[order[split + 1 :]]] = True
    return flags


class ProjectedEncoder(nn.Module):
    """A stolen encoder plus a linear map to the victim's output size (when they differ)."""

    def __init__(self, encoder: nn.Module, out_dim: int):
        super().__init__()
        self.encoder = encoder
        self.proj = nn.Linear(encoder.rep_dim, out_dim)
        self.in_channels, self.input_size, self.rep_dim = encoder.in_channels, encoder.input_size, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.encoder(x))


@dataclass
class StealResult:
    """The stolen encoder and what it cost."""

    encoder: nn.Module
    queries: int
    spent: float
    loss_curve: list[float]
    seconds: float
    config: StealConfig
    from_cache: bool = False
    record_images: int = 0

    @property
    def images_per_second(self) -> float:
        """Images through the stolen encoder (forward + backward) per second of training."""
        return self.record_images / self.seconds if self.seconds > 0 else float("nan")


def build_stolen(
    config: StealConfig, api: EncoderAPI, in_channels: int, input_size: int
) -> tuple[nn.Module, nn.Module | None]:
    """The stolen encoder (projected to the API's output size if needed) and, for a supervised
    API, the classifier trained on its answers. Its initial weights come from the ``stolen``
    stream of ``config.seed`` (:func:`encsteal.seeds.derive_seed`), never from the victim's seed,
    unless ``config.init_seed`` asks for a given one (the same-initialisation arm)."""
    torch.manual_seed(derive_seed(config.seed, "stolen") if config.init_seed is None else config.init_seed)
    encoder = build_encoder(config.arch, in_channels, input_size)
    if api.mode == "supervised":
        return encoder, LinearClassifier(encoder.rep_dim, api.head.out_dim)  # type: ignore[union-attr]
    if encoder.rep_dim != api.output_dim:
        encoder = ProjectedEncoder(encoder, api.output_dim)
    return encoder, None


def _supervised_loss(logits: torch.Tensor, answers: torch.Tensor, output: str) -> torch.Tensor:
    if output == "label":
        return F.cross_entropy(logits, answers[:, 0].long())
    if output == "logits":
        answers = answers.softmax(dim=1)
    target = answers / answers.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()


def _query_inputs(config: StealConfig, x: torch.Tensor, gen: torch.Generator, augment: Augment) -> torch.Tensor:
    """The images actually sent to the API in one pass (query-once design)."""
    if config.augment == "views":
        return torch.cat([augment(x, gen) for _ in range(config.views)])
    if config.augment == "independent_views":
        return augment(x, gen)
    return x


def steal(
    api: EncoderAPI,
    queries: ImageSet | torch.Tensor,
    config: StealConfig,
    query_labels: torch.Tensor | None = None,
    input_size: int | None = None,
    user: str = "attacker",
    cache: ResultCache | None = None,
    device: str = "auto",
    progress: bool = True,
    options: RunOptions | None = None,
) -> StealResult:
    """Steal the encoder behind ``api`` with the images ``queries``.

    Args:
        queries: the attacker's images (its own data; uint8 or float in [0, 1]). They stay in
            their stored size and type and are converted batch by batch, so ImageNet-size query
            sets (uint8, possibly memory-mapped) need no float copy in memory.
        query_labels: ground-truth labels of the queries; only the SupCon loss uses them, and
            passing them means the attack is no longer label-free.
        input_size: image size the stolen encoder works at (default: the query images' size).
        options: device, bf16 autocast (CUDA only), channels-last and batch loading
            (:class:`~encsteal.runtime.RunOptions`); ``device`` is a shortcut for its device.

    Under ``torchrun`` (an initialised process group) the query-once pass is split between the
    processes and its answers gathered, and every process trains its share of each global batch
    of ``config.batch_size`` with DDP; the loss is computed on the gathered batch (so contrastive
    losses see the same negatives as one process would) and batch norm is synchronised. The
    query count is summed over the processes. A defended API keeps per-user state, which would be
    split between processes, so it must be attacked from a single process.
    """
    images = queries.images if isinstance(queries, ImageSet) else queries
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"Query images must be a tensor (N, C, H, W) with C = 1 or 3; got {shape}.")
    if len(images) == 0:
        raise ValueError("No query images: pass at least one.")
    needs_labels = ALL_LOSSES[config.loss].needs_labels and api.mode == "ssl"
    if needs_labels and query_labels is None:
        if isinstance(queries, ImageSet):
            raise ValueError(
                f"The {config.loss!r} loss uses the query images' labels: pass query_labels="
                "queries.labels explicitly (the attack is then not label-free)."
            )
        raise ValueError(f"The {config.loss!r} loss needs query_labels.")
    if api.budget is not None:
        sends = len(images) * (config.views if config.augment == "views" else 1)
        total = sends * (config.epochs if config.requery_every_epoch else 1)
        remaining = api.remaining(user)
        if remaining is not None and total > remaining:
            raise BudgetExceeded(
                f"This attack would send {total} queries but user {user!r} has "
                f"{remaining} of its budget of {api.budget} left; lower the number of "
                "images, views or epochs."
            )
    c, size = images.shape[1], input_size or images.shape[-1]
    key = {
        "api": api.describe(),
        "queries": stream_fingerprint(images),
        "config": config,
        "labels": None if query_labels is None else tensor_fingerprint(query_labels),
        "input_size": size,
        "user": user,
    }
    if api.defenses:  # a defense may answer according to the user's earlier queries
        key["history_before"] = api.queries(user)
    tag = options.cache_tag() if options is not None else None
    if tag is not None:  # bf16 results are kept apart from fp32 ones
        key = {**key, **tag}
    cache = cache if cache is not None else ResultCache()
    encoder, classifier = build_stolen(config, api, c, size)
    modules = {"encoder": encoder} | ({"classifier": classifier} if classifier is not None else {})

    def load(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> StealResult:
        load_flat_state(modules, tensors)
        rec = meta["record"]
        api.record_replayed_queries(user, int(rec["queries"]))  # a cached attack still counts its queries
        return StealResult(
            encoder.eval(), rec["queries"], rec["spent"], rec["loss_curve"], rec["seconds"], config, True, rec["images"]
        )

    def compute() -> StealResult:
        if dist_info().enabled and api.defenses:
            raise ValueError(
                "A defended API keeps per-user query state, which DDP would split between "
                "processes: attack it from a single process (no torchrun)."
            )
        return _run_attack(
            api, images, config, query_labels, encoder, classifier, size, user, device, progress, options
        )

    def save(result: StealResult) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return flat_state(modules), {
            "record": {
                "queries": result.queries,
                "spent": result.spent,
                "loss_curve": result.loss_curve,
                "seconds": result.seconds,
                "images": result.record_images,
            }
        }

    return cache.get_or_compute("stolen", key, compute, save, load)


def stream_fingerprint(images: torch.Tensor, rows: int = 4096) -> str:
    """:func:`~encsteal.cache.tensor_fingerprint` of ``images`` (the same digest), read in chunks of
    rows without a full copy, so that a memory-mapped ImageNet query set of tens of GB can be
    fingerprinted."""
    if images.device.type != "cpu" or not images.is_contiguous():
        return tensor_fingerprint(images)
    digest = hashlib.sha256()
    digest.update(f"{tuple(images.shape)}{images.dtype}".encode())
    for s in range(0, len(images), rows):
        digest.update(images[s : s + rows].detach().numpy())
    return digest.hexdigest()[:20]


class _StealNet(nn.Module):
    """The stolen encoder (+ the classifier for a supervised API) as one module (what DDP wraps)."""

    def __init__(self, encoder: nn.Module, classifier: nn.Module | None):
        super().__init__()
        self.encoder, self.classifier = encoder, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.encoder(x)
        return self.classifier(out) if self.classifier is not None else out


def _answer_all(api: EncoderAPI, sent: torch.Tensor, c: int, size: int, user: str, chunk: int = 1024) -> torch.Tensor:
    """The API's answers to all of ``sent`` (query-once design), adapted chunk by chunk; under DDP
    each process sends its contiguous share and the answers are gathered in order."""
    d = dist_info()
    lo, hi = shard_bounds(len(sent), d.rank, d.world_size)
    answers = [
        api.query(adapt(sent[s : min(s + chunk, hi)].to(api.device), c, size), user) for s in range(lo, hi, chunk)
    ]
    mine = torch.cat(answers) if answers else torch.empty(0, api.output_dim)
    if not d.enabled:
        return mine
    return gather_nograd(mine.to(_collective_device())).cpu()


def _collective_device() -> torch.device:
    import torch.distributed as tdist

    return torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else torch.device("cpu")


def _run_attack(
    api, images, config, query_labels, encoder, classifier, size, user, device, progress, options=None
) -> StealResult:
    opts = options if options is not None else RunOptions(device=device)
    if options is not None and device != "auto" and options.device == "auto":
        opts = replace(options, device=device)
    prepare_device(opts)  # refuses bf16 off CUDA before any query is sent
    gen = seed_everything(config.seed)
    augment = Augment()
    c = images.shape[1]
    labels = query_labels if query_labels is not None else torch.zeros(len(images), dtype=torch.long)
    before = api.queries(user)
    if not config.requery_every_epoch:
        if config.augment in ("views", "independent_views"):  # augmented queries: held in memory
            sent = _query_inputs(config, adapt(images, c, size), gen, augment)
        else:
            sent = images
        answers = _answer_all(api, sent, c, size, user)
        train_x = sent if config.augment == "views" else images
        train_labels = labels.repeat(len(sent) // len(images))
        if config.drop_outlier_ratio is not None:  # the attacker discards answers it recognises as poison
            keep = ~outlier_answers(answers, config.drop_outlier_ratio)
            train_x, train_labels, answers = train_x[keep], train_labels[keep], answers[keep]
    else:
        train_x, train_labels, answers = images, labels, None
    views = config.views if (config.requery_every_epoch and config.augment == "views") else 1
    step = _steal_step(
        api, config, classifier is not None, labels, train_labels, answers, c, size, views, user, augment
    )
    passes = views  # images through the stolen encoder per sample (for images/s)
    if config.augment == "plain_and_augmented" and config.augment_weight > 0:
        passes = 1 + config.views
    net = _StealNet(encoder, classifier)
    fitted = fit(
        net,
        list(net.parameters()),
        step,
        train_x,
        optimizer=OptimizerSpec(config.optimizer, config.lr, config.weight_decay),
        epochs=config.epochs,
        batch_size=config.batch_size,
        generator=gen,
        options=opts,
        drop_last=False,
        views=passes,
        progress=progress,
        label=f"steal ({config.loss})",
        status=lambda: {"queries": api.queries(user) - before},
    )
    made = sum_over_ranks(api.queries(user) - before)
    return StealResult(
        fitted.model.encoder,
        made,
        made * api.price_per_1k / 1000.0,
        fitted.loss_curve,
        fitted.seconds,
        config,
        False,
        fitted.images,
    )


def _steal_step(
    api: EncoderAPI,
    config: StealConfig,
    supervised: bool,
    labels: torch.Tensor,
    train_labels: torch.Tensor,
    answers: torch.Tensor | None,
    c: int,
    size: int,
    views: int,
    user: str,
    augment: Augment,
) -> StepFn:
    """One attack batch: the targets (stored answers, or the API asked again), the stolen side's
    inputs, and the loss on the outputs gathered over the global batch."""
    loss_fn = None if supervised else make_loss(config.loss, **config.loss_params)
    weight = config.augment_weight or 0.0  # StolenEncoder's lambda ("plain_and_augmented" only)

    def criterion(out: torch.Tensor, target: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if supervised:
            return _supervised_loss(out, target, api.output)
        return loss_fn(out, target, labels=yb.to(out.device))

    def step(batch: Batch) -> torch.Tensor | None:
        idx = batch.idx
        if len(idx) < 2 and not supervised:  # contrastive losses need two images
            return None
        xb = adapt(batch.x, c, size)
        if config.requery_every_epoch:
            if config.augment == "views":
                xb = torch.cat([batch.augment(augment, xb) for _ in range(views)])
            sent = batch.augment(augment, xb) if config.augment == "independent_views" else xb
            target = gather_nograd(api.query(sent, user).to(batch.device), blocks=views)
            yb = labels[idx].repeat(views)
        else:
            target = answers[idx].to(batch.device)
            yb = train_labels[idx]
        if config.augment in ("stolen_only", "independent_views"):
            xb = batch.augment(augment, xb)
        if config.augment == "plain_and_augmented" and weight > 0:
            k = config.views
            copies = [batch.augment(augment, xb) for _ in range(k)]
            outs = batch.forward(torch.cat([xb, *copies]), blocks=1 + k).chunk(1 + k)
            augmented = sum(criterion(out, target, yb) for out in outs[1:])
            return criterion(outs[0], target, yb) + (weight / k) * augmented
        return criterion(batch.forward(xb, blocks=views), target, yb)

    return step
