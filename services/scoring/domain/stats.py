"""Reading the business KPIs (SPEC §12): stored rows per (period, province key, client) summed
into the breakdown asked for, with the ratios derived from the sums. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from services.scoring.domain.kpis import shown_province
from services.scoring.domain.periods import next_month

Breakdown = Literal["province", "client"]
SliceKey = tuple[str | None, str | None]  # (province, client); None: all of them
PER_USER = ("new_users", "returning_users", "resurrecting_users", "dormant_users", "loyal_users")


@dataclass(frozen=True, slots=True)
class KpiRow:
    province: str  # as stored: may be a pending key
    client: str
    values: tuple[int, ...]  # DAY_KPIS or MONTH_KPIS order


def slices(
    rows: Iterable[KpiRow], names: Sequence[str], by: set[Breakdown]
) -> dict[SliceKey, dict[str, int]]:
    """Sum rows into one slice per (province, client) of the breakdown; without `client` in
    `by` only the `all` rows count (each user once)."""
    out: dict[SliceKey, dict[str, int]] = {}
    for row in rows:
        if "client" not in by and row.client != "all":
            continue
        key = (
            shown_province(row.province) if "province" in by else None,
            row.client if "client" in by else None,
        )
        sums = out.setdefault(key, dict.fromkeys(names, 0))
        for name, value in zip(names, row.values, strict=True):
            sums[name] += value
    return out


def days_counted(month: date, today: date) -> int:
    """The days a month's mean DAU is taken over: all of them, or up to today (included) for
    the current month."""
    end = min(next_month(month), today + timedelta(days=1))
    return max((end - month).days, 1)


def ratio(part: float, whole: float) -> float | None:
    return None if whole == 0 else part / whole
