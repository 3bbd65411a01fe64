"""The one training loop (``encsteal.training.fit``): it learns, repeats itself with the same seed,
steps the optimiser and the schedule once per loss, skips empty steps and refuses bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from encsteal.runtime import RunOptions
from encsteal.training import Batch, Fitted, OptimizerSpec, fit

CPU = RunOptions(device="cpu")


def _problem(n: int = 96):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    return x, y


def _fit_regression(seed: int = 0, epochs: int = 6, **kw) -> Fitted:
    x, y = _problem()
    torch.manual_seed(seed)
    model = nn.Linear(4, 1)

    def step(batch: Batch) -> torch.Tensor:
        return F.mse_loss(batch.forward(batch.x).squeeze(1), y[batch.idx])

    return fit(
        model,
        model.parameters(),
        step,
        x,
        optimizer=OptimizerSpec("adam", 0.3),
        epochs=epochs,
        batch_size=16,
        generator=torch.Generator().manual_seed(seed),
        options=CPU,
        progress=False,
        **kw,
    )


def test_loss_decreases_and_the_result_comes_back_on_the_cpu_in_eval_mode():
    fitted = _fit_regression()
    curve = fitted.loss_curve
    assert len(curve) == 6 and curve[-1] < 0.1 * curve[0]
    assert not fitted.model.training and next(fitted.model.parameters()).device.type == "cpu"
    assert fitted.steps == 6 * 96 // 16 and fitted.images == 6 * 96
    rec = fitted.record()
    assert rec["device"] == "cpu" and rec["world_size"] == 1 and rec["amp"] is False and rec["images_per_second"] > 0


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = _fit_regression(0, 2), _fit_regression(0, 2), _fit_regression(1, 2)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert a.loss_curve == b.loss_curve
    assert not torch.equal(a.model.weight, c.model.weight)


def test_each_yielded_loss_gets_its_own_optimiser_and_schedule_step():
    """A step that yields three losses: each is stepped before the step function resumes (the next
    loss sees the new weights), and the cosine spans epochs x batches x 3 steps."""
    w = nn.Parameter(torch.zeros(()))
    model = nn.Module()
    model.w = w
    lr, epochs, n, bs, k = 0.01, 2, 32, 8, 3
    moves: list[float] = []

    def step(batch: Batch):
        for i in range(k):
            before = w.item()
            yield f"loss{i}", 1.0 * w  # constant gradient 1: Adam moves w by about -lr_t per step
            moves.append(before - w.item())

    fitted = fit(
        model,
        [w],
        step,
        torch.zeros(n, 1),
        optimizer=OptimizerSpec("adam", lr),
        epochs=epochs,
        batch_size=bs,
        generator=torch.Generator().manual_seed(0),
        options=CPU,
        steps_per_batch=k,
        progress=False,
    )
    total = epochs * (n // bs) * k
    assert len(moves) == fitted.steps == total
    expected = [lr * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    assert moves == pytest.approx(expected, rel=1e-3, abs=1e-7)  # one step per loss, cosine over all of them
    assert set(fitted.curves) == {"loss0", "loss1", "loss2"} and len(fitted.curves["loss0"]) == epochs


def test_skipped_batches_and_logged_ratios():
    x, y = _problem(40)
    model = nn.Linear(4, 1)

    def step(batch: Batch):
        if len(batch.idx) < 16:  # the last, short batch (drop_last=False)
            return None
        out = batch.forward(batch.x).squeeze(1)
        batch.log("positive", int((out > 0).sum()), len(out))
        return F.mse_loss(out, y[batch.idx])

    fitted = fit(
        model,
        model.parameters(),
        step,
        x,
        optimizer=OptimizerSpec("sgd", 0.01),
        epochs=2,
        batch_size=16,
        generator=torch.Generator().manual_seed(0),
        options=CPU,
        drop_last=False,
        progress=False,
    )
    assert fitted.steps == 2 * 2 and fitted.images == 2 * 32  # 16 + 16 stepped, 8 skipped, per epoch
    assert all(0 <= r <= 1 for r in fitted.curves["positive"])


def test_frozen_parameters_stay_put():
    x, y = _problem()
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    frozen = model[0].weight.detach().clone()

    def step(batch: Batch) -> torch.Tensor:
        return F.mse_loss(batch.model(batch.x).squeeze(1), y[batch.idx])

    fitted = fit(
        model,
        model[1].parameters(),
        step,
        x,
        optimizer=OptimizerSpec("adam", 0.01),
        epochs=1,
        batch_size=32,
        generator=torch.Generator().manual_seed(0),
        options=CPU,
        progress=False,
    )
    assert torch.equal(fitted.model[0].weight, frozen)


def _args(**kw):
    x, _ = _problem(8)
    model = nn.Linear(4, 1)
    base = dict(
        model=model,
        params=model.parameters(),
        step=lambda b: b.model(b.x).pow(2).mean(),
        images=x,
        optimizer=OptimizerSpec("adam", 0.01),
        epochs=1,
        batch_size=4,
        generator=torch.Generator().manual_seed(0),
        options=CPU,
        progress=False,
    )
    return base | kw


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive int"),
        ({"batch_size": -1}, ValueError, "batch_size must be a positive int"),
        ({"steps_per_batch": 0}, ValueError, "steps_per_batch must be a positive int"),
        ({"images": torch.empty(0, 4)}, ValueError, "non-empty tensor"),
        ({"params": []}, ValueError, "at least one parameter"),
        ({"optimizer": "adam"}, TypeError, "OptimizerSpec"),
        ({"step": None}, TypeError, "step must be callable"),
        ({"step": lambda b: b.model(b.x)}, TypeError, "scalar loss tensors"),
        ({"step": lambda b: iter([b.model(b.x).mean(), b.model(b.x).sum()])}, ValueError, "steps_per_batch=1"),
    ],
)
def test_bad_arguments_raise_clearly(change, error, message):
    with pytest.raises(error, match=message):
        fit(**_args(**change))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"name": "lamb"}, "Allowed: adam, sgd, lars"),
        ({"lr": 0.0}, "Learning rate must be > 0"),
        ({"weight_decay": -1.0}, "Weight decay must be >= 0"),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
    ],
)
def test_optimizer_spec_is_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        OptimizerSpec(**kw)


def test_bf16_is_refused_on_the_cpu_before_training():
    with pytest.raises(ValueError, match="bf16"):
        fit(**_args(options=RunOptions(device="cpu", amp=True)))
