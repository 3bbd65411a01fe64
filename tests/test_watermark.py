"""The rotation watermark: rotations, embedding (and its cache), verification, the decision."""

import pytest
import torch

from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.models import SmallConvNet
from encsteal.victims import VictimConfig, train_victim
from encsteal.watermark import (
    WatermarkConfig,
    WatermarkMLP,
    embed_watermark,
    ownership_test,
    rotate,
    rotation_angles,
    rotation_batch,
    train_watermarked_victim,
    watermark_accuracy,
    wilson_interval,
)

WIDTHS = (16, 32, 64, 64)


def test_rotations_match_torchvision_and_rot90():
    from torchvision.transforms.v2 import functional as TF

    x = load("mnist5k", "train").images[:3].float() / 255
    assert torch.equal(
        rotate(x, torch.tensor([90.0, 180.0, 270.0])),
        torch.stack([torch.rot90(x[i], i + 1, dims=(-2, -1)) for i in range(3)]),
    )
    ours = rotate(x, torch.full((3,), 30.0))
    theirs = torch.stack([TF.rotate(xi, 30.0, interpolation=TF.InterpolationMode.BILINEAR) for xi in x])
    assert (ours - theirs).abs().mean() < 0.03  # same direction; interpolation differs at the edges
    assert (rotate(x, torch.full((3,), -30.0)) - theirs).abs().mean() > 0.1


def test_rotation_labels_and_angles():
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1] * 500)
    angles = rotation_angles(labels, "binary", gen)
    assert ((angles >= 0) & (angles < 180))[labels == 0].all() and ((angles >= 180) & (angles < 360))[labels == 1].all()
    assert torch.equal(
        rotation_angles(torch.arange(4), "four_way", gen), torch.tensor([0.0, 90, 180, 270], dtype=torch.float64)
    )
    x = torch.rand(10, 1, 12, 12)
    rx, ry = rotation_batch(x, "four_way", gen)
    assert rx.shape == (40, 1, 12, 12) and torch.equal(ry.bincount(), torch.full((4,), 10))
    rx, ry = rotation_batch(x, "binary", gen, every_class=False)
    assert rx.shape == (10, 1, 12, 12) and torch.equal(ry.bincount(), torch.tensor([5, 5]))
    with pytest.raises(ValueError, match="Allowed: binary, four_way"):
        rotation_batch(x, "eight_way", gen)


def test_bad_configs_raise_with_allowed_values():
    with pytest.raises(ValueError, match="Allowed: binary, four_way"):
        WatermarkConfig(task="mirror")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        WatermarkConfig(fraction=0.0)
    with pytest.raises(ValueError, match="Allowed: prediction, mean, z"):
        ownership_test(0.9, [0.5, 0.55], method="binomial")
    with pytest.raises(ValueError, match="at least 2 reference"):
        ownership_test(0.9, [0.5])


def test_wilson_interval_known_values():
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)


def test_ownership_decision_against_references_not_chance():
    refs = [0.546, 0.553, 0.538, 0.561]
    far = ownership_test(0.80, refs, n_images=2000)
    among = ownership_test(0.55, refs, n_images=2000)
    assert far.stolen and far.p_value < 1e-3 and far.threshold < 0.80
    assert not among.stolen and among.p_value > 0.3
    assert 0.56 < far.threshold < 0.6 and far.threshold == among.threshold
    # an independent model at 54.65% is far above chance but not above the references
    assert not ownership_test(0.5465, refs, n_images=2000).stolen
    # the one-sample t-test against the references' mean is the stricter-looking, looser test
    assert ownership_test(0.56, refs, method="mean").threshold < among.threshold
    # identical references: the std is floored at the binomial standard error
    flat = ownership_test(0.52, [0.5, 0.5, 0.5], n_images=2000)
    assert flat.reference_std == pytest.approx((0.25 / 2000) ** 0.5) and not flat.stolen


def test_watermarked_encoder_scores_high_and_a_random_one_chance(tiny_watermark):
    enc, mlp, held_out, record = tiny_watermark
    assert record["rotation_train_accuracy"][-1] > record["rotation_train_accuracy"][0]
    wm = watermark_accuracy(enc, mlp, held_out)
    assert wm.accuracy > 0.8 and wm.n == 400 and wm.ci_low < wm.accuracy < wm.ci_high
    assert watermark_accuracy(enc, mlp, held_out) == wm  # seeded rotations
    torch.manual_seed(1)
    random = watermark_accuracy(SmallConvNet(1, widths=WIDTHS).eval(), mlp, held_out)
    assert abs(random.accuracy - 0.5) < 0.1
    with pytest.raises(ValueError, match="dimensions"):
        watermark_accuracy(SmallConvNet(1, widths=(8, 8, 8, 8)), mlp, held_out)


def test_embed_watermark_fine_tunes_and_caches(tmp_path):
    cache = ResultCache(tmp_path)
    victim = train_victim(
        VictimConfig(dataset="mnist5k", num_train=256, epochs=1, batch_size=64), cache, device="cpu", progress=False
    )
    cfg = WatermarkConfig(epochs=1, batch_size=64, fraction=0.5)
    wm = embed_watermark(victim, cfg, cache, device="cpu", progress=False)
    assert wm.record["watermark_images"] == 128 and isinstance(wm.mlp, WatermarkMLP)
    changed = any(
        not torch.equal(a, b) for a, b in zip(wm.encoder.state_dict().values(), victim.encoder.state_dict().values())
    )
    assert changed
    again = embed_watermark(victim, cfg, cache, device="cpu", progress=False)
    for a, b in zip(again.mlp.state_dict().values(), wm.mlp.state_dict().values()):
        assert torch.equal(a, b)
    assert len(list((tmp_path / "watermarked_victim").glob("*.json"))) == 1
    # the official optimiser never trained the MLP: train_mlp=False keeps it at its initialisation
    frozen = embed_watermark(
        victim,
        WatermarkConfig(epochs=1, batch_size=64, fraction=0.5, train_mlp=False),
        cache,
        device="cpu",
        progress=False,
    )
    torch.manual_seed(0)
    init = WatermarkMLP(victim.encoder.rep_dim, (256, 128), 2)
    for a, b in zip(frozen.mlp.state_dict().values(), init.state_dict().values()):
        assert torch.equal(a, b)


def test_watermark_during_training_from_scratch(tmp_path):
    cfg = VictimConfig(dataset="mnist5k", num_train=128, epochs=1, batch_size=64)
    wm = train_watermarked_victim(
        cfg, WatermarkConfig(epochs=1, batch_size=64), ResultCache(tmp_path), device="cpu", progress=False
    )
    assert len(wm.record["rotation_loss"]) == 1 and wm.victim.config == cfg
    with pytest.raises(ValueError, match="SimCLR"):
        train_watermarked_victim(VictimConfig(method="supervised"), WatermarkConfig(), ResultCache(tmp_path))
