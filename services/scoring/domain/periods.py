"""Local calendar days and months in the deployment time zone (SPEC §4)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.timebounds import check_day


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def month_of(day: date) -> date:
    """A month is identified by its first day."""
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def end_of_month(month: date, tz: ZoneInfo) -> datetime:
    """The instant membership "as of the end of the month" is decided at: next month's start."""
    return start_of_day(next_month(month), tz)


def months_between(first: date, last: date) -> list[date]:
    """Every month from `first`'s to `last`'s, inclusive."""
    out, m = [], month_of(first)
    while m <= month_of(last):
        out.append(m)
        m = next_month(m)
    return out


def month_label(month: date) -> str:
    return month.strftime("%Y-%m")


def parse_month(text: str) -> date:
    """'2026-11' → 2026-11-01; ValueError (OutOfSpan outside 2000–2099, SPEC §16) otherwise."""
    year, sep, mon = text.partition("-")
    if not (sep and len(year) == 4 and len(mon) == 2 and year.isdigit() and mon.isdigit()):
        raise ValueError("month must look like 2026-11")
    return check_day(date(int(year), int(mon), 1))
