"""An independent campaign report (SPEC §12), written from the spec and sharing no code with
services/: who is held out (HMAC-SHA256 of the seed and the user id, as a share of 2^256),
entrants, winners, money (units × unit price, half to even), the funnel, the notices of each
rule's period, and the holdout's uplift with Welch's 95% interval (normal quantile; the tests
give it a tolerance)."""

from __future__ import annotations

import hashlib
import hmac
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal


def is_held_out(seed: str, user: str, percent: int) -> bool:
    mac = hmac.new(seed.encode(), user.encode(), hashlib.sha256).hexdigest()
    return int(mac, 16) * 100 < percent * 2**256


def money(units: int, fen_per_unit: float) -> int:
    return int((Decimal(units) * Decimal(str(fen_per_unit))).quantize(1, ROUND_HALF_EVEN))


@dataclass
class ExpectedPeriod:
    entrants: set[str] = field(default_factory=set)
    winners: set[str] = field(default_factory=set)
    held_out: set[str] = field(default_factory=set)
    units: dict[str, int] = field(default_factory=dict)


def period_of(
    met: Iterable[str],
    tickets: Iterable[str],
    chosen: Iterable[str],
    items: Mapping[str, int],
    seed: str,
    percent: int,
) -> ExpectedPeriod:
    """A rule's period: `met` met its condition, `tickets` held tickets, `chosen` are those
    it decided to reward (each with `items`)."""
    out = ExpectedPeriod(entrants=set(met) | set(tickets) | set(chosen))
    for user in chosen:
        if is_held_out(seed, user, percent):
            out.held_out.add(user)
        else:
            out.winners.add(user)
            for kind, n in items.items():
                out.units[kind] = out.units.get(kind, 0) + n
    return out


@dataclass(frozen=True)
class Notice:
    """A reward notice as a test made it: its grant's rule and period (None: queued before
    notices kept them), its user, and the status the test left it in."""

    rule_id: str | None
    period: str | None
    user: str
    status: str


TOLD = {"sent", "delivered"}  # SPEC §12: a user is told once a notice is sent or delivered


@dataclass
class ExpectedNotices:
    counts: dict[str, int] = field(default_factory=dict)
    told: set[str] = field(default_factory=set)


def notices_per_period(notices: Iterable[Notice]) -> dict[tuple[str, str], ExpectedNotices]:
    """Per (rule, period): notices by status and the distinct users told. A notice without a
    rule and period belongs to none."""
    out: dict[tuple[str, str], ExpectedNotices] = {}
    for n in notices:
        if n.rule_id is None or n.period is None:
            continue
        e = out.setdefault((n.rule_id, n.period), ExpectedNotices())
        e.counts[n.status] = e.counts.get(n.status, 0) + 1
        if n.status in TOLD:
            e.told.add(n.user)
    return out


def told_users(notices: Iterable[Notice]) -> set[str]:
    """The campaign's users told, with or without a period."""
    return {n.user for n in notices if n.status in TOLD}


def welch(treated: list[float], control: list[float]) -> tuple[float, float, float]:
    diff = statistics.fmean(treated) - statistics.fmean(control)
    se = math.sqrt(
        statistics.variance(treated) / len(treated) + statistics.variance(control) / len(control)
    )
    return diff, diff - 1.959964 * se, diff + 1.959964 * se
