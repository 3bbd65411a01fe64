"""Dataset inference for self-supervised encoders (Dziedzic et al., NeurIPS 2022, arXiv:2209.09024).

An ownership test that needs no change to the victim's training. The defender splits its private
training images into A (to fit a density model) and B (held-out members), and takes non-member
images T from the same distribution (e.g. the test split). It queries the suspect encoder on all
three, L2-normalises the representations, fits a Gaussian mixture on A and scores every point of B
and T by its log-likelihood. An encoder that is the victim, or was stolen from it, represents the
victim's training points more densely than unseen points, so members score higher; an independent
encoder shows no such gap. The statistic is delta = mean LL(B) - mean LL(T) with a one-sided
two-sample t-test (H1: members are more likely); a p-value below ``alpha`` flags the suspect.

Whose representations the mixture is fitted on: the authors' released script loads one encoder
and uses it for everything, i.e. the mixture is fitted on the suspect's own representations of A.
That is the default here. Passing ``victim=`` fits the mixture on the victim's representations of A
instead and scores the suspect's representations of B and T under it (both encoders must then
give representations of the same width); the paper's text does not settle which variant it used.

The released script halves scipy's two-sided p-value, which equals the one-sided p used here
whenever t > 0; for t < 0 (members less likely) the one-sided p is above 0.5, as it should be.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.mixture import GaussianMixture
from torch import nn

from encsteal.data.imageset import ImageSet
from encsteal.data.transforms import to_float
from encsteal.probe import extract_features

COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")  # sklearn GaussianMixture's options
CI_METHODS: tuple[str, ...] = ("exact", "wilson", "wilsoncc")  # scipy binomtest proportion_ci methods

Images = torch.Tensor | ImageSet
Representations = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class DatasetInferenceConfig:
    """Settings of the test. ``n_components`` 10 follows the paper's CIFAR10/SVHN setting, ``diag``
    covariance and ``max_iter`` 1000 follow the released code, ``equal_var`` True matches its
    ``ttest_ind`` call; ``alpha`` 0.01 is the authors' example cut-off."""

    n_components: int = 10
    covariance_type: str = "diag"
    max_iter: int = 1000
    reg_covar: float = 1e-6
    equal_var: bool = True
    alpha: float = 0.01
    seed: int = 0
    batch_size: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.n_components, int) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}.")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"Unknown covariance_type {self.covariance_type!r}. Allowed: {', '.join(COVARIANCE_TYPES)}."
            )
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}.")
        if not self.reg_covar >= 0:
            raise ValueError(f"reg_covar must be >= 0, got {self.reg_covar!r}.")
        _check_alpha(self.alpha)
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}.")


@dataclass(frozen=True)
class DatasetInferenceResult:
    """Outcome for one suspect: ``delta`` = mean LL(members) - mean LL(non-members), the t
    statistic, its one-sided p-value, the sample sizes, and ``flagged`` = p < ``alpha``."""

    delta: float
    t: float
    p_value: float
    n_members: int
    n_nonmembers: int
    alpha: float
    flagged: bool


@dataclass(frozen=True)
class Rate:
    """A share ``k / n`` with its two-sided confidence interval [low, high]."""

    rate: float
    low: float
    high: float
    k: int
    n: int


@dataclass(frozen=True)
class DetectionRates:
    """Share of stolen copies flagged (detection) and of independent models flagged (false positives)."""

    detection: Rate
    false_positive: Rate


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}.")


def _matrix(x: Representations, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, d) matrix of representations, got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains non-finite values.")
    return a


def l2_normalise(x: Representations, name: str = "representations") -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float64); an all-zero row stays zero."""
    a = _matrix(x, name)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def fit_density(fit_reps: Representations, config: DatasetInferenceConfig | None = None) -> GaussianMixture:
    """A Gaussian mixture fitted on the L2-normalised representations of the fit split A."""
    cfg = config or DatasetInferenceConfig()
    x = l2_normalise(fit_reps, "fit representations")
    if len(x) < cfg.n_components:
        raise ValueError(
            f"The fit split has {len(x)} samples but the mixture has {cfg.n_components} components; "
            "use more fit samples or fewer components."
        )
    gmm = GaussianMixture(
        n_components=cfg.n_components,
        covariance_type=cfg.covariance_type,
        max_iter=cfg.max_iter,
        reg_covar=cfg.reg_covar,
        random_state=cfg.seed,
    )
    return gmm.fit(x)


def log_likelihood(gmm: GaussianMixture, reps: Representations, name: str = "representations") -> np.ndarray:
    """Per-sample log-likelihood of the L2-normalised ``reps`` under the fitted mixture."""
    x = l2_normalise(reps, name)
    if x.shape[1] != gmm.n_features_in_:
        raise ValueError(
            f"{name} have {x.shape[1]} dimensions but the mixture was fitted on {gmm.n_features_in_}; "
            "the encoders must give representations of the same width."
        )
    return gmm.score_samples(x)


def membership_t_test(
    member_ll: Sequence[float] | np.ndarray,
    nonmember_ll: Sequence[float] | np.ndarray,
    alpha: float = 0.01,
    equal_var: bool = True,
) -> DatasetInferenceResult:
    """One-sided two-sample t-test of H1: members have the higher mean log-likelihood."""
    _check_alpha(alpha)
    m, n = np.asarray(member_ll, dtype=np.float64), np.asarray(nonmember_ll, dtype=np.float64)
    for values, name in ((m, "member"), (n, "non-member")):
        if values.ndim != 1 or len(values) < 2:
            raise ValueError(f"The t-test needs at least 2 {name} log-likelihoods, got shape {values.shape}.")
    if np.ptp(m) == 0 and np.ptp(n) == 0:
        raise ValueError("The t-test is undefined: the log-likelihoods have zero variance (collapsed encoder?).")
    res = stats.ttest_ind(m, n, equal_var=equal_var, alternative="greater")
    t, p = float(res.statistic), float(res.pvalue)
    if not (math.isfinite(t) and math.isfinite(p)):
        raise ValueError(f"The t-test is undefined (t={t}, p={p}); check the log-likelihoods.")
    return DatasetInferenceResult(
        delta=float(m.mean() - n.mean()),
        t=t,
        p_value=p,
        n_members=len(m),
        n_nonmembers=len(n),
        alpha=alpha,
        flagged=p < alpha,
    )


def dataset_inference_from_representations(
    fit_reps: Representations,
    member_reps: Representations,
    nonmember_reps: Representations,
    config: DatasetInferenceConfig | None = None,
) -> DatasetInferenceResult:
    """The test on precomputed representations of A (fit), B (members) and T (non-members)."""
    cfg = config or DatasetInferenceConfig()
    fit = _matrix(fit_reps, "fit representations")
    members = _matrix(member_reps, "member representations")
    nonmembers = _matrix(nonmember_reps, "non-member representations")
    widths = {"fit": fit.shape[1], "member": members.shape[1], "non-member": nonmembers.shape[1]}
    if len(set(widths.values())) != 1:
        raise ValueError(
            f"Representation widths differ: {widths}; when fitting on a victim's representations, "
            "the suspect must give representations of the victim's width."
        )
    gmm = fit_density(fit, cfg)
    return membership_t_test(
        log_likelihood(gmm, members, "member representations"),
        log_likelihood(gmm, nonmembers, "non-member representations"),
        cfg.alpha,
        cfg.equal_var,
    )


@torch.no_grad()
def represent(encoder: nn.Module, images: Images, batch_size: int = 512) -> np.ndarray:
    """Representations (N, d) of ``images`` in eval mode. encsteal encoders (with ``in_channels``)
    go through :func:`encsteal.probe.extract_features`, which adapts channels and size; any other
    module gets float batches (uint8 scaled to [0, 1]) on its parameters' device."""
    if hasattr(encoder, "in_channels") and next(encoder.parameters(), None) is not None:
        return extract_features(encoder, images, batch_size).double().numpy()
    x = images.images if isinstance(images, ImageSet) else images
    if len(x) == 0:
        raise ValueError("Cannot encode an empty image batch.")
    param = next(encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = encoder.training
    encoder.eval()
    try:
        starts = range(0, len(x), batch_size)
        chunks = [encoder(to_float(x[s : s + batch_size]).to(device)).float().cpu() for s in starts]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks).flatten(1).double().numpy()


def dataset_inference(
    suspect: nn.Module,
    fit_images: Images,
    member_images: Images,
    nonmember_images: Images,
    config: DatasetInferenceConfig | None = None,
    victim: nn.Module | None = None,
) -> DatasetInferenceResult:
    """The test on a suspect encoder. By default the mixture is fitted on the suspect's
    representations of ``fit_images`` (as the released code does); with ``victim`` it is fitted
    on the victim's representations and the suspect's member / non-member representations are scored."""
    cfg = config or DatasetInferenceConfig()
    owner = suspect if victim is None else victim
    return dataset_inference_from_representations(
        represent(owner, fit_images, cfg.batch_size),
        represent(suspect, member_images, cfg.batch_size),
        represent(suspect, nonmember_images, cfg.batch_size),
        cfg,
    )


def dataset_inference_table(
    suspects: Mapping[str, nn.Module],
    fit_images: Images,
    member_images: Images,
    nonmember_images: Images,
    config: DatasetInferenceConfig | None = None,
    victim: nn.Module | None = None,
) -> pd.DataFrame:
    """One row per suspect (columns ``suspect``, ``fit_on`` and the result's fields). With ``victim``
    the mixture is fitted once on the victim's representations and shared by every suspect."""
    if not suspects:
        raise ValueError("No suspects given: pass a mapping name -> encoder.")
    cfg = config or DatasetInferenceConfig()
    shared = None if victim is None else fit_density(represent(victim, fit_images, cfg.batch_size), cfg)
    rows = []
    for name, encoder in suspects.items():
        if shared is None:
            result = dataset_inference(encoder, fit_images, member_images, nonmember_images, cfg)
        else:
            result = membership_t_test(
                log_likelihood(shared, represent(encoder, member_images, cfg.batch_size), f"{name} member"),
                log_likelihood(shared, represent(encoder, nonmember_images, cfg.batch_size), f"{name} non-member"),
                cfg.alpha,
                cfg.equal_var,
            )
        rows.append({"suspect": name, "fit_on": "suspect" if victim is None else "victim", **asdict(result)})
    return pd.DataFrame(rows)


def _flags(results: Sequence[DatasetInferenceResult | bool], name: str) -> list[bool]:
    if len(results) == 0:
        raise ValueError(f"No {name} results given: a rate needs at least one.")
    return [bool(r.flagged) if isinstance(r, DatasetInferenceResult) else bool(r) for r in results]


def flag_rate(flags: Sequence[bool], confidence: float = 0.95, method: str = "exact") -> Rate:
    """Share of True in ``flags`` with a binomial interval: ``exact`` (Clopper-Pearson, the
    default: conservative for the few seeds at hand), ``wilson`` or ``wilsoncc``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    if method not in CI_METHODS:
        raise ValueError(f"Unknown interval method {method!r}. Allowed: {', '.join(CI_METHODS)}.")
    if len(flags) == 0:
        raise ValueError("A rate needs at least one outcome.")
    k, n = int(sum(bool(f) for f in flags)), len(flags)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method=method)
    return Rate(rate=k / n, low=float(ci.low), high=float(ci.high), k=k, n=n)


def detection_rates(
    stolen: Sequence[DatasetInferenceResult | bool],
    independent: Sequence[DatasetInferenceResult | bool],
    confidence: float = 0.95,
    method: str = "exact",
) -> DetectionRates:
    """Detection rate (share of stolen copies flagged) and false-positive rate (share of
    independent models flagged), each over seeds with its binomial confidence interval."""
    return DetectionRates(
        detection=flag_rate(_flags(stolen, "stolen"), confidence, method),
        false_positive=flag_rate(_flags(independent, "independent"), confidence, method),
    )
