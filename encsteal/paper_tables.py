"""The paper's reference numbers, as published in the talk's slide tables (book/paper_setup.md#setup-tables,
#setup-cost).

These are typed in from the paper's tables and labelled as such everywhere they appear; every
number next to them in the book is computed by this package. Where a reading of them is
inferred or unverified (book/paper_setup.md#setup-unverified), the chapters say so in a note
beside the table.
"""

from __future__ import annotations

import pandas as pd


def loss_table() -> pd.DataFrame:
    """Paper: stolen-encoder accuracy (%) per loss, query set and downstream task (slides)."""
    rows = {
        "mse": (64.8, 75.5, 46.3, 51.2),
        "infonce": (64.6, 75.5, 50.4, 56.3),
        "softnn": (67.1, 76.9, 44.6, 48.4),
        "supcon": (63.1, 78.5, 33.9, 42.3),
        "wasserstein": (50.8, 63.9, 40.1, 46.4),
        "barlow": (26.6, 26.9, 16.3, 17.9),
    }
    columns = pd.MultiIndex.from_tuples(
        [
            ("in-distribution", "STL10"),
            ("in-distribution", "CIFAR10"),
            ("out-of-distribution", "STL10"),
            ("out-of-distribution", "CIFAR10"),
        ],
        names=["queries", "downstream"],
    )
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("loss")


def imagenet_table() -> pd.DataFrame:
    """Paper: victim and stolen ResNet-50 accuracies (%) per downstream set (slides)."""
    rows = {
        "victim": (90.33, 71.45, 94.9, 79.39, 91.9),
        "stolen, 50K CIFAR10 queries": (83.3, 57.0, 71.2, 73.8, 90.7),
        "stolen, 50K SVHN queries": (73.3, 47.1, 58.2, 78.8, 90.4),
        "stolen, 250K SVHN queries": (77.1, 52.6, 61.9, 80.2, 91.4),
        "stolen, 50K ImageNet queries": (65.2, 35.1, 64.9, 62.1, 88.5),
        "stolen, 250K ImageNet queries": (80.0, 57.0, 85.8, 71.5, 90.2),
    }
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["CIFAR10", "CIFAR100", "STL10", "SVHN", "F-MNIST"]
    ).rename_axis("model")


def cost_figures() -> pd.DataFrame:
    """Cost figures quoted around the paper, each with its source and how far it was checked."""
    return pd.DataFrame(
        [
            {
                "item": "training a large BERT model",
                "usd": 1_000_000.0,
                "relation": "more than",
                "source": "paper, first page, citing Sharir et al. 2020",
                "checked": "verified (paper p1)",
            },
            {
                "item": "training a ResNet-50 SSL encoder",
                "usd": 5713.92,
                "relation": "more than",
                "source": "authors' blog, citing SSLGuard (Cong et al. CCS 2022)",
                "checked": "blog only; not verified in SSLGuard",
            },
            {
                "item": "stealing such an encoder",
                "usd": 72.49,
                "relation": "about",
                "source": "authors' blog, citing SSLGuard (Cong et al. CCS 2022)",
                "checked": "blog only; not verified in SSLGuard",
            },
        ]
    )


API_DIMENSIONS = {
    "ResNet-50 SimCLR/SimSiam representation": 2048,
    "CIFAR ResNet-18/34 representation": 512,
    "SimCLR projection head (victim head variant)": 128,
    "classifier API (CIFAR10 scores)": 10,
    "classifier API (ImageNet scores)": 1000,
}
"""Output sizes the paper contrasts (book/paper_setup.md#setup-api-outputs): representations vs labels/scores."""


def api_dimensions() -> pd.DataFrame:
    """:data:`API_DIMENSIONS` as a one-column table."""
    return pd.Series(API_DIMENSIONS, name="values per answer (paper's models)").to_frame()
