"""Independent random streams derived from one seed.

A victim initialises its weights from ``torch.manual_seed(seed)``. Anything else that draws
initial weights or subsets for seed ``s`` (a stolen copy, a random-init baseline, a query or
few-label subset) draws from its own stream ``derive_seed(s, name)``, so that no stream coincides
with a victim's: a copy never starts from the victim's weights by accident of equal seeds.
"""

from __future__ import annotations

import hashlib

import torch

STREAMS: tuple[str, ...] = ("stolen", "random_init", "queries", "few_label", "reference")
"""The named streams the package uses."""


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream``, a function of (``stream``, ``seed``) only."""
    if stream not in STREAMS:
        raise ValueError(f"Unknown random stream {stream!r}. Known: {', '.join(STREAMS)}.")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    digest = hashlib.sha256(f"encsteal/{stream}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def generator(seed: int, stream: str) -> torch.Generator:
    """A torch Generator on ``stream`` of ``seed``."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))


def random_init_encoder(arch: str, in_channels: int, input_size: int, seed: int) -> torch.nn.Module:
    """The architecture at a random initialisation of its own (the ``random_init`` stream): the
    baseline a copy must beat, never the victim's own initial weights."""
    from encsteal.models import build_encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "random_init"))
        return build_encoder(arch, in_channels, input_size).eval()
