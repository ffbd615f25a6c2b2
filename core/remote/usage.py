"""Usage figures of remote calls: summed per request, priced per million (httpx-free)."""

from __future__ import annotations

from collections.abc import Mapping


def add_usage(total: dict[str, float], figures: Mapping[str, float]) -> None:
    """Add each usage figure of one call to the running ``total``."""
    for key, value in figures.items():
        total[key] = total.get(key, 0.0) + value


def cost(usage: Mapping[str, float], prices: Mapping[str, float | None]) -> float | None:
    """The price of ``usage``: each figure times its price per million; None when unpriced.

    >>> cost({"prompt_tokens": 2000, "completion_tokens": 100},
    ...      {"prompt_tokens": 0.5, "completion_tokens": 1.0})
    0.0011
    """
    priced = [
        usage[figure] * price / 1_000_000
        for figure, price in prices.items()
        if price is not None and figure in usage
    ]
    return sum(priced) if priced else None
