"""encsteal.later.losses: each loss against an independent reference (plain Python loops with
math), its value at the optimum, gradient flow, the registry and bad parameters."""

from __future__ import annotations

import math

import pytest
import torch

from encsteal import losses as paper
from encsteal.later import losses as L
from encsteal.later.losses import LATER_LOSSES, contsteal_loss, get_later_loss, stolenencoder_loss
from tests.test_losses import _dot, _rows, _unit  # the paper's losses' plain-math helpers

N, D = 5, 4
ATOL = 1e-9


def _pair(seed: int = 0, n: int = N, d: int = D):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, d, generator=g, dtype=torch.float64)
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    return s, v


# --------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------


def ref_stolenencoder(s, v, distance):
    total = 0.0
    for a, b in zip(s, v):
        ua, ub = _unit(a), _unit(b)
        if distance == "l2":
            total += math.sqrt(sum((x - y) ** 2 for x, y in zip(ua, ub)))
        else:
            total -= _dot(ua, ub)
    return total / len(s)


def ref_contsteal(s, t, temperature):
    """Anchors s_i; positive t_i; negatives t_j and s_j for j != i; positive not in the denominator."""
    s, t = [_unit(r) for r in s], [_unit(r) for r in t]
    n = len(s)
    total = 0.0
    for i in range(n):
        denom = sum(math.exp(_dot(s[i], t[j]) / temperature) for j in range(n) if j != i)
        denom += sum(math.exp(_dot(s[i], s[j]) / temperature) for j in range(n) if j != i)
        total += -math.log(math.exp(_dot(s[i], t[i]) / temperature) / denom)
    return total / n


# --------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["l2", "cosine"])
@pytest.mark.parametrize("seed", [0, 1])
def test_stolenencoder_matches_reference(distance, seed):
    s, v = _pair(seed)
    got = stolenencoder_loss(s, v, distance=distance).item()
    assert got == pytest.approx(ref_stolenencoder(_rows(s), _rows(v), distance), abs=ATOL)


def test_stolenencoder_default_is_the_unsquared_l2_distance():
    s, v = _pair(2)
    assert LATER_LOSSES["stolenencoder"].params == {"distance": "l2"}
    assert stolenencoder_loss(s, v).item() == pytest.approx(ref_stolenencoder(_rows(s), _rows(v), "l2"), abs=ATOL)
    # not the squared distance: for unit vectors |a - b|^2 = 2 - 2 cos, which is a different number
    squared = sum(2 - 2 * _dot(_unit(a), _unit(b)) for a, b in zip(_rows(s), _rows(v))) / N
    assert stolenencoder_loss(s, v).item() != pytest.approx(squared, abs=1e-3)


def test_stolenencoder_optimum_and_scale_invariance():
    s, _ = _pair(3)
    scale = torch.tensor([0.5, 2.0, 3.0, 7.0, 0.1], dtype=torch.float64).unsqueeze(1)
    assert stolenencoder_loss(s, s * scale).item() == pytest.approx(0.0, abs=1e-12)
    assert stolenencoder_loss(s, s * scale, distance="cosine").item() == pytest.approx(-1.0, abs=1e-12)
    assert stolenencoder_loss(s, -s).item() == pytest.approx(2.0, abs=1e-12)  # the largest distance
    # the gradient at an exactly zero distance is defined (0), not NaN
    s = s.clone().requires_grad_(True)
    stolenencoder_loss(s, s.detach().clone()).backward()
    assert torch.equal(s.grad, torch.zeros_like(s))


@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("seed", [4, 5])
def test_contsteal_matches_reference(temperature, seed):
    s, t = _pair(seed)
    got = contsteal_loss(s, t, temperature=temperature).item()
    assert got == pytest.approx(ref_contsteal(_rows(s), _rows(t), temperature), rel=1e-10, abs=ATOL)


def test_contsteal_default_temperature_and_positive_left_out_of_the_denominator():
    assert LATER_LOSSES["contsteal"].params == {"temperature": 0.07}
    s, noise = _pair(6)
    t = s + 0.3 * noise  # answers close to their own stolen rows: the positive term matters
    rs, rt = _rows(s), _rows(t)
    assert contsteal_loss(s, t).item() == pytest.approx(ref_contsteal(rs, rt, 0.07), rel=1e-10)
    # with the positive in the denominator it would be larger by mean_i log(1 + e^{pos_i} / neg_i)
    us, ut = [_unit(r) for r in rs], [_unit(r) for r in rt]
    with_positive = 0.0
    for i in range(N):
        terms = [math.exp(_dot(us[i], ut[j]) / 0.07) for j in range(N)]
        terms += [math.exp(_dot(us[i], us[j]) / 0.07) for j in range(N) if j != i]
        with_positive += -math.log(terms[i] / sum(terms))
    with_positive /= N
    assert contsteal_loss(s, t).item() < with_positive - 0.1


def test_contsteal_is_lower_when_each_stolen_row_matches_its_own_answer():
    # orthonormal victim answers: s = t is the best pairing; a permutation (wrong images) is worse,
    # and the loss goes below zero once the positive beats the negatives (no lower bound at 0)
    t = torch.eye(D, dtype=torch.float64)
    matched = contsteal_loss(t.clone(), t).item()
    shuffled = contsteal_loss(t[[1, 2, 3, 0]], t).item()
    assert matched < 0 < shuffled
    assert matched == pytest.approx(ref_contsteal(_rows(t), _rows(t), 0.07), rel=1e-10)
    # invariant to positive rescaling of rows (both sides are normalised)
    s, u = _pair(7)
    assert contsteal_loss(3 * s, 0.2 * u).item() == pytest.approx(contsteal_loss(s, u).item(), rel=1e-12)


def test_official_contsteal_form_is_the_paper_infonce_with_temperature_half():
    # what the docstring claims: the official 2N-row NT-Xent (positive included) at T=0.5
    s, t = _pair(8)
    x = [_unit(r) for r in _rows(s)] + [_unit(r) for r in _rows(t)]
    m = len(x)
    total = 0.0
    for a in range(m):
        den = sum(math.exp(_dot(x[a], x[b]) / 0.5) for b in range(m) if b != a)
        total += -_dot(x[a], x[(a + N) % m]) / 0.5 + math.log(den)
    assert paper.get_loss("infonce", temperature=0.5)(s, t).item() == pytest.approx(total / m, rel=1e-10)


def test_float32_inputs():
    s, v = _pair(9)
    for name in LATER_LOSSES:
        got = get_later_loss(name)(s.float(), v.float())
        assert got.dtype == torch.float32 and got.dim() == 0
        assert got.item() == pytest.approx(get_later_loss(name)(s, v).item(), rel=1e-5, abs=1e-5)


# --------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------


GRAD_CASES = [("stolenencoder", {}), ("stolenencoder", {"distance": "cosine"}), ("contsteal", {})]


@pytest.mark.parametrize("name, params", GRAD_CASES)
def test_gradient_only_on_stolen_side(name, params):
    s, v = _pair(10)
    s.requires_grad_(True)
    v.requires_grad_(True)
    get_later_loss(name, **params)(s, v, labels=torch.arange(N)).backward()
    assert v.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "name, params, lr",
    [("stolenencoder", {}, 20.0), ("stolenencoder", {"distance": "cosine"}, 20.0), ("contsteal", {}, 0.5)],
)
def test_sgd_aligns_stolen_with_victim(name, params, lr):
    g = torch.Generator().manual_seed(11)
    victim = torch.randn(16, 8, generator=g)
    stolen = torch.randn(16, 8, generator=g).requires_grad_(True)
    fn = get_later_loss(name, **params)
    first = fn(stolen, victim).item()
    cos0 = torch.nn.functional.cosine_similarity(stolen, victim).mean().item()
    for _ in range(60):
        (grad,) = torch.autograd.grad(fn(stolen, victim), stolen)
        with torch.no_grad():
            stolen -= lr * grad
    cos1 = torch.nn.functional.cosine_similarity(stolen, victim).mean().item()
    assert fn(stolen, victim).item() < first
    assert cos1 > cos0 + 0.3, (name, cos0, cos1)


# --------------------------------------------------------------------------
# registry and errors
# --------------------------------------------------------------------------


def test_registry():
    assert list(LATER_LOSSES) == ["stolenencoder", "contsteal"]
    assert not set(LATER_LOSSES) & set(paper.LOSSES)
    for key, entry in LATER_LOSSES.items():
        assert entry.name == key and entry.description and entry.fn.__doc__ and not entry.needs_labels
        assert isinstance(entry, paper.StealingLoss)
    s, v = _pair(12)
    # calling a registry entry goes through get_later_loss (parameters forwarded and validated)
    assert LATER_LOSSES["contsteal"](s, v, temperature=0.3).item() == pytest.approx(
        contsteal_loss(s, v, temperature=0.3).item()
    )
    assert LATER_LOSSES["stolenencoder"](s, v, distance="cosine").item() == pytest.approx(
        stolenencoder_loss(s, v, distance="cosine").item()
    )
    fn = get_later_loss("contsteal", temperature=0.2)
    assert fn.loss_name == "contsteal" and fn.params == {"temperature": 0.2} and fn.needs_labels is False
    for name in L.__all__:
        assert hasattr(L, name)


def test_unknown_name_and_parameter():
    with pytest.raises(ValueError, match="known: stolenencoder, contsteal"):
        get_later_loss("mse")
    with pytest.raises(TypeError, match=r"accepted: \['temperature'\]"):
        get_later_loss("contsteal", distance="l2")
    with pytest.raises(TypeError, match=r"accepted: \['distance'\]"):
        get_later_loss("stolenencoder", temperature=0.1)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), True, "auto"])
def test_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        get_later_loss("contsteal", temperature=bad)
    s, v = _pair(13)
    with pytest.raises(ValueError, match="temperature"):
        contsteal_loss(s, v, temperature=bad)


@pytest.mark.parametrize("bad", ["l1", "L2", "mse", None])
def test_bad_distance(bad):
    with pytest.raises(ValueError, match="allowed: l2, cosine"):
        get_later_loss("stolenencoder", distance=bad)
    s, v = _pair(14)
    with pytest.raises(ValueError, match="allowed: l2, cosine"):
        stolenencoder_loss(s, v, distance=bad)


@pytest.mark.parametrize("name", list(LATER_LOSSES))
def test_bad_shapes(name):
    s, v = torch.randn(N, D), torch.randn(N, D + 3)
    with pytest.raises(ValueError) as err:
        get_later_loss(name)(s, v)
    assert str((N, D)) in str(err.value) and str((N, D + 3)) in str(err.value)
    with pytest.raises(ValueError, match="2-D"):
        get_later_loss(name)(torch.randn(N), torch.randn(N))


def test_contsteal_needs_two_images():
    with pytest.raises(ValueError, match="at least 2 images"):
        contsteal_loss(torch.randn(1, D), torch.randn(1, D))
    assert stolenencoder_loss(torch.randn(1, D), torch.randn(1, D)).dim() == 0  # fine with one
