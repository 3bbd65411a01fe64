"""GPU-facing run options on the CPU: bf16 refused, the DataLoader path equals the in-memory path,
LARS scales its steps, and the schedule is stepped per batch over the whole run."""

from __future__ import annotations

import math

import pytest
import torch

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.models import SmallConvNet
from encsteal.runtime import RunOptions, autocast, choose_loader, prepare_device, resolve_device
from encsteal.training import LARS, BatchSource, cosine_with_warmup, make_optimizer
from encsteal.victims import VictimConfig, fit_victim


def test_bf16_is_refused_on_the_cpu():
    with pytest.raises(ValueError, match="only supported on CUDA.*50x slower"):
        prepare_device(RunOptions(device="cpu", amp=True))
    with pytest.raises(ValueError, match="amp=True"):
        autocast(torch.device("cpu"), True)
    data = load("mnist5k", "train").subset(torch.arange(32))
    with pytest.raises(ValueError, match="bf16"):
        fit_victim(
            VictimConfig(dataset="mnist5k", num_train=32, epochs=1, batch_size=16),
            data,
            progress=False,
            options=RunOptions(device="cpu", amp=True),
        )
    with autocast(torch.device("cpu"), False):
        pass  # fp32: a no-op context


def test_options_are_checked_and_only_bf16_enters_cache_keys(monkeypatch):
    with pytest.raises(ValueError, match="Allowed: auto, memory, dataloader"):
        RunOptions(loader="disk")
    with pytest.raises(ValueError, match="num_workers"):
        RunOptions(num_workers=-1)
    assert RunOptions(num_workers=8, channels_last=False).cache_tag() is None
    assert RunOptions(amp=True).cache_tag() == {"amp": "bf16"}
    assert choose_loader(RunOptions(), torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.device("cpu")) == "memory"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_dataloader_path_gives_the_same_steal_as_the_memory_path():
    torch.manual_seed(0)
    victim = SmallConvNet(1).eval()
    queries = load("mnist5k", "train").subset(torch.arange(48))
    cfg = StealConfig(loss="infonce", epochs=2, batch_size=16, augment="stolen_only")
    runs = [
        steal(
            EncoderAPI(victim),
            queries,
            cfg,
            cache=ResultCache(enabled=False),
            progress=False,
            options=RunOptions(device="cpu", loader=loader, num_workers=workers),
        )
        for loader, workers in (("memory", 0), ("dataloader", 1))
    ]
    a, b = (r.encoder.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].loss_curve == runs[1].loss_curve


def test_batch_source_modes_yield_the_same_batches():
    images = torch.arange(10 * 3 * 4 * 4, dtype=torch.uint8).reshape(10, 3, 4, 4)
    batches = [torch.tensor([3, 1]), torch.tensor([9, 0, 5])]
    mem = list(BatchSource(images, torch.device("cpu"), "memory").fetch(batches))
    dl = list(BatchSource(images, torch.device("cpu"), "dataloader", num_workers=0).fetch(batches))
    assert all(torch.equal(x, images[i]) and torch.equal(x, y) for x, y, i in zip(mem, dl, batches))


def test_lars_step_is_bounded_by_the_trust_ratio():
    w = torch.nn.Parameter(torch.ones(4) / 2)  # norm 1
    opt = LARS([w], lr=10.0, momentum=0.0, trust_coefficient=0.001)
    w.grad = torch.tensor([3.0, 0.0, 0.0, 4.0])  # norm 5
    before = w.detach().clone()
    opt.step()
    assert (w.detach() - before).norm().item() == pytest.approx(0.001, rel=1e-4)  # trust x |w|, not lr x |g|
    small = torch.nn.Parameter(torch.ones(4) / 2)
    opt = LARS([small], lr=1e-6, momentum=0.0)
    small.grad = torch.tensor([3.0, 0.0, 0.0, 4.0])
    opt.step()  # the clip: a small lr is not scaled up
    assert (small.detach() - 0.5).norm().item() == pytest.approx(5e-6, rel=1e-3)
    assert isinstance(make_optimizer([small], "lars", 0.1, 0.0), LARS)
    with pytest.raises(ValueError, match="Allowed: adam, sgd, lars"):
        make_optimizer([small], "lamb", 0.1, 0.0)


def test_cosine_is_stepped_per_batch_over_the_whole_run():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, total_steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # monotone after warm-up: no per-epoch restarts


def test_streamed_fingerprint_equals_the_cache_fingerprint():
    from encsteal.attack import stream_fingerprint
    from encsteal.cache import tensor_fingerprint

    x = torch.randint(0, 255, (900, 3, 8, 8), dtype=torch.uint8)
    assert stream_fingerprint(x, rows=100) == tensor_fingerprint(x)  # same cache keys, no full copy
