"""The span of time Engage stores and computes periods for (SPEC §16), checked at every entrance.

Instants must lie in [2000-01-02T00:00Z, 2099-12-31T00:00Z): in every time zone (UTC−12 to
UTC+14) their local day then falls in the years 2000–2099, so every period built on them — a
day, an ISO week, a month, a year, plus a settlement's grace and next month's fulfilment date —
stays far inside what Python's `date` (years 1–9999) and PostgreSQL can represent. Days and
months named in requests must lie in the years 2000–2099. Nothing outside the span is a real
engagement event or campaign; accepting it only lets one record stop a consumer or one campaign
stop settlement (the faults this module exists to prevent).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator

EARLIEST_INSTANT = datetime(2000, 1, 2, tzinfo=UTC)
LATEST_INSTANT = datetime(2099, 12, 31, tzinfo=UTC)  # exclusive
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2099, 12, 31)
SPAN_TEXT = "between 2000-01-02 and 2099-12-30 (UTC)"
DAY_SPAN_TEXT = "in the years 2000–2099"


class OutOfSpan(ValueError):
    """A time or period outside the span every service can store (see the module doc)."""


def check_instant(at: datetime) -> datetime:
    """`at` (timezone-aware) unchanged, or OutOfSpan."""
    if at.tzinfo is None:
        raise OutOfSpan("must carry a UTC offset")
    try:
        utc = at.astimezone(UTC)
    except (OverflowError, ValueError):
        raise OutOfSpan(f"must lie {SPAN_TEXT}") from None
    if not EARLIEST_INSTANT <= utc < LATEST_INSTANT:
        raise OutOfSpan(f"must lie {SPAN_TEXT}")
    return at


def check_day(day: date) -> date:
    """`day` unchanged, or OutOfSpan."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise OutOfSpan(f"must lie {DAY_SPAN_TEXT}")
    return day


BoundedInstant = Annotated[datetime, AfterValidator(check_instant)]
BoundedDay = Annotated[date, AfterValidator(check_day)]
