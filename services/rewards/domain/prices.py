"""Unit prices (SPEC §10): what one unit of each reward kind costs the operator, in fen, so a
report gives cost in money. `credit_fen` is money already: one unit is one fen."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

FEN_PER_CREDIT_FEN = 1.0
Prices = Mapping[Any, float]  # fen per unit, by reward kind
MAX_UNIT_PRICE_FEN = 10_000_000  # 100,000 yuan for one unit (a prize) is the most we accept

# What the six templates' reward kinds cost when a campaign declares nothing else (list prices
# of the seeds' operator: 1 MB ≈ 3 fen, an SMS 5 fen, an MMS 20 fen, a point 1 fen).
SUGGESTED_FEN: Mapping[str, float] = {
    "credit_fen": 1.0,
    "data_mb": 3.0,
    "sms": 5.0,
    "mms": 20.0,
    "points": 1.0,
    "ticket": 0.0,
}


def check_prices(prices: Prices) -> None:
    """ValueError naming the kind when a price is negative, absurd, or credit is not 1 fen."""
    for kind, fen in prices.items():
        if not 0 <= fen <= MAX_UNIT_PRICE_FEN:
            raise ValueError(f"unit_prices.{kind}: must be between 0 and {MAX_UNIT_PRICE_FEN} fen")
        if kind == "credit_fen" and fen != FEN_PER_CREDIT_FEN:
            raise ValueError("unit_prices.credit_fen: one unit of credit is one fen")


def price_of(prices: Prices, kind: str) -> float | None:
    """Fen per unit of `kind`; None when the campaign declares no price for it."""
    if kind == "credit_fen":
        return FEN_PER_CREDIT_FEN
    return prices.get(kind)


def cost_fen(prices: Prices, kind: str, units: int) -> int | None:
    """What `units` of `kind` cost, in whole fen (half to even); None without a price."""
    fen = price_of(prices, kind)
    if fen is None:
        return None
    exact = Decimal(units) * Decimal(str(fen))
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
