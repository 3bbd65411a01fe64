"""Dataset inference (arXiv:2209.09024): the mixture log-likelihood, the one-sided t-test and the
detection-rate intervals against references written here; flagged members vs an unflagged null."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture
from torch import nn

from encsteal.later.dataset_inference import (
    CI_METHODS,
    COVARIANCE_TYPES,
    DatasetInferenceConfig,
    DatasetInferenceResult,
    dataset_inference,
    dataset_inference_from_representations,
    dataset_inference_table,
    detection_rates,
    fit_density,
    flag_rate,
    l2_normalise,
    log_likelihood,
    membership_t_test,
)
from encsteal.models.convnet import SmallConvNet

D = 8


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x**2).sum(axis=1, keepdims=True))


def _clusters(rng: np.random.Generator, n: int, centres: np.ndarray, noise: float) -> np.ndarray:
    idx = rng.integers(0, len(centres), size=n)
    return centres[idx] + noise * rng.standard_normal((n, centres.shape[1]))


def _centres(seed: int = 123) -> np.ndarray:
    return _unit(np.random.default_rng(seed).standard_normal((3, D)))


def test_covariance_types_are_sklearns():
    assert set(COVARIANCE_TYPES) == set(GaussianMixture._parameter_constraints["covariance_type"][0].options)


def test_l2_normalise_matches_reference():
    x = np.random.default_rng(0).standard_normal((5, 4)) * 3
    np.testing.assert_allclose(l2_normalise(torch.tensor(x)), _unit(x), rtol=1e-12)


def test_diag_log_likelihood_matches_numpy_reference():
    rng = np.random.default_rng(0)
    fit, score = _clusters(rng, 200, _centres(), 0.1), _clusters(rng, 30, _centres(), 0.2)
    gmm = fit_density(fit, DatasetInferenceConfig(n_components=3, covariance_type="diag"))
    x = _unit(score)
    w, mu, var = gmm.weights_, gmm.means_, gmm.covariances_  # (K,), (K, d), (K, d)
    ref = []
    for row in x:
        terms = []
        for k in range(len(w)):
            log_norm = -0.5 * np.sum(np.log(2 * np.pi * var[k]))
            terms.append(math.log(w[k]) + log_norm - 0.5 * np.sum((row - mu[k]) ** 2 / var[k]))
        m = max(terms)
        ref.append(m + math.log(sum(math.exp(t - m) for t in terms)))
    np.testing.assert_allclose(log_likelihood(gmm, score), ref, rtol=1e-9)


def test_full_log_likelihood_matches_scipy_reference():
    rng = np.random.default_rng(1)
    fit, score = _clusters(rng, 200, _centres(), 0.1), _clusters(rng, 20, _centres(), 0.1)
    gmm = fit_density(fit, DatasetInferenceConfig(n_components=2, covariance_type="full"))
    x = _unit(score)
    per_component = np.stack(
        [
            np.log(gmm.weights_[k]) + stats.multivariate_normal(gmm.means_[k], gmm.covariances_[k]).logpdf(x)
            for k in range(2)
        ]
    )
    np.testing.assert_allclose(log_likelihood(gmm, score), logsumexp(per_component, axis=0), rtol=1e-9)


def _pooled_reference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    n1, n2 = len(a), len(b)
    m1, m2 = sum(a) / n1, sum(b) / n2
    s1 = sum((v - m1) ** 2 for v in a) / (n1 - 1)
    s2 = sum((v - m2) ** 2 for v in b) / (n2 - 1)
    sp = math.sqrt(((n1 - 1) * s1 + (n2 - 1) * s2) / (n1 + n2 - 2))
    t = (m1 - m2) / (sp * math.sqrt(1 / n1 + 1 / n2))
    return t, float(stats.t.sf(t, n1 + n2 - 2))


def _welch_reference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    n1, n2 = len(a), len(b)
    v1, v2 = np.var(a, ddof=1) / n1, np.var(b, ddof=1) / n2
    t = (np.mean(a) - np.mean(b)) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    return t, float(stats.t.sf(t, df))


@pytest.mark.parametrize("shift", [0.3, -0.3])
def test_t_test_matches_textbook_formulas(shift):
    rng = np.random.default_rng(2)
    a, b = rng.normal(shift, 1.0, 40), rng.normal(0.0, 2.0, 55)
    res = membership_t_test(a, b, alpha=0.05)
    t, p = _pooled_reference(a, b)
    assert res.t == pytest.approx(t, rel=1e-10) and res.p_value == pytest.approx(p, rel=1e-10)
    assert res.delta == pytest.approx(a.mean() - b.mean(), rel=1e-12)
    assert (res.n_members, res.n_nonmembers, res.alpha, res.flagged) == (40, 55, 0.05, p < 0.05)
    welch = membership_t_test(a, b, equal_var=False)
    t, p = _welch_reference(a, b)
    assert welch.t == pytest.approx(t, rel=1e-10) and welch.p_value == pytest.approx(p, rel=1e-10)
    if shift < 0:  # members less likely: the one-sided p is above 1/2, never a detection
        assert res.p_value > 0.5 and not res.flagged


def test_members_from_dense_region_are_flagged():
    rng = np.random.default_rng(3)
    centres = _centres()
    fit, members = _clusters(rng, 300, centres, 0.05), _clusters(rng, 200, centres, 0.05)
    shifted = _clusters(rng, 200, _unit(centres + 0.15 * rng.standard_normal(centres.shape)), 0.08)
    res = dataset_inference_from_representations(fit, members, shifted, DatasetInferenceConfig(n_components=3))
    assert res.delta > 0 and res.p_value < 0.01 and res.flagged


def test_same_distribution_is_mostly_not_flagged():
    flagged = []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        fit, b, t = (_clusters(rng, n, _centres(), 0.08) for n in (300, 150, 150))
        cfg = DatasetInferenceConfig(n_components=3, seed=seed)
        flagged.append(dataset_inference_from_representations(fit, b, t, cfg).flagged)
    assert sum(flagged) <= 1


def test_same_seed_same_numbers():
    rng = np.random.default_rng(4)
    fit, b, t = (_clusters(rng, n, _centres(), 0.1) for n in (200, 60, 60))
    cfg = DatasetInferenceConfig(n_components=4, seed=7)
    assert dataset_inference_from_representations(fit, b, t, cfg) == dataset_inference_from_representations(
        fit, b, t, cfg
    )


def _images(seed: int, n: int, channels: int = 3, size: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(seed)).to(
        torch.uint8
    )


def test_encoder_paths_match_precomputed_representations():
    a, b, t = _images(0, 80), _images(1, 30), _images(2, 30)
    cfg = DatasetInferenceConfig(n_components=3, batch_size=16)
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(48, 6)).train()
    with torch.no_grad():
        reps = [plain(x.float() / 255) for x in (a, b, t)]
    assert dataset_inference(plain, a, b, t, cfg) == dataset_inference_from_representations(*reps, cfg)
    assert plain.training  # the mode is restored
    conv = SmallConvNet(1, widths=(4, 6), input_size=4).eval()  # encsteal encoder: grey, via extract_features
    with torch.no_grad():
        conv_reps = [
            conv((x.float() / 255 * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True))
            for x in (a, b, t)
        ]
    assert dataset_inference(conv, a, b, t, cfg) == dataset_inference_from_representations(*conv_reps, cfg)
    # victim variant: the mixture is fitted on the victim's representations of A
    victim = nn.Sequential(nn.Flatten(), nn.Linear(48, 6))
    with torch.no_grad():
        victim_a = victim(a.float() / 255)
    expected = dataset_inference_from_representations(victim_a, reps[1], reps[2], cfg)
    assert dataset_inference(plain, a, b, t, cfg, victim=victim) == expected
    table = dataset_inference_table({"plain": plain, "victim": victim}, a, b, t, cfg, victim=victim)
    assert list(table["suspect"]) == ["plain", "victim"] and set(table["fit_on"]) == {"victim"}
    assert table.iloc[0]["p_value"] == expected.p_value and table.iloc[0]["delta"] == expected.delta
    own = dataset_inference_table({"plain": plain}, a, b, t, cfg)
    assert own.iloc[0]["fit_on"] == "suspect" and own.iloc[0]["t"] == dataset_inference(plain, a, b, t, cfg).t


def _result(flagged: bool) -> DatasetInferenceResult:
    return DatasetInferenceResult(1.0, 1.0, 0.001 if flagged else 0.5, 10, 10, 0.01, flagged)


@pytest.mark.parametrize(("k", "n"), [(0, 5), (3, 5), (5, 5), (7, 20)])
def test_rate_intervals_match_reference(k, n):
    flags = [True] * k + [False] * (n - k)
    cp = flag_rate(flags, method="exact")
    low = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)
    high = 1.0 if k == n else stats.beta.isf(0.025, k + 1, n - k)
    assert (cp.k, cp.n, cp.rate) == (k, n, k / n)
    assert cp.low == pytest.approx(low, abs=1e-9) and cp.high == pytest.approx(high, abs=1e-9)
    z, p = stats.norm.isf(0.025), k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    wilson = flag_rate(flags, method="wilson")
    assert wilson.low == pytest.approx(max(0.0, centre - half), abs=1e-9)
    assert wilson.high == pytest.approx(min(1.0, centre + half), abs=1e-9)


def test_detection_rates_count_flags():
    rates = detection_rates([_result(True)] * 4 + [_result(False)], [_result(False), True, False])
    assert (rates.detection.k, rates.detection.n) == (4, 5)
    assert (rates.false_positive.k, rates.false_positive.n) == (1, 3)
    assert rates.detection.low < 0.8 < rates.detection.high


def test_bad_inputs_raise():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 4))
    with pytest.raises(ValueError, match="components"):
        dataset_inference_from_representations(x[:5], x, x, DatasetInferenceConfig(n_components=10))
    with pytest.raises(ValueError, match="widths differ"):
        dataset_inference_from_representations(x, x[:, :3], x, DatasetInferenceConfig(n_components=2))
    with pytest.raises(ValueError, match="same width"):
        log_likelihood(fit_density(x, DatasetInferenceConfig(n_components=2)), x[:, :3])
    for alpha in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            DatasetInferenceConfig(alpha=alpha)
        with pytest.raises(ValueError, match="alpha"):
            membership_t_test([1.0, 2.0], [0.0, 1.0], alpha=alpha)
    with pytest.raises(ValueError, match="diag"):
        DatasetInferenceConfig(covariance_type="diagonal")
    with pytest.raises(ValueError, match="n_components"):
        DatasetInferenceConfig(n_components=0)
    with pytest.raises(ValueError, match="at least 2"):
        membership_t_test([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="zero variance"):
        membership_t_test([1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        l2_normalise(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        l2_normalise(np.ones(3))
    with pytest.raises(ValueError, match="wilson"):
        flag_rate([True], method="agresti")
    assert "exact" in CI_METHODS
    with pytest.raises(ValueError, match="No stolen"):
        detection_rates([], [True])
    with pytest.raises(ValueError, match="No suspects"):
        dataset_inference_table({}, _images(0, 4), _images(1, 4), _images(2, 4))
