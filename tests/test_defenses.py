"""Output defenses: each transform does what it says; the duplicate detector; errors; metrics."""

import math

import pytest
import torch
from torch import nn

from encsteal.api import EncoderAPI, QueryContext, UserHistory
from encsteal.augment import Augment
from encsteal.data import load
from encsteal.defenses import (
    DEFENSES,
    DuplicateDetector,
    GaussianNoise,
    detection_metrics,
    make_defense,
    max_earlier_similarity,
    representation_std,
)


def _ctx(outputs: torch.Tensor, user: str = "u", history: UserHistory | None = None) -> QueryContext:
    return QueryContext(user, history or UserHistory(), torch.zeros(len(outputs), 1, 8, 8), outputs)


def test_official_noise_has_the_requested_mean_and_std():
    out = make_defense("noise")(torch.zeros(4000, 64), _ctx(torch.zeros(4000, 64)))
    assert abs(out.mean().item() - 5.0) < 0.01  # official default mean 5, std 0.5
    assert abs(out.std().item() - 0.5) < 0.01


def test_zero_mean_noise_relative_to_the_representation_std():
    x = torch.randn(4000, 32) * 3.0
    ref = representation_std(x)
    assert abs(ref - 3.0) < 0.1
    out = make_defense("noise", mean=0.0, std=0.5, reference_std=ref)(x, _ctx(x))
    noise = out - x
    assert abs(noise.mean().item()) < 0.02
    assert abs(noise.std().item() - 0.5 * ref) < 0.02
    per_dim = torch.linspace(0.5, 2.0, 32)
    noise = make_defense("noise", mean=0.0, std=1.0, reference_std=per_dim)(x, _ctx(x)) - x
    assert torch.allclose(noise.std(dim=0), per_dim, rtol=0.06)


def test_noise_is_seeded_per_user_and_deterministic():
    x = torch.zeros(8, 4)
    a, b = GaussianNoise(seed=3), GaussianNoise(seed=3)
    first = a(x, _ctx(x, "alice"))
    b(x, _ctx(x, "bob"))  # another user's traffic must not change alice's answers
    assert torch.equal(first, b(x, _ctx(x, "alice")))
    assert not torch.equal(first, a(x, _ctx(x, "alice")))  # a fresh draw for a repeated query
    assert not torch.equal(first, GaussianNoise(seed=4)(x, _ctx(x, "alice")))


def test_rounding_puts_values_on_the_grid():
    x = torch.randn(100, 16)
    out = make_defense("rounding", step=0.25)(x, _ctx(x))
    assert torch.allclose(out / 0.25, torch.round(out / 0.25), atol=1e-5)
    assert (out - x).abs().max() <= 0.125 + 1e-6
    out = make_defense("rounding", step=0.5, reference_std=2.0)(x, _ctx(x))
    assert torch.allclose(out, torch.round(x) * 1.0)


def test_truncation_keeps_exactly_the_k_largest():
    x = torch.randn(50, 32)
    out = make_defense("truncation", k=5)(x, _ctx(x))
    assert ((out != 0).sum(dim=1) == 5).all()
    top = x.abs().topk(5, dim=1).indices
    assert torch.equal(out.gather(1, top), x.gather(1, top))
    kept = out != 0
    assert (
        x.abs().masked_fill(~kept, float("inf")).min(1).values >= x.abs().masked_fill(kept, -1.0).max(1).values
    ).all()


def test_repr_is_deterministic_and_names_the_parameters():
    a, b = (
        make_defense("noise", mean=0.0, std=0.3, reference_std=0.343),
        make_defense("noise", mean=0.0, std=0.3, reference_std=0.343),
    )
    assert repr(a) == repr(b) == "GaussianNoise(mean=0.0, std=0.3, reference_std=0.343, seed=0)"
    assert repr(make_defense("noise", std=0.4)) != repr(make_defense("noise", std=0.3))
    assert "threshold=0.8" in repr(make_defense("duplicates"))
    t1 = make_defense("noise", reference_std=torch.ones(4))
    assert repr(t1) == repr(make_defense("noise", reference_std=torch.ones(4)))
    api = EncoderAPI(_Pixels(), defenses=[a])
    assert api.describe()["defenses"] == [repr(a)]


@pytest.mark.parametrize(
    "name, params, fragment",
    [
        ("laplace", {}, "Allowed: noise, rounding, truncation, duplicates"),
        ("noise", {"std": -1.0}, "std must be >= 0"),
        ("noise", {"sigma": 1.0}, "Allowed: mean, std, reference_std, seed"),
        ("noise", {"reference_std": 0.0}, "reference_std must be > 0"),
        ("rounding", {"step": 0}, "step must be > 0"),
        ("truncation", {"k": 0}, "k must be >= 1"),
        ("truncation", {"k": 2.5}, "k must be an integer"),
        ("duplicates", {"threshold": 1.5}, "threshold must be <= 1"),
        ("duplicates", {"scope": "global"}, "Allowed: history, batch"),
        ("duplicates", {"poison": "flip"}, "Allowed: gaussian, zeros"),
    ],
)
def test_bad_names_and_parameters_raise_clearly(name, params, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_defense(name, **params)


def test_truncation_larger_than_the_output_fails_at_query_time():
    x = torch.randn(3, 8)
    with pytest.raises(ValueError, match="1 <= k <= 8"):
        make_defense("truncation", k=9)(x, _ctx(x))


def test_every_registered_defense_builds_with_defaults():
    x = torch.randn(4, 64)
    for name in DEFENSES:
        assert make_defense(name)(x, _ctx(x)).shape == x.shape


# ---- the duplicate detector ---------------------------------------------------------------------


class _Pixels(nn.Module):
    """A transparent 'encoder': centred pixels, so similarities are those of the images."""

    def __init__(self, mean: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(784) if mean is None else mean.flatten())
        self.in_channels, self.input_size, self.rep_dim = 1, 28, 784

    def forward(self, x):
        return x.flatten(1) - self.mean


@pytest.fixture(scope="module")
def distinct_digits():
    """16 MNIST digits, greedily picked so that no two are similar (rescaled cosine < 0.7)."""
    d = load("mnist5k", "train")
    enc = _Pixels(d.images[:1000].float().mean(0) / 255)
    pool = d.images[:300].float() / 255
    z = torch.nn.functional.normalize(enc(pool), dim=1)
    chosen: list[int] = []
    for i in range(len(pool)):
        if all((z[i] @ z[j] + 1) / 2 < 0.7 for j in chosen):
            chosen.append(i)
        if len(chosen) == 16:
            break
    return enc, pool[chosen]


def test_max_earlier_similarity_by_hand():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    assert torch.allclose(max_earlier_similarity(e), torch.tensor([0.0, 0.5, 1.0, 0.5]))
    hist = torch.tensor([[-1.0, 0.0]])
    assert torch.allclose(max_earlier_similarity(e, hist), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    assert torch.allclose(max_earlier_similarity(e, chunk=1), max_earlier_similarity(e))


def test_detector_flags_exact_and_augmented_duplicates_not_originals(distinct_digits):
    enc, x = distinct_digits
    light = Augment(
        min_scale=0.95, max_aspect=1.02, max_rotation=2.0, flip=False, jitter_p=1.0, brightness=0.05, contrast=0.05
    )
    copies = light(x[8:], torch.Generator().manual_seed(0))
    det = make_defense("duplicates", threshold=0.8)
    api = EncoderAPI(enc, defenses=[det])
    first = api.query(torch.cat([x, x[:4]]), "u")  # exact duplicates within the batch
    second = api.query(copies, "u")  # augmented copies of earlier calls' images
    scores, flags = det.decisions("u")
    truth = torch.tensor([False] * 16 + [True] * 4 + [True] * 8)
    assert torch.equal(flags, truth)
    assert (first[16:] > 900).all() and (second > 900).all()  # poison N(1000, 0.5^2)
    assert torch.allclose(first[:16], enc(x))  # originals untouched
    m = detection_metrics(truth, flags, scores)
    assert m["precision"] == m["recall"] == m["f1"] == m["roc_auc"] == 1.0
    # the official scope (this batch only) misses the copies sent in a later call
    det_b = make_defense("duplicates", scope="batch", poison="zeros")
    api_b = EncoderAPI(enc, defenses=[det_b])
    api_b.query(torch.cat([x, x[:4]]), "u")
    out = api_b.query(copies, "u")
    assert det_b.decisions("u")[1].sum() == 4 and torch.allclose(out, enc(copies))
    # another user's history is not this user's
    api.query(x[:3], "v")
    assert not det.decisions("v")[1].any()


def test_detection_metrics_on_a_hand_made_case():
    truth = [1, 1, 0, 0, 1, 0]
    flags = [1, 0, 0, 1, 1, 0]
    scores = [0.9, 0.4, 0.1, 0.85, 0.95, 0.3]
    m = detection_metrics(truth, flags, scores)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(8 / 9)
    assert m["flag_rate"] == pytest.approx(0.5) and m["positives"] == 3
    assert detection_metrics(truth, flags)["roc_auc"] == pytest.approx(2 / 3)  # AUC of the flags
    assert math.isnan(detection_metrics([0, 0], [0, 1])["roc_auc"])
    with pytest.raises(ValueError, match="one entry per query"):
        detection_metrics([1, 0], [1])


def test_detector_without_recording_and_reset():
    x = torch.randn(5, 8)
    det = DuplicateDetector(record=False)
    det(x, _ctx(x))
    assert det.decisions()[0].numel() == 0
    det2 = DuplicateDetector()
    det2(x, _ctx(x))
    assert len(det2.decisions()[0]) == 5
    det2.reset()
    assert det2.decisions()[0].numel() == 0
