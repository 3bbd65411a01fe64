"""B4B (arXiv:2310.08571): LSH buckets, coverage, the cost function, per-user transforms, errors."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from encsteal.api import EncoderAPI, QueryContext, UserHistory
from encsteal.later.b4b import (
    B4B,
    LSHCoverage,
    answer_dim,
    b4b_sigma,
    bucket_ids,
    find_b4b,
    lsh_projections,
    query_coverage,
)


class LinearEncoder(nn.Module):
    """A tiny victim: 8x8 grey images -> ``dim``-d representations (a linear map)."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.lin = nn.Linear(64, dim)
        self.in_channels, self.input_size, self.rep_dim = 1, 8, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


class Head(nn.Module):
    def __init__(self, dim: int = 8, out_dim: int = 5):
        super().__init__()
        self.lin, self.out_dim = nn.Linear(dim, out_dim), out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return LinearEncoder().eval()


def _ctx(outputs: torch.Tensor, user: str = "u") -> QueryContext:
    return QueryContext(user, UserHistory(), torch.zeros(len(outputs), 1, 8, 8), outputs)


def _reference_ids(z: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """Bucket ids by plain loops: bit k of a row's id in table t is 1 when z . p_{t,k} > 0."""
    out = np.zeros((len(z), proj.shape[0]), dtype=np.int64)
    for i in range(len(z)):
        for t in range(proj.shape[0]):
            for k in range(proj.shape[2]):
                if float(np.dot(z[i], proj[t, :, k])) > 0:
                    out[i, t] += 1 << k
    return out


def _reference_coverage(z: np.ndarray, proj: np.ndarray) -> float:
    ids = _reference_ids(z, proj)
    return 100.0 * np.mean([len(set(ids[:, t])) / 2 ** proj.shape[2] for t in range(proj.shape[0])])


def test_bucket_ids_are_sign_patterns_of_seeded_gaussian_hyperplanes():
    torch.manual_seed(0)
    proj = lsh_projections(10, 3, 5, seed=7)
    assert proj.shape == (3, 10, 5)
    assert torch.equal(proj, lsh_projections(10, 3, 5, seed=7))
    assert not torch.equal(proj, lsh_projections(10, 3, 5, seed=8))
    z = torch.randn(60, 10)
    assert np.array_equal(bucket_ids(z, proj).numpy(), _reference_ids(z.double().numpy(), proj.numpy()))
    big = lsh_projections(64, 20, 12, seed=0)  # N(0, 1) entries
    assert abs(big.mean().item()) < 0.01 and abs(big.std().item() - 1) < 0.01
    with pytest.raises(ValueError, match="Expected representations"):
        bucket_ids(torch.randn(4, 9), proj)


def test_coverage_of_hand_made_sets():
    torch.manual_seed(0)
    cov = LSHCoverage(n_tables=4, n_hyperplanes=3, seed=1)
    z = torch.randn(1, 6)
    assert cov.coverage("new") == 0.0
    assert cov.update("a", z) == 100.0 / 8  # one point: one bucket of 8 in every table
    assert cov.update("a", z.repeat(5, 1)) == 100.0 / 8  # the same point again adds nothing
    assert cov.update("a", -z) == 200.0 / 8  # -z has the complementary sign pattern
    assert cov.update("b", torch.zeros(3, 6)) == 100.0 / 8  # bucket 0 (no strictly positive side)
    pts = torch.randn(40, 6)
    expected = _reference_coverage(pts.double().numpy(), cov.projections(6).numpy())
    cov.update("c", pts[:15])
    assert cov.update("c", pts[15:]) == pytest.approx(expected)  # cumulative over calls
    assert cov.coverage("c") == pytest.approx(expected)


def test_cost_function_matches_its_formula():
    alpha, beta, lam = 1.0, 80.0, 1e-7
    cs = np.linspace(0, 100, 41)
    formula = [max(lam * (math.exp(math.log(alpha / lam) * c / beta) - 1), 0.0) for c in cs]
    assert np.allclose(b4b_sigma(cs, alpha, beta, lam), formula, rtol=1e-12, atol=0)
    assert b4b_sigma(0.0) == 0.0
    assert b4b_sigma(80.0) == pytest.approx(1.0 - 1e-7, rel=1e-12)  # sigma(beta) = alpha - lam ~ alpha
    assert b4b_sigma(60.0, 0.8, 60.0, 1e-6) == pytest.approx(0.8 - 1e-6, rel=1e-12)
    assert np.all(np.diff(b4b_sigma(cs)) > 0)
    assert isinstance(b4b_sigma(10.0), float)


def test_diverse_queries_get_more_coverage_and_more_noise():
    torch.manual_seed(1)
    diverse = torch.randn(400, 16)
    narrow = diverse[0] + 1e-3 * torch.randn(400, 16)
    b4b = B4B(beta=20.0, transform="none", seed=0)
    noise = {}
    for user, z in (("attacker", diverse), ("legit", narrow)):
        noise[user] = (b4b(z, _ctx(z, user)) - z).std().item()
    assert b4b.coverage("attacker") > 5 * b4b.coverage("legit")
    assert b4b.sigma_history("attacker")[0] > 1e3 * b4b.sigma_history("legit")[0]
    assert noise["attacker"] > 1e3 * noise["legit"]
    assert noise["attacker"] == pytest.approx(b4b.sigma_history("attacker")[0], rel=0.05)


def test_noise_relative_to_reference_std():
    torch.manual_seed(2)
    z = torch.randn(2000, 16)
    b4b = B4B(n_hyperplanes=8, alpha=2.0, beta=50.0, lam=0.5, reference_std=3.0, transform="none")
    noise = b4b(z, _ctx(z)) - z
    c = b4b.coverage("u")
    expected = 0.5 * (math.exp(math.log(2.0 / 0.5) * c / 50.0) - 1)
    assert b4b.sigma_history("u") == [pytest.approx(expected)] and expected > 1
    assert noise.std().item() == pytest.approx(3.0 * expected, rel=0.03)


def test_legit_answers_differ_from_raw_only_by_the_users_affine_map(encoder):
    torch.manual_seed(0)
    x = torch.rand(50, 1, 8, 8)
    b4b = B4B(transform="affine", seed=5)
    api = EncoderAPI(encoder, defenses=[b4b])
    out = api.query(x, "alice")
    with torch.no_grad():
        raw = encoder(x)
    assert b4b.sigma_history("alice")[0] < 1e-5  # near-zero coverage, negligible noise
    assert not torch.allclose(out, raw, atol=1e-2)
    t = b4b.transform_for("alice", 8)
    assert torch.allclose(out, t(raw), atol=1e-4)
    for j in range(8):  # each coordinate is a 1-d affine function of the raw one, slope and shift in (-1, 1)
        slope, shift = np.polyfit(raw[:, j].double().numpy(), out[:, j].double().numpy(), 1)
        assert slope == pytest.approx(t.scale[j].item(), abs=1e-4) and -1 < slope < 1
        assert shift == pytest.approx(t.shift[j].item(), abs=1e-4) and -1 < shift < 1


def test_transforms_are_per_user_secret_and_reproducible():
    torch.manual_seed(0)
    z = torch.randn(6, 5)
    for kind in ("affine", "affine_pad_shuffle", "dense_affine"):
        a = B4B(transform=kind, seed=0)
        ta = a.transform_for("alice", 5)
        assert torch.equal(ta(z), B4B(transform=kind, seed=0).transform_for("alice", 5)(z))
        assert not torch.allclose(ta(z), a.transform_for("bob", 5)(z))
        assert not torch.allclose(ta(z), B4B(transform=kind, seed=1).transform_for("alice", 5)(z))
    assert torch.equal(B4B(transform="none").transform_for("alice", 5)(z), z)

    dense = B4B(transform="dense_affine", seed=3).transform_for("u", 5)
    expected = z.double().numpy() @ dense.matrix.double().numpy() + dense.shift.double().numpy()
    assert np.allclose(dense(z).double().numpy(), expected, atol=1e-5)
    assert dense.matrix.abs().max() <= 1 and dense.shift.abs().max() <= 1

    padded = B4B(transform="affine_pad_shuffle", pad_dim=3, seed=3)
    t = padded.transform_for("u", 5)
    out = t(z)
    assert out.shape == (6, 8) and padded.answer_dim(5) == 8
    assert sorted(t.perm.tolist()) == list(range(8))
    unshuffled = torch.empty_like(out)
    unshuffled[:, t.perm] = out
    assert torch.allclose(unshuffled[:, :5], z * t.scale + t.shift)
    assert torch.equal(unshuffled[:, 5:], t.pad.expand(6, -1))  # constant per user
    assert B4B(transform="affine_pad_shuffle").answer_dim(5) == 10  # default pad: as many as the answer


def test_b4b_is_deterministic_per_seed_and_per_user(encoder):
    torch.manual_seed(0)
    x = torch.rand(30, 1, 8, 8)

    def answers(seed: int, interleave: bool) -> torch.Tensor:
        api = EncoderAPI(encoder, defenses=[B4B(beta=20.0, seed=seed)])
        first = api.query(x, "alice")
        if interleave:
            api.query(torch.rand(30, 1, 8, 8), "bob")  # another user's traffic
        return torch.cat([first, api.query(x.flip(0), "alice")])

    a = answers(3, False)
    assert torch.equal(a, answers(3, True))
    assert not torch.equal(a, answers(4, False))
    assert "seed=3" in repr(B4B(seed=3)) and repr(B4B(seed=3)) == repr(B4B(seed=3))
    assert repr(B4B(reference_std=torch.ones(4))) != repr(B4B(reference_std=torch.ones(4) * 2))


def test_coverage_history_through_the_api_and_hash_source(encoder):
    torch.manual_seed(0)
    x = torch.rand(90, 1, 8, 8)
    head = Head().eval()
    b4b = B4B(n_tables=5, n_hyperplanes=6, seed=2)
    api = EncoderAPI(encoder, head=head, defenses=[b4b])
    sent, curve = query_coverage(api, x, "alice", batch_size=40)
    assert sent == [40, 80, 90] and (sent, curve) == b4b.coverage_history("alice")
    assert curve == sorted(curve)
    with torch.no_grad():
        reps = encoder(x)
    ref = LSHCoverage(5, 6, seed=2)
    assert curve[-1] == pytest.approx(_reference_coverage(reps.double().numpy(), ref.projections(8).numpy()))

    emb = B4B(n_tables=5, n_hyperplanes=6, hash_source="embeddings", seed=2)
    query_coverage(EncoderAPI(encoder, head=head, defenses=[emb]), x, "alice", 90)
    with torch.no_grad():
        heads = head(reps)
    assert emb.coverage("alice") == pytest.approx(
        _reference_coverage(heads.double().numpy(), ref.projections(5).numpy())
    )
    assert find_b4b(api) is b4b and answer_dim(api) == 8
    with pytest.raises(ValueError, match="exactly one B4B"):
        find_b4b(EncoderAPI(encoder))
    assert answer_dim(EncoderAPI(encoder, defenses=[B4B(transform="affine_pad_shuffle", pad_dim=4)])) == 12


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_tables": 0}, "n_tables"),
        ({"n_tables": 2.5}, "n_tables"),
        ({"n_hyperplanes": 21}, "n_hyperplanes must be <= 20"),
        ({"n_hyperplanes": 0}, "n_hyperplanes"),
        ({"alpha": 0.0}, "alpha"),
        ({"beta": -1.0}, "beta"),
        ({"lam": 2.0}, "lam must be < alpha"),
        ({"beta": 0.01}, "overflow"),
        ({"beta": 10.0}, "beyond float32"),
        ({"beta": 30.0, "reference_std": 1e20}, "beyond float32"),
        ({"transform": "rotate"}, "Allowed: none, affine, affine_pad_shuffle, dense_affine"),
        ({"hash_source": "images"}, "Allowed: outputs, embeddings"),
        ({"pad_dim": 3}, "only to transform='affine_pad_shuffle'"),
        ({"transform": "affine_pad_shuffle", "pad_dim": -1}, "pad_dim"),
        ({"reference_std": -1.0}, "reference_std"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        B4B(**kwargs)


def test_bad_inputs_raise():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="lam must be < alpha"):
        b4b_sigma(10.0, alpha=1e-8)
    with pytest.raises(ValueError, match="batch_size"):
        query_coverage(EncoderAPI(LinearEncoder(), defenses=[B4B()]), torch.rand(2, 1, 8, 8), "u", 0)
    with pytest.raises(ValueError, match="reference_std has 3 values"):
        B4B(reference_std=torch.ones(3))(torch.randn(4, 5), _ctx(torch.randn(4, 5)))
