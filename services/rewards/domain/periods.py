"""Periods of SPEC §5 and §10: local days, ISO weeks (Monday first), months and years, the grace
before settlement, fulfilment dates.

Labels: `2026-10-03` (day), `2026-W40` (ISO week, whose year is the ISO year: 2026-12-31 is in
`2026-W53`, 2027-01-03 too), `2026-10` (month), `2026` (year).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Grain = Literal["day", "week", "month", "year", "campaign"]
GRAINS: tuple[Grain, ...] = ("day", "week", "month", "year", "campaign")
GRACE: dict[str, timedelta] = {
    "day": timedelta(hours=2),
    "week": timedelta(hours=2),
    "month": timedelta(days=2),
    "year": timedelta(days=2),
    "campaign": timedelta(days=2),
}
CAMPAIGN_PERIOD = "campaign"  # the period label of once-per-campaign grants


@dataclass(frozen=True, slots=True, order=True)
class Period:
    start: datetime
    end: datetime
    grain: Grain
    label: str  # YYYY-MM-DD, YYYY-Www, YYYY-MM or YYYY

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    def days(self) -> list[date]:
        d, out = self.first_day, []
        while d <= self.last_day:
            out.append(d)
            d += timedelta(days=1)
        return out

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


def week_period(d: date, tz: ZoneInfo) -> Period:
    """The ISO week (Monday to Sunday, local) that `d` falls in."""
    monday = d - timedelta(days=d.isoweekday() - 1)
    year, week, _ = monday.isocalendar()
    return Period(
        _midnight(monday, tz), _midnight(monday + timedelta(days=7), tz), "week",
        f"{year}-W{week:02d}",
    )  # fmt: skip


def year_period(d: date, tz: ZoneInfo) -> Period:
    first = date(d.year, 1, 1)
    return Period(_midnight(first, tz), _midnight(date(d.year + 1, 1, 1), tz), "year", str(d.year))


_PERIOD_ON = {"day": day_period, "week": week_period, "month": month_period, "year": year_period}


def period_on(day: date, grain: Grain, tz: ZoneInfo) -> Period:
    """The day, ISO week, month or year that `day` falls in (a campaign period is the
    window's: `Window.periods`)."""
    if grain == "campaign":
        raise ValueError("the campaign period is the window's (Window.periods)")
    return _PERIOD_ON[grain](day, tz)


def label_days(label: str) -> tuple[date, date]:
    """First and last local day of the period a label names; ValueError if it names none
    (the campaign period's days are its window's)."""
    period = period_of_label(label, ZoneInfo("UTC"))  # days do not depend on the zone
    return period.first_day, period.last_day


def label_first_day(label: str) -> tuple[Grain, date]:
    """The grain and first day a label names (`2026-10-03`, `2026-W40`, `2026-10`, `2026`);
    ValueError if it names none."""
    if len(label) == 10:
        return "day", date.fromisoformat(label)
    if len(label) == 8 and label[4:6] == "-W" and label[6:].isdigit():
        return "week", date.fromisocalendar(int(label[:4]), int(label[6:]), 1)
    if len(label) == 7:
        return "month", date.fromisoformat(f"{label}-01")
    if len(label) == 4 and label.isdigit():
        return "year", date(int(label), 1, 1)
    raise ValueError(f"'{label}' is not a day, week, month or year")


def period_of_label(label: str, tz: ZoneInfo) -> Period:
    """The period a label names; ValueError if it names none."""
    grain, first = label_first_day(label)
    return period_on(first, grain, tz)


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
        if grain == "campaign":
            return [self.as_period(tz)]
        return periods_in_window(grain, self.starts_at, self.ends_at, tz)

    def as_period(self, tz: ZoneInfo) -> Period:
        """The whole window as one period (label `campaign`)."""
        return Period(
            self.starts_at.astimezone(tz), self.ends_at.astimezone(tz), "campaign", CAMPAIGN_PERIOD
        )

    def period_on(self, day: date, grain: Grain, tz: ZoneInfo) -> Period:
        """The period of `grain` that `day` falls in, the window itself for `campaign`."""
        return self.as_period(tz) if grain == "campaign" else period_on(day, grain, tz)

    def days(self, tz: ZoneInfo) -> tuple[date, date]:
        return days_in_window(self.starts_at, self.ends_at, tz)


def fulfil_by(day: date, next_month_day: int) -> date:
    """The `next_month_day`-th of the month after `day`'s (callers pass a period's last day:
    a week ending 2026-01-04 is fulfilled in February, a year in the next January)."""
    return _next_month(day.replace(day=1)).replace(day=next_month_day)
