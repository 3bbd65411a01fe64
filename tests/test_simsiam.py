"""The SimSiam victim checkpoint: opt-in download, checksum, weights_only, strict key conversion.

A stand-in checkpoint with SimSiam's key names and shapes (random weights) is written to a
temporary folder; nothing is downloaded.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision

from encsteal import simsiam
from encsteal.models.resnet import ImageNetResNet50


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return simsiam.standin_checkpoint(tmp_path_factory.mktemp("w") / simsiam.SIMSIAM_FILE)


def test_standin_has_simsiam_key_names(standin):
    state = simsiam.read_checkpoint(standin)
    assert "module.encoder.conv1.weight" in state and "module.encoder.layer4.2.bn3.running_var" in state
    assert "module.encoder.fc.6.bias" in state and "module.encoder.fc.7.running_mean" in state
    assert "module.predictor.0.weight" in state and "module.predictor.3.bias" in state
    assert not any(k.startswith("module.encoder.fc.") and k.endswith("fc.weight") for k in state)


def test_converted_encoder_equals_torchvision_resnet50(standin, tmp_path):
    shutil.copy(standin, tmp_path / "c.pth.tar")
    model = simsiam.load_simsiam_resnet50(tmp_path / "c.pth.tar")
    state = simsiam.read_checkpoint(standin)
    ref = torchvision.models.resnet50(weights=None)
    ref.fc = torch.nn.Identity()
    ref.load_state_dict(
        {
            k[len("module.encoder.") :]: v
            for k, v in state.items()
            if k.startswith("module.encoder.") and not k.startswith("module.encoder.fc.")
        }
    )
    ref.eval()
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), ref((x - mean) / std), atol=1e-5)
    assert model(x).shape == (2, 2048) and not model.training
    # the sha256 was recorded on first use and is verified from then on
    assert (tmp_path / "c.pth.tar.sha256").read_text().split()[0] == simsiam.file_sha256(standin)


def test_key_mismatch_is_an_error_not_a_silent_partial_load(standin):
    state = simsiam.read_checkpoint(standin)
    missing = {k: v for k, v in state.items() if k != "module.encoder.layer3.1.conv2.weight"}
    with pytest.raises(KeyError, match=r"missing \['layer3.1.conv2.weight'\]"):
        simsiam.load_state_into(ImageNetResNet50(), simsiam.convert_simsiam_state_dict(missing))
    with pytest.raises(KeyError, match="Unexpected keys.*module.momentum_encoder.conv1.weight"):
        simsiam.convert_simsiam_state_dict({**state, "module.momentum_encoder.conv1.weight": torch.zeros(1)})
    extra = {**state, "module.encoder.layer5.0.weight": torch.zeros(1)}
    with pytest.raises(KeyError, match=r"unexpected \['layer5.0.weight'\]"):
        simsiam.load_state_into(ImageNetResNet50(), simsiam.convert_simsiam_state_dict(extra))


def test_checksum_mismatch_and_weights_only(standin, tmp_path):
    path = tmp_path / "c.pth.tar"
    shutil.copy(standin, path)
    with pytest.raises(ValueError, match="Checksum mismatch"):
        simsiam.fetch_simsiam(path, sha256="0" * 64)
    (tmp_path / "c.pth.tar.sha256").write_text("f" * 64 + "  c.pth.tar\n")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        simsiam.fetch_simsiam(path)  # the recorded checksum is checked too
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": shutil.copy}, evil)  # needs a pickled function
    with pytest.raises(ValueError, match="weights_only=True"):
        simsiam.read_checkpoint(evil)


def test_download_is_opt_in(tmp_path, monkeypatch, standin):
    target = tmp_path / "weights" / simsiam.SIMSIAM_FILE
    with pytest.raises(FileNotFoundError) as err:
        simsiam.fetch_simsiam(target)
    assert str(target) in str(err.value) and "--download-weights" in str(err.value)
    assert simsiam.SIMSIAM_URL in str(err.value)
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append(url)
        shutil.copy(standin, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    digest = simsiam.file_sha256(standin)
    assert simsiam.fetch_simsiam(target, download=True, sha256=digest) == target
    assert calls == [simsiam.SIMSIAM_URL] and target.exists()
    simsiam.fetch_simsiam(target, download=True)  # present: no second download
    assert len(calls) == 1
