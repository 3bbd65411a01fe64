"""The attack: it improves the stolen encoder, counts queries honestly, fails clearly."""

import pytest
import torch

from encsteal.api import BudgetExceeded, EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.fidelity import mean_cosine_similarity
from encsteal.models import LinearClassifier, SmallConvNet


@pytest.fixture(scope="module")
def victim():
    torch.manual_seed(123)
    return SmallConvNet(1).eval()


@pytest.fixture(scope="module")
def digits():
    d = load("mnist5k", "train")
    return d.subset(torch.arange(0, 4000, 10)), d.subset(torch.arange(5, 4000, 10))


def _cfg(**kw):
    return StealConfig(**{"loss": "mse", "epochs": 3, "batch_size": 64, "lr": 3e-3, **kw})


def test_stealing_moves_the_copy_towards_the_victim(victim, digits, tmp_path):
    queries, held_out = digits
    api = EncoderAPI(victim)
    result = steal(api, queries, _cfg(epochs=6), cache=ResultCache(tmp_path), device="cpu", progress=False)
    torch.manual_seed(0)
    fresh = SmallConvNet(1).eval()
    x = held_out.float()
    with torch.no_grad():
        before = mean_cosine_similarity(fresh(x), victim(x))
        after = mean_cosine_similarity(result.encoder(x), victim(x))
    assert after > before + 0.1
    assert result.queries == len(queries) == api.queries()
    assert result.loss_curve[-1] < result.loss_curve[0]


def test_query_once_vs_requery_every_epoch_counts(victim, digits, tmp_path):
    queries, _ = digits
    small = queries.subset(torch.arange(64))
    once = steal(EncoderAPI(victim), small, _cfg(), cache=ResultCache(enabled=False), device="cpu", progress=False)
    again = steal(
        EncoderAPI(victim),
        small,
        _cfg(requery_every_epoch=True),
        cache=ResultCache(enabled=False),
        device="cpu",
        progress=False,
    )
    views = steal(
        EncoderAPI(victim),
        small,
        _cfg(augment="views", views=2),
        cache=ResultCache(enabled=False),
        device="cpu",
        progress=False,
    )
    assert (once.queries, again.queries, views.queries) == (64, 64 * 3, 128)
    assert again.spent == pytest.approx(3 * once.spent)


def test_cache_replays_result(victim, digits, tmp_path):
    small = digits[0].subset(torch.arange(64))
    a = steal(EncoderAPI(victim), small, _cfg(), cache=ResultCache(tmp_path), device="cpu", progress=False)
    b = steal(EncoderAPI(victim), small, _cfg(), cache=ResultCache(tmp_path), device="cpu", progress=False)
    assert b.from_cache and b.queries == a.queries

    api = EncoderAPI(victim)
    steal(api, small, _cfg(), cache=ResultCache(tmp_path), device="cpu", progress=False)
    steal(api, small, _cfg(loss="infonce"), cache=ResultCache(tmp_path), device="cpu", progress=False)
    assert api.queries() == 2 * len(small), "a cached attack still counts its queries"
    fresh = EncoderAPI(victim)
    c = steal(fresh, small, _cfg(loss="infonce"), cache=ResultCache(tmp_path), device="cpu", progress=False)
    assert c.from_cache, "without a defense, earlier queries of the user do not change the cache key"
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(a.encoder(x), b.encoder(x))


def test_supervised_api_baseline_learns_labels(victim, digits):
    torch.manual_seed(0)
    clf = LinearClassifier(256, 10).eval()
    queries = digits[0].subset(torch.arange(128))
    api = EncoderAPI(victim, clf, mode="supervised", output="probabilities")
    res = steal(api, queries, _cfg(epochs=2), cache=ResultCache(enabled=False), device="cpu", progress=False)
    assert res.queries == 128 and res.encoder.rep_dim == 256


def test_errors(victim, digits):
    small = digits[0].subset(torch.arange(32))
    with pytest.raises(ValueError, match="Known losses: mse, infonce"):
        StealConfig(loss="cosine")
    with pytest.raises(BudgetExceeded, match="would send 96 queries"):
        steal(
            EncoderAPI(victim, budget=50),
            small,
            _cfg(requery_every_epoch=True),
            cache=ResultCache(enabled=False),
            progress=False,
        )
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        steal(EncoderAPI(victim), torch.rand(4, 28, 28), _cfg(), progress=False)
    with pytest.raises(ValueError, match="pass query_labels"):
        steal(EncoderAPI(victim), small, _cfg(loss="supcon"), progress=False)


def test_stealing_a_trained_victim_beats_random_initialisation(tmp_path):
    """Probe accuracy (few labels) of the copy rises above the same architecture at random init."""
    from encsteal.probe import evaluate_encoder
    from encsteal.victims import VictimConfig, fit_victim

    train, test = load("mnist5k", "train"), load("mnist5k", "test")
    victim = fit_victim(
        VictimConfig(method="supervised", dataset="mnist5k", num_train=1000, epochs=6, batch_size=64, lr=3e-3),
        train.subset(torch.arange(1000)),
        device="cpu",
        progress=False,
    )
    queries = train.subset(torch.arange(1000, 2000))
    result = steal(
        EncoderAPI(victim.encoder), queries, _cfg(epochs=8), cache=ResultCache(tmp_path), device="cpu", progress=False
    )
    splits = {
        "probe_train": train.subset(torch.arange(2000, 2400)),
        "probe_val": train.subset(torch.arange(2400, 2600)),
        "probe_test": test,
    }
    torch.manual_seed(0)
    random_acc = evaluate_encoder(SmallConvNet(1), splits, per_class=10).accuracy
    stolen_acc = evaluate_encoder(result.encoder, splits, per_class=10).accuracy
    victim_acc = evaluate_encoder(victim.encoder, splits, per_class=10).accuracy
    print(f"few-label probe: random {random_acc:.3f}, stolen {stolen_acc:.3f}, victim {victim_acc:.3f}")
    assert stolen_acc > random_acc + 0.05, (random_acc, stolen_acc, victim_acc)
