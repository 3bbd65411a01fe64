"""Tests for encsteal.losses: every loss against an independent reference
(plain Python loops with math.exp/log), gradient flow, optimisation
behaviour and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from encsteal import losses as L
from encsteal.losses import (
    LOSSES,
    PAPER_LOSSES,
    barlow_twins_loss,
    barlow_twins_official_loss,
    get_loss,
    infonce_loss,
    mse_loss,
    softnn_loss,
    supcon_loss,
    wasserstein_loss,
)

N, D = 6, 4
LABELS = [0, 1, 0, 2, 1, 2]
ATOL = 1e-5


def _pair(seed: int = 0, n: int = N, d: int = D):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, d, generator=g, dtype=torch.float64)
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    return s, v


def _rows(t: torch.Tensor) -> list[list[float]]:
    return [[float(x) for x in row] for row in t]


# --------------------------------------------------------------------------
# independent references (lists of floats, math only)
# --------------------------------------------------------------------------


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _unit(a):
    n = math.sqrt(_dot(a, a))
    return [x / n for x in a]


def _sqdist(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


def ref_mse(s, v):
    n, d = len(s), len(s[0])
    return sum((s[i][k] - v[i][k]) ** 2 for i in range(n) for k in range(d)) / (n * d)


def ref_infonce(s, v, t):
    """NT-Xent over the 2N stacked points: every row is an anchor, its partner the positive."""
    x = [_unit(r) for r in s] + [_unit(r) for r in v]
    n = len(s)
    m = len(x)
    total = 0.0
    for a in range(m):
        partner = (a + n) % m
        others = [b for b in range(m) if b != a]
        denom = sum(math.exp(_dot(x[a], x[b]) / t) for b in others)
        total += -(_dot(x[a], x[partner]) / t) + math.log(denom)
    return total / m


def ref_softnn(s, v, t):
    x = s + v
    n = len(s)
    lab = list(range(n)) + list(range(n))
    m = len(x)
    if t == "auto":
        ds = [_sqdist(x[a], x[b]) for a in range(m) for b in range(a + 1, m)]
        t = 0.1 * float(np.median(ds))
    total = 0.0
    for a in range(m):
        num = sum(math.exp(-_sqdist(x[a], x[b]) / t) for b in range(m) if b != a and lab[b] == lab[a])
        den = sum(math.exp(-_sqdist(x[a], x[k]) / t) for k in range(m) if k != a)
        total += -math.log(num / den)
    return total / m


def ref_supcon(s, v, labels, t):
    z = [_unit(r) for r in s + v]
    y = list(labels) + list(labels)
    m = len(z)
    total = 0.0
    for a in range(m):
        den = sum(math.exp(_dot(z[a], z[b]) / t) for b in range(m) if b != a)
        pos = [p for p in range(m) if p != a and y[p] == y[a]]
        total += -sum(math.log(math.exp(_dot(z[a], z[p]) / t) / den) for p in pos) / len(pos)
    return total / m


def ref_wasserstein(s, v, eps=1e-8):
    def hist(r):
        lo = min(r)
        sh = [x - lo for x in r]
        tot = sum(sh) + eps
        return [x / tot for x in sh]

    total = 0.0
    for a, b in zip(s, v):
        p, q = hist(a), hist(b)
        cp = cq = 0.0
        w = 0.0
        for k in range(len(p)):
            cp += p[k]
            cq += q[k]
            w += abs(cp - cq)
        total += w
    return total / len(s)


def ref_barlow(a, b, lambd=0.0051, eps=1e-5):
    n, d = len(a), len(a[0])

    def standardise(z):
        cols = []
        for k in range(d):
            col = [z[i][k] for i in range(n)]
            mu = sum(col) / n
            var = sum((c - mu) ** 2 for c in col) / n
            cols.append([(c - mu) / math.sqrt(var + eps) for c in col])
        return cols  # cols[k][i]

    za, zb = standardise(a), standardise(b)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(za[i][r] * zb[j][r] for r in range(n)) / n
            total += (1 - c) ** 2 if i == j else lambd * c * c
    return total


# --------------------------------------------------------------------------
# values against the references
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_mse_matches_reference(seed):
    s, v = _pair(seed)
    assert mse_loss(s, v).item() == pytest.approx(ref_mse(_rows(s), _rows(v)), abs=ATOL)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_infonce_matches_reference(t):
    s, v = _pair(2)
    got = infonce_loss(s, v, temperature=t).item()
    assert got == pytest.approx(ref_infonce(_rows(s), _rows(v), t), abs=ATOL)


@pytest.mark.parametrize("t", [100.0, 2.0, "auto"])
def test_softnn_matches_reference(t):
    s, v = _pair(3)
    got = softnn_loss(s, v, temperature=t).item()
    assert got == pytest.approx(ref_softnn(_rows(s), _rows(v), t), abs=ATOL)


def test_softnn_default_temperature_is_100():
    s, v = _pair(4)
    assert LOSSES["softnn"].params["temperature"] == 100.0
    assert softnn_loss(s, v).item() == pytest.approx(ref_softnn(_rows(s), _rows(v), 100.0), abs=ATOL)


@pytest.mark.parametrize("t", [0.07, 0.5])
def test_supcon_matches_reference(t):
    s, v = _pair(5)
    got = supcon_loss(s, v, torch.tensor(LABELS), temperature=t).item()
    assert got == pytest.approx(ref_supcon(_rows(s), _rows(v), LABELS, t), abs=ATOL)


def test_wasserstein_matches_reference():
    s, v = _pair(6)
    assert wasserstein_loss(s, v).item() == pytest.approx(ref_wasserstein(_rows(s), _rows(v)), abs=ATOL)


def test_barlow_matches_reference():
    s, v = _pair(7)
    assert barlow_twins_loss(s, v).item() == pytest.approx(ref_barlow(_rows(s), _rows(v)), abs=ATOL)


@pytest.mark.parametrize("n", [6, 7])
def test_barlow_official_pairs_first_and_second_half(n):
    s, v = _pair(8, n=n)
    rs, rv = _rows(s), _rows(v)
    h = n // 2
    view_a = rs[:h] + rv[:h]
    view_b = rs[h : 2 * h] + rv[h : 2 * h]
    got = barlow_twins_official_loss(s, v).item()
    assert got == pytest.approx(ref_barlow(view_a, view_b), abs=ATOL)
    # ... which is the plain Barlow formula on the half-batch views
    va = torch.cat([s[:h], v[:h]])
    vb = torch.cat([s[h : 2 * h], v[h : 2 * h]])
    assert got == pytest.approx(barlow_twins_loss(va, vb).item(), abs=1e-10)


def test_float32_inputs_match_reference():
    s, v = _pair(9)
    s32, v32 = s.float(), v.float()
    for name in PAPER_LOSSES:
        got = get_loss(name)(s32, v32, labels=torch.tensor(LABELS))
        assert got.dtype == torch.float32 and got.dim() == 0
        want = get_loss(name)(s, v, labels=torch.tensor(LABELS)).item()
        assert got.item() == pytest.approx(want, rel=1e-4, abs=1e-4), name


# --------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------


def test_zero_when_identical():
    s, _ = _pair(10)
    assert mse_loss(s, s.clone()).item() == 0.0
    assert wasserstein_loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-12)
    # Wasserstein normalisation: invariant to shifting/positively scaling a row
    assert wasserstein_loss(3.0 * s + 1.5, s).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_only_on_stolen_side(name):
    s, v = _pair(11)
    s.requires_grad_(True)
    v.requires_grad_(True)
    loss = get_loss(name)(s, v, labels=torch.tensor(LABELS))
    loss.backward()
    assert v.grad is None
    assert s.grad is not None
    assert torch.isfinite(s.grad).all()
    assert s.grad.abs().sum() > 0


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a, b, dim=1).mean().item()


# learning rates per loss for a handful of plain SGD steps on a free tensor
_LR = {
    "mse": 0.5,
    "infonce": 0.5,
    "softnn": 0.5,
    "supcon": 0.5,
    "wasserstein": 5.0,
    "barlow": 0.5,
    "barlow_official": 0.5,
}


def _optimise(name, steps=30, seed=12, n=16, d=8, **params):
    g = torch.Generator().manual_seed(seed)
    victim = torch.randn(n, d, generator=g)
    stolen = torch.randn(n, d, generator=g).requires_grad_(True)
    labels = torch.randint(0, 4, (n,), generator=g)
    fn = get_loss(name, **params)
    lr = _LR[name]
    first = fn(stolen, victim, labels=labels).item()
    cos0 = _cos(stolen.detach(), victim)
    for _ in range(steps):  # plain SGD (torch.optim's first use is slow to import)
        (grad,) = torch.autograd.grad(fn(stolen, victim, labels=labels), stolen)
        with torch.no_grad():
            stolen -= lr * grad
    last = fn(stolen, victim, labels=labels).item()
    return first, last, cos0, _cos(stolen.detach(), victim)


@pytest.mark.parametrize("name", list(LOSSES))
def test_sgd_decreases_loss(name):
    first, last, _, _ = _optimise(name)
    assert last < first, (name, first, last)


@pytest.mark.parametrize(
    "name, params",
    [
        ("mse", {}),
        ("infonce", {}),
        # T=100 is nearly flat for these tiny inputs (squared distances ~ 16);
        # the batch-calibrated temperature aligns them
        ("softnn", {"temperature": "auto"}),
        ("wasserstein", {}),
        ("barlow", {}),
    ],
)
def test_sgd_aligns_stolen_with_victim(name, params):
    _, _, cos0, cos1 = _optimise(name, steps=60, **params)
    assert cos1 > cos0 + 0.2, (name, cos0, cos1)


def test_barlow_official_does_not_align_stolen_with_victim():
    # Observed (seeds 0-4, n=32): official changes cos(stolen_i, victim_i) by
    # at most ~0.04 while the correct pairing raises it by >= 0.63.
    for seed in range(3):
        first, last, cos0, cos1 = _optimise("barlow_official", steps=60, seed=seed, n=32)
        assert last < 0.5 * first  # it does optimise *something* ...
        assert abs(cos1 - cos0) < 0.1, (seed, cos0, cos1)
        # ... but not the alignment that the correct pairing achieves
        _, _, cos0_b, cos1_b = _optimise("barlow", steps=60, seed=seed, n=32)
        assert cos0_b == pytest.approx(cos0)  # same starting point
        assert cos1_b - cos0 > 0.5, (seed, cos0, cos1_b)


# --------------------------------------------------------------------------
# registry and errors
# --------------------------------------------------------------------------


def test_registry_contents():
    assert set(LOSSES) == {
        "mse",
        "infonce",
        "softnn",
        "supcon",
        "wasserstein",
        "barlow",
        "barlow_official",
    }
    assert PAPER_LOSSES == ("mse", "infonce", "softnn", "supcon", "wasserstein", "barlow")
    assert [k for k, e in LOSSES.items() if e.needs_labels] == ["supcon"]
    for key, entry in LOSSES.items():
        assert entry.name == key and entry.description and entry.fn.__doc__


def test_get_loss_params_forwarded():
    s, v = _pair(13)
    assert get_loss("infonce", temperature=0.2)(s, v).item() == pytest.approx(
        infonce_loss(s, v, temperature=0.2).item()
    )
    assert get_loss("barlow", lambd=0.1)(s, v).item() == pytest.approx(barlow_twins_loss(s, v, lambd=0.1).item())
    assert LOSSES["supcon"](s, v, labels=torch.tensor(LABELS), temperature=0.3).item() == (
        pytest.approx(supcon_loss(s, v, torch.tensor(LABELS), temperature=0.3).item())
    )


def test_unknown_name_lists_known():
    with pytest.raises(ValueError) as err:
        get_loss("nope")
    for name in LOSSES:
        assert name in str(err.value)


def test_unknown_param_names_accepted():
    with pytest.raises(TypeError, match="temperature"):
        get_loss("infonce", temp=0.1)
    with pytest.raises(TypeError):
        get_loss("mse", temperature=0.1)


@pytest.mark.parametrize("name", ["infonce", "softnn", "supcon"])
@pytest.mark.parametrize("bad", [0, -0.1, float("nan")])
def test_bad_temperature(name, bad):
    with pytest.raises(ValueError, match="temperature"):
        get_loss(name, temperature=bad)


def test_bad_temperature_direct_call():
    s, v = _pair(14)
    with pytest.raises(ValueError):
        infonce_loss(s, v, temperature=0.0)
    with pytest.raises(ValueError):
        get_loss("infonce", temperature="auto")  # only softnn accepts 'auto'


def test_supcon_without_labels_raises():
    s, v = _pair(15)
    with pytest.raises(ValueError, match="labels"):
        get_loss("supcon")(s, v)
    with pytest.raises(ValueError, match="labels"):
        supcon_loss(s, v, None)


@pytest.mark.parametrize("name", list(LOSSES))
def test_mismatched_dims_raise(name):
    s = torch.randn(N, D)
    v = torch.randn(N, D + 3)
    with pytest.raises(ValueError) as err:
        get_loss(name)(s, v, labels=torch.tensor(LABELS))
    assert str((N, D)) in str(err.value) and str((N, D + 3)) in str(err.value)


def test_module_exports():
    for name in L.__all__:
        assert hasattr(L, name)
