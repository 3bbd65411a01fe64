"""Shared test settings: one torch thread (a loaded 2-core machine is far steadier with one)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


WATERMARK_WIDTHS = (16, 32, 64, 64)


@pytest.fixture(scope="session")
def tiny_watermark():
    """A small encoder fine-tuned with the rotation watermark on 512 MNIST digits: (encoder, its
    watermark MLP, 400 held-out digits, the training record)."""
    from encsteal.data import load
    from encsteal.models import ProjectionHead, SmallConvNet
    from encsteal.watermark import WatermarkConfig, fit_watermark

    d = load("mnist5k", "train")
    torch.manual_seed(0)
    enc, head = SmallConvNet(1, widths=WATERMARK_WIDTHS), ProjectionHead(WATERMARK_WIDTHS[-1], 64, 32)
    cfg = WatermarkConfig(epochs=5, batch_size=128, lr=1e-2, rotation_steps=3, hidden=(64, 32))
    enc, head, mlp, record = fit_watermark(enc, head, d.images[:512], cfg, 0.2, device="cpu", progress=False)
    return enc, mlp, d.images[3000:3400], record
