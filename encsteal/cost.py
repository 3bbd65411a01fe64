"""A cost model: what training an encoder costs against what stealing it through an API costs.

Training cost = compute time x price per hour. Stealing cost = queries x API price per 1,000
queries + the attacker's own compute time x price per hour. The prices are parameters the reader
sets; the times are measured by this package when it trains and steals.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prices:
    """Prices in USD: compute per hour and API queries per 1,000."""

    compute_per_hour: float = 1.0
    api_per_1k: float = 1.0

    def __post_init__(self) -> None:
        if self.compute_per_hour < 0 or self.api_per_1k < 0:
            raise ValueError(f"Prices must be >= 0, got {self}.")


def training_cost(train_seconds: float, prices: Prices) -> float:
    """USD to train a victim that took ``train_seconds`` of compute."""
    return train_seconds / 3600.0 * prices.compute_per_hour


def stealing_cost(queries: int, attack_seconds: float, prices: Prices) -> dict[str, float]:
    """USD to steal: the API bill, the attacker's compute and their total."""
    api = queries / 1000.0 * prices.api_per_1k
    compute = attack_seconds / 3600.0 * prices.compute_per_hour
    return {"api": api, "compute": compute, "total": api + compute}


def break_even_price_per_1k(train_seconds: float, queries: int, attack_seconds: float, prices: Prices) -> float:
    """The API price per 1,000 queries at which stealing costs as much as training."""
    if queries <= 0:
        raise ValueError("queries must be > 0.")
    budget = training_cost(train_seconds, prices) - attack_seconds / 3600.0 * prices.compute_per_hour
    return max(budget, 0.0) / queries * 1000.0
