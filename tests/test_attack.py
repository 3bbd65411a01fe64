"""The attack: it improves the stolen encoder, counts queries honestly, fails clearly."""

import pytest
import torch

from encsteal.api import BudgetExceeded, EncoderAPI
from encsteal.attack import StealConfig, outlier_answers, steal
from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.defenses import DuplicateDetector
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


def test_outlier_answers_finds_the_detectors_poison_whatever_its_share():
    gen = torch.Generator().manual_seed(0)
    genuine = torch.rand(200, 64, generator=gen) * 2  # norms about 9
    poison = 1000 + 0.5 * torch.randn(200, 64, generator=gen)  # the detector's N(1000, 0.5^2)
    assert not outlier_answers(genuine, 10.0).any()  # one cluster: nothing dropped
    assert not outlier_answers(poison, 10.0).any()  # all poisoned: nothing to tell apart
    for n_poison in (1, 100, 190):  # a few, half, nearly all answers poisoned
        answers = torch.cat([genuine[: 200 - n_poison], poison[:n_poison]])[torch.randperm(200, generator=gen)]
        flags = outlier_answers(answers, 10.0)
        assert torch.equal(flags, answers.norm(dim=1) > 1000)
    assert not outlier_answers(genuine[:1], 10.0).any()
    zeros = torch.cat([genuine[:150], torch.zeros(50, 64)])  # the detector's "zeros" poison
    assert torch.equal(outlier_answers(zeros, 10.0), torch.arange(200) >= 150)
    both = torch.cat([genuine[:100], torch.zeros(50, 64), poison[:50]])
    assert torch.equal(outlier_answers(both, 10.0), torch.arange(200) >= 100)
    with pytest.raises(ValueError, match="ratio must be > 1"):
        outlier_answers(genuine, 1.0)


def test_outlier_dropping_attacker_trains_on_the_unpoisoned_answers_only(victim, digits):
    small = digits[0].subset(torch.arange(96))
    stream = torch.cat([small.images, small.images[:32]])  # 32 exact duplicates at the end

    def detector():
        return DuplicateDetector(threshold=0.999, seed=1)

    probe = detector()
    EncoderAPI(victim, defenses=[probe]).query(stream, "u")
    _, flags = probe.decisions("u")
    assert flags[96:].all() and 0 < int(flags.sum()) < len(stream)  # the duplicates, maybe a few more
    cfg = _cfg(epochs=2, drop_outlier_ratio=10.0)
    off = ResultCache(enabled=False)
    defended = EncoderAPI(victim, defenses=[detector()])
    dropped = steal(defended, stream, cfg, user="u", cache=off, device="cpu", progress=False)
    assert dropped.queries == len(stream)  # dropped answers were still paid for
    # the same attack on the undefended API with only the unflagged images trains the same copy
    clean = steal(EncoderAPI(victim), stream[~flags], cfg, cache=off, device="cpu", progress=False)
    naive = steal(
        EncoderAPI(victim, defenses=[detector()]), stream, _cfg(epochs=2), user="u", cache=off, progress=False
    )
    x = digits[1].float()[:16]
    with torch.no_grad():
        assert torch.allclose(dropped.encoder(x), clean.encoder(x), atol=1e-5)
        assert not torch.allclose(naive.encoder(x), clean.encoder(x), atol=1e-2)


def test_drop_outlier_ratio_is_checked():
    with pytest.raises(ValueError, match="drop_outlier_ratio must be a number > 1"):
        StealConfig(drop_outlier_ratio=1.0)
    with pytest.raises(ValueError, match="requery_every_epoch"):
        StealConfig(drop_outlier_ratio=10.0, requery_every_epoch=True)
    assert StealConfig().drop_outlier_ratio is None


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
