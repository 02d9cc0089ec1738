"""Periods of SPEC §5: local days and months, the grace before settlement, fulfilment dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Grain = Literal["day", "month"]
GRACE: dict[str, timedelta] = {"day": timedelta(hours=2), "month": timedelta(days=2)}
CAMPAIGN_PERIOD = "campaign"  # the period label of once-per-campaign grants


@dataclass(frozen=True, slots=True, order=True)
class Period:
    start: datetime
    end: datetime
    grain: Grain
    label: str  # YYYY-MM-DD or YYYY-MM

    @property
    def first_day(self) -> date:
        return date.fromisoformat(self.label if self.grain == "day" else f"{self.label}-01")

    def settle_due(self) -> datetime:
        """When settlement may run: the period's end plus its grace."""
        return self.end + GRACE[self.grain]


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def _next_month(d: date) -> date:
    return date(d.year + 1, 1, 1) if d.month == 12 else date(d.year, d.month + 1, 1)


def day_period(d: date, tz: ZoneInfo) -> Period:
    return Period(_midnight(d, tz), _midnight(d + timedelta(days=1), tz), "day", d.isoformat())


def month_period(d: date, tz: ZoneInfo) -> Period:
    first = d.replace(day=1)
    return Period(
        _midnight(first, tz), _midnight(_next_month(first), tz), "month", first.isoformat()[:7]
    )


def period_on(day: date, grain: Grain, tz: ZoneInfo) -> Period:
    """The day, or the month, that `day` falls in."""
    return day_period(day, tz) if grain == "day" else month_period(day, tz)


def period_of(at: datetime, grain: Grain, tz: ZoneInfo) -> Period:
    return period_on(at.astimezone(tz).date(), grain, tz)


def periods_in_window(
    grain: Grain, starts_at: datetime, ends_at: datetime, tz: ZoneInfo
) -> list[Period]:
    """Every period that overlaps [starts_at, ends_at)."""
    out: list[Period] = []
    p = period_of(starts_at, grain, tz)
    while p.start < ends_at:
        if p.end > starts_at:
            out.append(p)
        p = period_on(p.end.date(), grain, tz)
    return out


def days_in_window(starts_at: datetime, ends_at: datetime, tz: ZoneInfo) -> tuple[date, date]:
    """First and last local day of the window (inclusive)."""
    last = (ends_at - timedelta(microseconds=1)).astimezone(tz).date()
    return starts_at.astimezone(tz).date(), last


def months_between(first: date, last: date) -> list[date]:
    """The first day of every month from `first`'s to `last`'s."""
    out: list[date] = []
    m = first.replace(day=1)
    while m <= last:
        out.append(m)
        m = _next_month(m)
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """A campaign's window, [starts_at, ends_at)."""

    starts_at: datetime
    ends_at: datetime

    def overlaps(self, period: Period) -> bool:
        return period.start < self.ends_at and period.end > self.starts_at

    def periods(self, grain: Grain, tz: ZoneInfo) -> list[Period]:
        return periods_in_window(grain, self.starts_at, self.ends_at, tz)

    def days(self, tz: ZoneInfo) -> tuple[date, date]:
        return days_in_window(self.starts_at, self.ends_at, tz)


def fulfil_by(period_first_day: date, next_month_day: int) -> date:
    """The `next_month_day`-th of the month after the one the period falls in."""
    return _next_month(period_first_day.replace(day=1)).replace(day=next_month_day)
