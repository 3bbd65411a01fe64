"""The paper's ImageNet victim: Facebook's public SimSiam ResNet-50 (100 epochs, batch 256).

Dziedzic et al. (2022) steal the encoder of SimSiam's published checkpoint
(book/paper_setup.md#setup-victim-imagenet): a
torchvision ResNet-50 whose 2048-d pooled representation is what the API returns (the projector
``encoder.fc`` and the predictor are dropped). This module fetches that checkpoint only when the
user opts in, checks it, and loads it strictly:

* **Download is opt-in** (``download=True``; ``python -m encsteal.full --download-weights``).
  Otherwise a missing file is an error that says where to put it and how to fetch it.
* **Checksum.** No official sha256 is published for this file. Pass ``sha256=`` (or
  ``victim.sha256`` in ``params/full.yaml``) to pin it; without one, the sha256 is computed on the
  first download and recorded next to the file (``<file>.sha256``, trust on first use), and every
  later load verifies the file against that record.
* **Safe loading.** ``torch.load(weights_only=True)``: the checkpoint is read without running
  pickled code (a file that needs arbitrary objects is refused).
* **Strict keys.** ``module.encoder.<name>`` becomes torchvision's ``<name>``; ``encoder.fc.*``
  (the 3-layer projector) and ``module.predictor.*`` are dropped; any other key, or a missing
  ResNet-50 key, is an error naming the keys. The official stealing code loads its victims with
  ``strict=False``, which silently leaves random weights on a mismatch (book/paper_setup.md#setup-official-code item 6).

Licence: the SimSiam weights are released by Facebook Research under CC-BY-NC 4.0.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from encsteal.cache import file_sha256
from encsteal.models.resnet import ImageNetResNet50

SIMSIAM_URL = "https://dl.fbaipublicfiles.com/simsiam/models/100ep-256bs/pretrain/checkpoint_0099.pth.tar"
SIMSIAM_FILE = "simsiam_100ep_256bs_checkpoint_0099.pth.tar"
#: No sha256 is published with the checkpoint; pin one here (or in the YAML) once verified.
SIMSIAM_SHA256: str | None = None
ENCODER_PREFIX = "module.encoder."
DROPPED_PREFIXES = ("module.encoder.fc.", "module.predictor.")


def default_path(root: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint is kept: ``root`` or ``$ENCSTEAL_WEIGHTS`` or ``~/.cache/encsteal/weights``."""
    base = (
        Path(root)
        if root is not None
        else Path(os.environ.get("ENCSTEAL_WEIGHTS", Path.home() / ".cache" / "encsteal" / "weights"))
    )
    return base / SIMSIAM_FILE


def convert_simsiam_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SimSiam's DDP key names -> torchvision ResNet-50 names (no ``fc``); strict about the rest.

    Raises:
        KeyError: a key is neither an encoder key nor a dropped projector/predictor key.
    """
    out, unknown = {}, []
    for key, value in state.items():
        if key.startswith(DROPPED_PREFIXES):
            continue
        if key.startswith(ENCODER_PREFIX):
            out[key[len(ENCODER_PREFIX) :]] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f"Unexpected keys in the SimSiam checkpoint (neither {ENCODER_PREFIX}* nor "
            f"{' / '.join(DROPPED_PREFIXES)}*): {unknown[:8]}{' ...' if len(unknown) > 8 else ''}"
        )
    return out


def load_state_into(model: ImageNetResNet50, state: Mapping[str, torch.Tensor]) -> ImageNetResNet50:
    """Strict load with an error that lists missing and unexpected keys."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise KeyError(
            f"SimSiam encoder keys do not match torchvision's ResNet-50: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}. Refusing a partial load."
        )
    model.load_state_dict(state, strict=True)
    return model


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a SimSiam checkpoint, read with ``weights_only=True``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} is not a plain tensor checkpoint: torch.load(weights_only=True) refused "
            f"it ({str(err).splitlines()[0]}). Not loading it with pickle."
        ) from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors (expected a 'state_dict' entry).")
    return dict(state)


def _recorded_sha(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(path: Path, sha256: str | None) -> str:
    """Check ``path`` against ``sha256`` (or the recorded one; record it on first use)."""
    actual = file_sha256(path)
    record = _recorded_sha(path)
    expected = sha256 or (record.read_text().split()[0] if record.exists() else None)
    if expected is None:
        record.write_text(f"{actual}  {path.name}\n")
        return actual
    if actual.lower() != expected.lower():
        raise ValueError(
            f"Checksum mismatch for {path}: sha256 {actual}, expected {expected}. The file is "
            "corrupted or not the SimSiam checkpoint; delete it and download it again."
        )
    if not record.exists():
        record.write_text(f"{actual}  {path.name}\n")
    return actual


def fetch_simsiam(
    path: str | os.PathLike | None = None, download: bool = False, sha256: str | None = None, url: str = SIMSIAM_URL
) -> Path:
    """The checkpoint's local path, downloading it first only if ``download`` (opt-in)."""
    path = Path(path) if path is not None else default_path()
    sha256 = sha256 or SIMSIAM_SHA256
    if not path.exists():
        if not download:
            raise FileNotFoundError(
                f"The SimSiam victim checkpoint is not at {path}. Download it ({url}, ~200 MB, CC-BY-NC 4.0) "
                "with `python -m encsteal.full params/full.yaml --download-weights`, or fetch it yourself "
                f"(e.g. `wget -O {path} {url}`), or point victim.checkpoint in the YAML to your copy."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        torch.hub.download_url_to_file(url, str(tmp), progress=True)
        os.replace(tmp, path)
    verify(path, sha256)
    return path


def load_simsiam_resnet50(
    path: str | os.PathLike | None = None, download: bool = False, sha256: str | None = None
) -> ImageNetResNet50:
    """The SimSiam ResNet-50 encoder (2048-d representation, eval mode) from its checkpoint."""
    path = fetch_simsiam(path, download, sha256)
    model = ImageNetResNet50()
    load_state_into(model, convert_simsiam_state_dict(read_checkpoint(path)))
    return model.eval()


def standin_checkpoint(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write a stand-in with SimSiam's exact key names and shapes (random weights) for tests and
    the ``--tiny`` smoke run: a torchvision ResNet-50 state dict under ``module.encoder.``, the
    3-layer projector ``module.encoder.fc.{0,1,3,4,6,7}`` and the predictor
    ``module.predictor.{0,1,3}``, saved like the real file (``epoch``, ``arch``, ``state_dict``,
    ``optimizer``) as plain tensors and numbers."""
    torch.manual_seed(seed)
    encoder = ImageNetResNet50().state_dict()
    state = {f"{ENCODER_PREFIX}{k}": v for k, v in encoder.items()}

    def bn(prefix: str, n: int, affine: bool = True) -> None:
        if affine:
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = torch.ones(n), torch.zeros(n)
        state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"] = torch.zeros(n), torch.ones(n)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    fc = "module.encoder.fc"
    state[f"{fc}.0.weight"] = torch.randn(2048, 2048) * 0.01
    bn(f"{fc}.1", 2048)
    state[f"{fc}.3.weight"] = torch.randn(2048, 2048) * 0.01
    bn(f"{fc}.4", 2048)
    state[f"{fc}.6.weight"], state[f"{fc}.6.bias"] = torch.randn(2048, 2048) * 0.01, torch.zeros(2048)
    bn(f"{fc}.7", 2048, affine=False)
    state["module.predictor.0.weight"] = torch.randn(512, 2048) * 0.01
    bn("module.predictor.1", 512)
    state["module.predictor.3.weight"], state["module.predictor.3.bias"] = (
        torch.randn(2048, 512) * 0.01,
        torch.zeros(2048),
    )
    optimizer = {
        "state": {},
        "param_groups": [
            {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "fix_lr": False, "params": list(range(3))}
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 100, "arch": "resnet50", "state_dict": state, "optimizer": optimizer}, path)
    return path
