"""Tables that compare encoders: probe accuracies and fidelity to a victim, one row per encoder."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from torch import nn

from encsteal.data.imageset import ImageSet
from encsteal.fidelity import linear_cka, mean_cosine_similarity
from encsteal.probe import extract_features, pixel_features, probe_features

PROBE_ROLES = ("probe_train", "probe_val", "probe_test")


def encoder_table(encoders: Mapping[str, nn.Module | None], splits: Mapping[str, ImageSet],
                  victim: nn.Module | None = None, per_class: int = 10, seed: int = 0) -> pd.DataFrame:
    """Probe (all probe labels), k-NN, few-label probe (``per_class`` labels per class) and, when a
    ``victim`` is given, cosine similarity and linear CKA to the victim on the probe test images.

    ``None`` stands for raw pixels. Accuracies are percentages.
    """
    victim_test = extract_features(victim, splits["probe_test"]) if victim is not None else None
    rows = []
    for name, encoder in encoders.items():
        if encoder is None:
            feats = {r: pixel_features(splits[r]) for r in PROBE_ROLES}
        else:
            feats = {r: extract_features(encoder, splits[r]) for r in PROBE_ROLES}
        full = probe_features(feats, dict(splits))
        few = probe_features(feats, dict(splits), per_class=per_class, seed=seed)
        row = {"encoder": name, "probe": 100 * full.accuracy, "knn": 100 * full.knn_accuracy,
               f"probe_{per_class}_per_class": 100 * few.accuracy}
        if victim_test is not None:
            same_dim = encoder is not None and feats["probe_test"].shape[1] == victim_test.shape[1]
            row["cosine_to_victim"] = mean_cosine_similarity(feats["probe_test"], victim_test) if same_dim else float("nan")
            row["cka_to_victim"] = linear_cka(feats["probe_test"], victim_test)
        rows.append(row)
    return pd.DataFrame(rows).set_index("encoder")


def with_ratio(table: pd.DataFrame, reference: str, column: str = "probe") -> pd.DataFrame:
    """Add ``<column>_vs_<reference>``: each row's accuracy as a percentage of the reference row's."""
    out = table.copy()
    out[f"{column}_vs_{reference}"] = 100 * out[column] / out.loc[reference, column]
    return out
