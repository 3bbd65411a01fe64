"""The paper-scale data hub: missing data fails clearly, and query sets are formed as documented."""

from __future__ import annotations

import pytest
import torch

from encsteal import standin
from encsteal.data.hub import DataHub, DataMissing


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return standin.write_tiny_data(tmp_path_factory.mktemp("data"))


def test_missing_data_names_the_root_and_how_to_download(tmp_path):
    hub = DataHub(tmp_path / "nowhere")
    with pytest.raises(DataMissing) as err:
        hub.require({("cifar10", "train"), ("svhn", "extra"), ("imagenet", "train")})
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py" / "data_batch_1") in msg
    assert "svhn (extra)" in msg and "--download" in msg and "image-net.org" in msg
    assert str(tmp_path / "nowhere" / "imagenet" / "train") in msg


def test_query_sets_are_formed_as_documented(tiny_root):
    hub = DataHub(tiny_root)
    with standin.accept_standin_files():
        first = hub.query_set({"dataset": "cifar10", "split": "test", "start": 0, "stop": 40})
        test = hub.load("cifar10", "test")
        assert torch.equal(first.images, test.images[:40])  # the test set minus its last images
        # "250K SVHN queries": distinct images drawn from train + extra (train alone is too small)
        n_train = len(hub.load("svhn", "train"))
        q = hub.query_set({"dataset": "svhn", "splits": ["train", "extra"], "num": 48})
        both = torch.cat([hub.load("svhn", "train").images, hub.load("svhn", "extra").images])
        rows = [int(torch.nonzero((both == x).flatten(1).all(1))[0]) for x in q.images]
        assert len(set(rows)) == 48 and max(rows) >= n_train
        with pytest.raises(ValueError, match="has only 80 images"):
            hub.query_set({"dataset": "svhn", "splits": ["train", "extra"], "num": 81})
    # ImageNet subsets: uniform over the whole folder (the first images in class order are one class)
    sub = hub.query_set({"dataset": "imagenet", "split": "train", "num": 8, "image_size": 16})
    assert len(sub) == 8 and len(torch.unique(sub.labels)) > 1
    again = DataHub(tiny_root).query_set({"dataset": "imagenet", "split": "train", "num": 8, "image_size": 16})
    assert torch.equal(sub.images, again.images)  # decoded once, then memory-mapped
