"""Stolen copies and baselines never start from a victim's initial weights by accident of seeds."""

import pytest
import torch

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, build_stolen
from encsteal.runtime import seed_everything
from encsteal.seeds import derive_seed, random_init_encoder
from encsteal.victims import VictimConfig, build_victim_modules


def _victim_init(seed):
    seed_everything(seed)
    encoder, head = build_victim_modules(VictimConfig(seed=seed), 1, 28, 10)
    return encoder, head


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stolen_and_random_init_differ_from_the_victims_initialisation(seed):
    victim, head = _victim_init(seed)
    api = EncoderAPI(victim.eval(), head.eval())
    stolen, _ = build_stolen(StealConfig(loss="mse", seed=seed), api, 1, 28)
    assert not _same(stolen, victim)
    assert not _same(random_init_encoder("convnet", 1, 28, seed), victim)
    assert not _same(random_init_encoder("convnet", 1, 28, seed), stolen)
    again, _ = build_stolen(StealConfig(loss="mse", seed=seed), api, 1, 28)
    assert _same(stolen, again)  # still deterministic
    same_init, _ = build_stolen(StealConfig(loss="mse", seed=seed + 5, init_seed=seed), api, 1, 28)
    assert _same(same_init, victim)  # the explicit same-initialisation arm


def test_streams_are_distinct_and_checked():
    seeds = {derive_seed(s, stream) for s in range(20) for stream in ("stolen", "random_init", "queries")}
    assert len(seeds) == 60 and not seeds & set(range(1000))
    with pytest.raises(ValueError, match="Known: stolen"):
        derive_seed(0, "stolne")
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(-1, "stolen")
