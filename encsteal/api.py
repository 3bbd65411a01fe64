"""The victim behind a paid API: the only thing an attacker ever touches.

Self-supervised mode returns representations f_v(x) (or, as in the paper's "victim head"
variant, the projection-head output g(f_v(x))). Supervised mode returns, by choice, the label,
the top-k scores, all probabilities or the logits, as classifier APIs do (book/paper_setup.md#setup-api-outputs).
Every image sent is a query (an augmented copy is a new one);
queries are counted and priced per user, an optional budget is enforced before anything is
computed, and defenses plug in as transforms of the outputs that can read the user's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from encsteal.cache import tensor_fingerprint
from encsteal.data.transforms import adapt

SSL_OUTPUTS: tuple[str, ...] = ("representation", "head")
SUPERVISED_OUTPUTS: tuple[str, ...] = ("label", "topk", "probabilities", "logits")
MODES: tuple[str, ...] = ("ssl", "supervised")


class BudgetExceeded(RuntimeError):
    """Raised when a query would take a user past its budget; nothing is answered."""


@dataclass
class UserHistory:
    """What one user has asked so far: counts per call, and the victim-side embeddings of its
    queries (head outputs when the victim has a head, else representations) for defenses."""

    calls: list[int] = field(default_factory=list)
    embeddings: list[torch.Tensor] = field(default_factory=list)

    @property
    def queries(self) -> int:
        return sum(self.calls)

    def past_embeddings(self) -> torch.Tensor | None:
        return torch.cat(self.embeddings) if self.embeddings else None


@dataclass
class QueryContext:
    """What a defense sees for one call: the user, its history before this call, the images
    (adapted to the victim's input) and the victim-side embeddings of this call."""

    user: str
    history: UserHistory
    images: torch.Tensor
    embeddings: torch.Tensor


class Defense(Protocol):
    """A transform of the API's outputs (see ``encsteal.defenses``)."""

    def __call__(self, outputs: torch.Tensor, context: QueryContext) -> torch.Tensor: ...


def module_fingerprint(*modules: nn.Module) -> str:
    """Hash of the modules' weights: identifies a victim in cache keys."""
    return tensor_fingerprint(*(v for m in modules for v in m.state_dict().values()))


class EncoderAPI:
    """A victim model behind a priced, budgeted, logged API.

    Args:
        encoder: the victim encoder ((N, C, H, W) in [0, 1] -> (N, rep_dim)).
        head: projection head (SSL, for ``output="head"`` and for defenses) or classifier
            (supervised mode; required there).
        mode: ``"ssl"`` or ``"supervised"``.
        output: SSL: ``"representation"`` or ``"head"``; supervised: ``"label"``, ``"topk"``,
            ``"probabilities"`` or ``"logits"``.
        top_k: k for ``output="topk"`` (the other scores are returned as 0).
        price_per_1k: money charged per 1,000 queries.
        budget: maximum queries per user (None = unlimited).
        defenses: output transforms applied in order.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module | None = None,
        mode: str = "ssl",
        output: str = "representation",
        top_k: int = 5,
        price_per_1k: float = 1.0,
        budget: int | None = None,
        defenses: Sequence[Defense] = (),
        batch_size: int = 512,
        device: str | torch.device = "cpu",
    ):
        if mode not in MODES:
            raise ValueError(f"Unknown API mode {mode!r}. Allowed: {', '.join(MODES)}.")
        allowed = SSL_OUTPUTS if mode == "ssl" else SUPERVISED_OUTPUTS
        if output not in allowed:
            raise ValueError(f"Unknown output {output!r} for a {mode} API. Allowed: {', '.join(allowed)}.")
        if (mode == "supervised" or output == "head") and head is None:
            raise ValueError(f"A {mode} API with output {output!r} needs the victim's head.")
        if budget is not None and budget < 0:
            raise ValueError(f"The query budget must be >= 0 (or None for unlimited), got {budget}.")
        if price_per_1k < 0:
            raise ValueError(f"price_per_1k must be >= 0, got {price_per_1k}.")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}.")
        self.encoder = encoder.eval().to(device)
        self.head = head.eval().to(device) if head is not None else None
        self.mode, self.output, self.top_k = mode, output, top_k
        self.price_per_1k, self.budget = price_per_1k, budget
        self.defenses = list(defenses)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.users: dict[str, UserHistory] = {}

    # ---- what the API tells its customers -------------------------------------------------
    @property
    def output_dim(self) -> int:
        if self.mode == "ssl":
            return self.head.out_dim if self.output == "head" else self.encoder.rep_dim  # type: ignore[union-attr]
        return 1 if self.output == "label" else self.head.out_dim  # type: ignore[union-attr]

    @property
    def input_shape(self) -> tuple[int, int]:
        """(channels, size) the victim works at; queries are adapted to it."""
        return self.encoder.in_channels, self.encoder.input_size

    def fingerprint(self) -> str:
        modules = [self.encoder] + ([self.head] if self.head is not None else [])
        return module_fingerprint(*modules)

    def describe(self) -> dict:
        """The API's public terms (used in cache keys and reports)."""
        return {
            "mode": self.mode,
            "output": self.output,
            "top_k": self.top_k,
            "output_dim": self.output_dim,
            "price_per_1k": self.price_per_1k,
            "budget": self.budget,
            "defenses": [repr(d) for d in self.defenses],
            "victim": self.fingerprint(),
        }

    # ---- accounting ------------------------------------------------------------------------
    def queries(self, user: str = "attacker") -> int:
        return self.users[user].queries if user in self.users else 0

    def spent(self, user: str = "attacker") -> float:
        return self.queries(user) * self.price_per_1k / 1000.0

    def remaining(self, user: str = "attacker") -> int | None:
        return None if self.budget is None else self.budget - self.queries(user)

    def record_replayed_queries(self, user: str, n: int) -> None:
        """Count ``n`` queries whose answers were replayed from a cache (a cached attack), so the
        user's count and bill stay what a real run would have made. Their embeddings are not
        known, so a history-based defense does not see them."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}.")
        self.users.setdefault(user, UserHistory()).calls.append(n)

    # ---- the query itself ------------------------------------------------------------------
    @torch.no_grad()
    def query(self, images: torch.Tensor, user: str = "attacker") -> torch.Tensor:
        """Answer a batch of query images (N, C, H, W), C in {1, 3}, uint8 or float in [0, 1]."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"Query images must be a tensor (N, C, H, W) with C = 1 or 3; got {shape}.")
        if min(images.shape[-2:]) < 8:
            raise ValueError(f"Query images are too small ({tuple(images.shape[-2:])}); at least 8x8 pixels.")
        n = len(images)
        history = self.users.setdefault(user, UserHistory())
        if self.budget is not None and history.queries + n > self.budget:
            raise BudgetExceeded(
                f"User {user!r} asked for {n} more queries but has {self.budget - history.queries} of its "
                f"budget of {self.budget} left; nothing was answered."
            )
        reps, embeds, outs, adapted = [], [], [], []
        for s in range(0, n, self.batch_size):
            x = adapt(images[s : s + self.batch_size], *self.input_shape).to(self.device)
            rep = self.encoder(x)
            head_out = self.head(rep) if self.head is not None else None
            reps.append(rep)
            embeds.append(head_out if (self.mode == "ssl" and head_out is not None) else rep)
            outs.append(self._format(rep, head_out))
            adapted.append(x)
        outputs, embeddings = torch.cat(outs).float().cpu(), torch.cat(embeds).float().cpu()
        if self.defenses:
            context = QueryContext(user, history, torch.cat(adapted).cpu(), embeddings)
            for defense in self.defenses:
                outputs = defense(outputs, context)
        history.calls.append(n)
        history.embeddings.append(embeddings)
        return outputs

    def _format(self, rep: torch.Tensor, head_out: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "ssl":
            return head_out if self.output == "head" else rep  # type: ignore[return-value]
        assert head_out is not None
        if self.output == "logits":
            return head_out
        probs = head_out.softmax(dim=1)
        if self.output == "probabilities":
            return probs
        if self.output == "label":
            return probs.argmax(dim=1, keepdim=True).float()
        top = probs.topk(min(self.top_k, probs.shape[1]), dim=1)
        return torch.zeros_like(probs).scatter_(1, top.indices, top.values)
