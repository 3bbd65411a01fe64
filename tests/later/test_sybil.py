"""The sybil attacker against B4B (arXiv:2310.08571): the affine map, the facade, query counting."""

import numpy as np
import pytest
import torch
from torch import nn

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig
from encsteal.cache import ResultCache
from encsteal.later.b4b import B4B
from encsteal.later.sybil import SybilAPI, fit_affine_map, mapping_quality, split_sizes, sybil_steal


class LinearEncoder(nn.Module):
    """A tiny victim: 8x8 grey images -> ``dim``-d representations (a linear map)."""

    def __init__(self, dim: int = 6):
        super().__init__()
        self.lin = nn.Linear(64, dim)
        self.in_channels, self.input_size, self.rep_dim = 1, 8, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return LinearEncoder().eval()


def test_map_recovers_a_known_affine_relation_exactly():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    w, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    m = fit_affine_map(x, x @ w + b)
    assert torch.allclose(m.weight, w, atol=1e-10) and torch.allclose(m.bias, b, atol=1e-10)

    # constant (padded) and permuted source columns: still exact on new rows
    pad, perm = torch.randn(1, 3, generator=g, dtype=torch.float64), torch.randperm(9, generator=g)
    source = torch.cat([x, pad.expand(40, -1)], dim=1)[:, perm]
    m = fit_affine_map(source, x @ w + b)
    new = torch.randn(10, 6, generator=g, dtype=torch.float64)
    mapped = m(torch.cat([new, pad.expand(10, -1)], dim=1)[:, perm].float())
    assert torch.allclose(mapped.double(), new @ w + b, atol=1e-4)


def test_ridge_map_is_the_closed_form_on_centred_data():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 3))
    xc, yc = x - x.mean(0), y - y.mean(0)
    w = np.linalg.solve(xc.T @ xc + 2.0 * np.eye(5), xc.T @ yc)
    m = fit_affine_map(torch.from_numpy(x), torch.from_numpy(y), ridge=2.0)
    assert np.allclose(m.weight.numpy(), w, atol=1e-10)
    assert np.allclose(m.bias.numpy(), y.mean(0) - x.mean(0) @ w, atol=1e-10)


def test_split_sizes_are_contiguous_near_equal_shares():
    for n in (0, 1, 7, 64, 1025):
        for k in (1, 2, 3, 5):
            assert split_sizes(n, k) == [len(p) for p in np.array_split(np.arange(n), k)]


def test_pooled_answers_align_with_account_zero_and_queries_are_counted(encoder):
    torch.manual_seed(0)
    b4b = B4B(transform="dense_affine", seed=4)
    api = EncoderAPI(encoder, defenses=[b4b])
    facade = SybilAPI(api, n_accounts=3)
    quality = facade.calibrate(torch.rand(30, 1, 8, 8), holdout=0.2)
    assert set(quality) == {"attacker#1", "attacker#2"} and min(quality.values()) > 0.9999
    x = torch.rand(10, 1, 8, 8)
    out = facade.query(x)
    with torch.no_grad():
        raw = encoder(x)
    assert torch.allclose(out, b4b.transform_for("attacker#0", 6)(raw), atol=1e-3)  # account 0's space
    naive = b4b.transform_for("attacker#1", 6)(raw[4:7])  # account 1's raw answers, unmapped
    assert mapping_quality(naive, out[4:7]) < 0.9
    assert facade.account_queries() == {"attacker#0": 34, "attacker#1": 33, "attacker#2": 33}
    assert facade.queries() == 100 == sum(api.queries(a) for a in facade.accounts)
    assert facade.overlap_queries == 90 and facade.output_dim == 6
    assert facade.spent() == pytest.approx(0.1)


def test_sybil_steal_counts_every_account_and_replays_from_the_cache(encoder, tmp_path):
    torch.manual_seed(0)
    cfg = StealConfig(loss="mse", epochs=1, batch_size=32, lr=1e-3)
    x, overlap = torch.rand(64, 1, 8, 8), torch.rand(20, 1, 8, 8)

    def run():
        api = EncoderAPI(encoder, defenses=[B4B(transform="affine_pad_shuffle", pad_dim=3, seed=1)])
        result = sybil_steal(
            api, x, overlap, cfg, n_accounts=2, cache=ResultCache(tmp_path), device="cpu", progress=False
        )
        return api, result

    api, first = run()
    assert first.stealing_queries == 64 and first.overlap_queries == 40 and first.total_queries == 104
    assert first.account_queries == {"attacker#0": 52, "attacker#1": 52}
    assert sum(api.queries(a) for a in ("attacker#0", "attacker#1")) == first.total_queries
    assert first.steal.encoder(x[:2]).shape == (2, 9)  # account 0's padded answer size
    api, again = run()
    assert again.steal.from_cache and again.account_queries == first.account_queries
    assert min(again.mapping_quality.values()) > 0.999


def _zscore(z: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Reference: z-score ``z`` with the mean and population std of ``ref``'s columns (numpy)."""
    return (z - ref.mean(axis=0)) / ref.std(axis=0)


def test_standardised_answers_undo_a_per_coordinate_affine_transform(encoder):
    """One account, B4B's per-coordinate affine transform and no noise to speak of (beta far above
    any coverage): the z-scored answers are the z-scored victim outputs up to each coordinate's
    sign (the sign of the secret scale), so inner products between answers are the victim's."""
    torch.manual_seed(0)
    b4b = B4B(transform="affine", beta=1000.0, seed=2)
    facade = SybilAPI(EncoderAPI(encoder, defenses=[b4b]), n_accounts=1, standardize=True)
    overlap, x = torch.rand(50, 1, 8, 8), torch.rand(12, 1, 8, 8)
    assert facade.calibrate(overlap) == {}
    out = facade.query(x).double().numpy()
    with torch.no_grad():
        raw_overlap, raw_x = encoder(overlap).double().numpy(), encoder(x).double().numpy()
    sign = np.sign(b4b.transform_for("attacker#0", 6).scale.double().numpy())
    expected = _zscore(raw_x, raw_overlap) * sign
    assert np.allclose(out, expected, atol=1e-3)
    assert np.allclose(out @ out.T, _zscore(raw_x, raw_overlap) @ _zscore(raw_x, raw_overlap).T, atol=1e-2)
    assert facade.queries() == 62 and facade.overlap_queries == 50


def test_standardised_sybil_answers_are_account_zeros_z_scores(encoder):
    """Several accounts: answers are mapped into account 0's space, then z-scored with account 0's
    statistics on the overlap images."""
    torch.manual_seed(0)
    b4b = B4B(transform="dense_affine", beta=1000.0, seed=5)
    plain = SybilAPI(EncoderAPI(encoder, defenses=[b4b]), n_accounts=2)
    facade = SybilAPI(
        EncoderAPI(encoder, defenses=[B4B(transform="dense_affine", beta=1000.0, seed=5)]), 2, standardize=True
    )
    overlap, x = torch.rand(40, 1, 8, 8), torch.rand(9, 1, 8, 8)
    plain.calibrate(overlap)
    facade.calibrate(overlap)
    with torch.no_grad():
        t0 = b4b.transform_for("attacker#0", 6)
        ref = t0(encoder(overlap)).double().numpy()
        expected = _zscore(t0(encoder(x)).double().numpy(), ref)
    assert np.allclose(facade.query(x).double().numpy(), expected, atol=1e-3)
    assert plain.describe()["sybil"]["standardize"] is False
    assert isinstance(facade.describe()["sybil"]["standardize"], str)


def test_bad_inputs_raise(encoder):
    torch.manual_seed(0)
    api = EncoderAPI(encoder, defenses=[B4B()])
    with pytest.raises(ValueError, match="n_accounts"):
        SybilAPI(api, n_accounts=0)
    with pytest.raises(ValueError, match="ridge"):
        SybilAPI(api, ridge=-1.0)
    with pytest.raises(RuntimeError, match="calibrate"):
        SybilAPI(api).query(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="serves user 'attacker'"):
        SybilAPI(api).queries("someone")
    with pytest.raises(ValueError, match="leave none to fit"):
        SybilAPI(api).calibrate(torch.rand(1, 1, 8, 8), holdout=0.6)
    with pytest.raises(ValueError, match="holdout"):
        SybilAPI(api).calibrate(torch.rand(4, 1, 8, 8), holdout=1.5)
    with pytest.raises(ValueError, match="standardize must be True or False"):
        SybilAPI(api, standardize="yes")
    with pytest.raises(ValueError, match="at least 2 overlap images"):
        SybilAPI(api, n_accounts=1, standardize=True).calibrate(torch.rand(1, 1, 8, 8))
    with pytest.raises(RuntimeError, match="standardised answers"):
        SybilAPI(api, n_accounts=1, standardize=True).query(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="same N"):
        fit_affine_map(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least one"):
        fit_affine_map(torch.randn(0, 3), torch.randn(0, 3))
    head = nn.Linear(6, 3)
    head.out_dim = 3
    with pytest.raises(ValueError, match="SSL API"):
        SybilAPI(EncoderAPI(encoder, head=head, mode="supervised", output="logits"))
