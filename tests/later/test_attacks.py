"""StolenEncoder and Cont-Steal through encsteal.attack.steal: what the victim is sent and how it is
counted, the lambda = 0 baseline, the training objective, that the copies move towards the
victim, determinism, and bad configurations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from encsteal.api import BudgetExceeded, EncoderAPI
from encsteal.attack import ALL_LOSSES, StealConfig, build_stolen, make_loss, steal
from encsteal.augment import Augment
from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.fidelity import mean_cosine_similarity
from encsteal.later.attacks import (
    CONTSTEAL_CODE_SETTINGS,
    STOLENENCODER_CODE_SETTINGS,
    contsteal_config,
    stolenencoder_config,
)
from encsteal.losses import LOSSES
from encsteal.models import SmallConvNet, build_encoder

OFF = ResultCache(enabled=False)


class Recorder(nn.Module):
    """A victim that remembers every image it was asked about."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.in_channels, self.input_size, self.rep_dim = encoder.in_channels, encoder.input_size, encoder.rep_dim
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.encoder(x)


@pytest.fixture(scope="module")
def victim() -> nn.Module:
    torch.manual_seed(7)
    return build_encoder("convnet", 1, 28).eval()


@pytest.fixture(scope="module")
def digits():
    d = load("mnist5k", "train")
    return d.images[:160], d.images[3000:3100]


def _small(**kw) -> dict:
    return {"epochs": 2, "batch_size": 16, "lr": 3e-3, **kw}


def _run(victim, images, config, **kw):
    return steal(EncoderAPI(victim), images, config, cache=OFF, device="cpu", progress=False, **kw)


def _weights(result) -> dict[str, torch.Tensor]:
    return result.encoder.state_dict()


def _same(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.float()}


# ---------------------------------------------------------------------------- what is sent, what is counted


def test_stolenencoder_sends_each_plain_image_once(victim, digits):
    images = digits[0][:48]
    rec = Recorder(victim)
    api = EncoderAPI(rec)
    cfg = stolenencoder_config(augment_weight=5.0, views=2, **_small())
    result = steal(api, images, cfg, cache=OFF, device="cpu", progress=False)
    sent = torch.cat(rec.seen)
    assert result.queries == api.queries() == len(sent) == 48
    assert _rows(sent) == _rows(images / 255.0)  # the plain images, no augmentation
    # the stolen encoder saw 1 + k = 3 images per query image per epoch
    assert result.record_images == 48 * 3 * 2


def test_stolenencoder_requery_sends_the_plain_images_every_epoch(victim, digits):
    images = digits[0][:48]
    rec = Recorder(victim)
    cfg = stolenencoder_config(augment_weight=5.0, views=2, requery_every_epoch=True, **_small(epochs=3))
    result = steal(EncoderAPI(rec), images, cfg, cache=OFF, device="cpu", progress=False)
    sent = torch.cat(rec.seen)
    assert result.queries == len(sent) == 48 * 3
    assert _rows(sent) == _rows(images / 255.0)


def test_contsteal_query_once_sends_one_augmented_view_per_image(victim, digits):
    images = digits[0][:48]
    rec = Recorder(victim)
    result = steal(EncoderAPI(rec), images, contsteal_config(**_small()), cache=OFF, device="cpu", progress=False)
    sent = torch.cat(rec.seen)
    assert result.queries == len(sent) == 48
    assert not _rows(sent) & _rows(images / 255.0)  # augmented views, not the plain images
    assert result.record_images == 48 * 2


def test_contsteal_requery_sends_a_fresh_view_every_epoch(victim, digits):
    images = digits[0][:48]
    rec = Recorder(victim)
    cfg = contsteal_config(requery_every_epoch=True, **_small(epochs=3))
    result = steal(EncoderAPI(rec), images, cfg, cache=OFF, device="cpu", progress=False)
    sent = torch.cat(rec.seen)
    assert result.queries == len(sent) == 48 * 3
    assert len(_rows(sent)) == 48 * 3  # every view is new
    assert not _rows(sent) & _rows(images / 255.0)


def test_budget_check_uses_the_documented_counts(victim, digits):
    images = digits[0][:48]
    tight = EncoderAPI(victim, budget=48)
    steal(tight, images, contsteal_config(**_small()), cache=OFF, device="cpu", progress=False)  # fits exactly
    with pytest.raises(BudgetExceeded, match="would send 96 queries"):
        steal(
            EncoderAPI(victim, budget=95),
            images,
            contsteal_config(requery_every_epoch=True, **_small()),
            cache=OFF,
            progress=False,
        )


# ---------------------------------------------------------------------------- the objective


def test_lambda_zero_is_exactly_the_no_augmentation_baseline(victim, digits):
    images = digits[0][:64]
    baseline = StealConfig(loss="stolenencoder", augment="none", seed=3, **_small())
    lam0 = StealConfig(loss="stolenencoder", augment="plain_and_augmented", augment_weight=0.0, seed=3, **_small())
    lam1 = StealConfig(loss="stolenencoder", augment="plain_and_augmented", augment_weight=1.0, seed=3, **_small())
    a, b, c = _run(victim, images, baseline), _run(victim, images, lam0), _run(victim, images, lam1)
    assert _same(a, b) and a.loss_curve == b.loss_curve
    assert not _same(a, c)


def _ref_stolenencoder(out: torch.Tensor, target: torch.Tensor) -> float:
    """mean_i |out_i/|out_i| - target_i/|target_i||, in plain Python."""
    total = 0.0
    for o, t in zip(out.tolist(), target.tolist()):
        no, nt = math.sqrt(sum(x * x for x in o)), math.sqrt(sum(x * x for x in t))
        total += math.sqrt(sum((x / no - y / nt) ** 2 for x, y in zip(o, t)))
    return total / len(out)


def test_first_loss_is_plain_plus_lambda_over_k_times_augmented(victim, digits):
    """One batch, one epoch: the recorded loss is the objective at the initial weights, rebuilt
    here from the same random draws (batch order, then k augmentations)."""
    images = digits[0][:24]
    lam, k, seed = 6.0, 3, 5
    cfg = stolenencoder_config(augment_weight=lam, views=k, seed=seed, epochs=1, batch_size=24)
    api = EncoderAPI(victim)
    result = steal(api, images, cfg, cache=OFF, device="cpu", progress=False)
    stolen, _ = build_stolen(cfg, api, 1, 28)
    gen = torch.Generator().manual_seed(seed)
    x = images[torch.randperm(24, generator=gen)].float() / 255.0
    copies = [Augment()(x, gen) for _ in range(k)]
    with torch.no_grad():
        target = victim(x)
        outs = stolen.train()(torch.cat([x, *copies])).chunk(1 + k)
    want = _ref_stolenencoder(outs[0], target) + lam / k * sum(_ref_stolenencoder(o, target) for o in outs[1:])
    assert result.loss_curve[0] == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------------------- the copies learn


def _agreement(encoder: nn.Module, victim: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return mean_cosine_similarity(encoder.eval()(x), victim(x))


@pytest.mark.parametrize(
    "config",
    [
        stolenencoder_config(augment_weight=1.0, views=1, epochs=3, batch_size=32, lr=3e-3),
        contsteal_config(epochs=3, batch_size=32, lr=3e-3),
    ],
    ids=["stolenencoder", "contsteal"],
)
def test_attacks_move_the_copy_towards_the_victim(victim, digits, config):
    queries, held_out = digits
    api = EncoderAPI(victim)
    result = steal(api, queries, config, cache=OFF, device="cpu", progress=False)
    x = held_out.float() / 255.0
    start, _ = build_stolen(config, api, 1, 28)
    before, after = _agreement(start, victim, x), _agreement(result.encoder, victim, x)
    assert after > before + 0.1, (before, after)
    assert result.loss_curve[-1] < result.loss_curve[0]


def test_same_seed_same_copy(victim, digits):
    images = digits[0][:48]
    cfg = contsteal_config(requery_every_epoch=True, **_small(seed=2))
    a, b = _run(victim, images, cfg), _run(victim, images, cfg)
    assert _same(a, b) and a.loss_curve == b.loss_curve
    other = _run(victim, images, contsteal_config(requery_every_epoch=True, **_small(seed=4)))
    assert not _same(a, other)
    se = stolenencoder_config(augment_weight=2.0, views=2, **_small(seed=2))
    assert _same(_run(victim, images, se), _run(victim, images, se))


def test_other_losses_work_in_the_new_modes(victim, digits):
    images = digits[0][:32]
    for cfg in (
        StealConfig(loss="mse", augment="plain_and_augmented", augment_weight=1.0, views=1, **_small(epochs=1)),
        StealConfig(loss="infonce", augment="independent_views", **_small(epochs=1)),
        StealConfig(loss="contsteal", augment="none", **_small(epochs=1)),
    ):
        assert _run(victim, images, cfg).queries == 32


# ---------------------------------------------------------------------------- configuration


def test_loss_lookup_covers_paper_and_later_losses():
    assert list(ALL_LOSSES) == [*LOSSES, "stolenencoder", "contsteal"]
    s, v = torch.randn(4, 3), torch.randn(4, 3)
    assert make_loss("contsteal", temperature=0.5)(s, v).dim() == 0
    assert make_loss("mse")(s, v).item() == pytest.approx(((s - v) ** 2).mean().item())
    with pytest.raises(ValueError, match="Known losses: mse, infonce.*barlow_official, stolenencoder, contsteal"):
        StealConfig(loss="cosine")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"augment": "plain_and_augmented"}, "needs augment_weight"),
        ({"augment": "plain_and_augmented", "augment_weight": -1.0}, "lambda >= 0"),
        ({"augment": "plain_and_augmented", "augment_weight": float("inf")}, "lambda >= 0"),
        ({"augment": "plain_and_augmented", "augment_weight": True}, "lambda >= 0"),
        ({"augment": "plain_and_augmented", "augment_weight": 1.0, "views": 0}, "views must be > 0"),
        ({"augment": "none", "augment_weight": 1.0}, "only used by augment='plain_and_augmented'"),
        ({"augment": "independent_views", "augment_weight": 0.0}, "only used by augment='plain_and_augmented'"),
        ({"augment": "both"}, "Allowed: none, views, stolen_only, plain_and_augmented, independent_views"),
        ({"loss": "contsteal", "loss_params": {"temperature": 0}}, "temperature"),
        ({"loss": "stolenencoder", "loss_params": {"distance": "l1"}}, "allowed: l2, cosine"),
    ],
)
def test_bad_configs_raise_at_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        StealConfig(**kw)


def test_presets():
    se = stolenencoder_config()
    assert (se.loss, se.loss_params, se.augment, se.augment_weight, se.views) == (
        "stolenencoder",
        {"distance": "l2"},
        "plain_and_augmented",
        20.0,
        1,
    )
    cs = contsteal_config()
    assert (cs.loss, cs.loss_params, cs.augment, cs.requery_every_epoch) == (
        "contsteal",
        {"temperature": 0.07},
        "independent_views",
        False,
    )
    assert stolenencoder_config(**STOLENENCODER_CODE_SETTINGS).optimizer == "sgd"
    assert contsteal_config(**CONTSTEAL_CODE_SETTINGS).batch_size == 100
    with pytest.raises(ValueError, match="fixes loss, loss_params, augment"):
        stolenencoder_config(loss="mse")
    with pytest.raises(ValueError, match="fixes loss, loss_params, augment"):
        contsteal_config(augment="none")
    with pytest.raises(TypeError, match="contsteal.*accepted"):
        make_loss("contsteal", distance="l2")


def test_victim_fixture_is_a_random_convnet(victim):
    assert isinstance(victim, SmallConvNet) and not victim.training
