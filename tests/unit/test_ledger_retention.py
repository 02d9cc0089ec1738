"""When a day of the processed-event ledger may be dropped (services/scoring/domain/retention.py),
checked against the promises it must keep: every live event can still find its day, imports are
held, and nothing is kept for ever."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.scoring.domain.retention import (
    BROKER_RETENTION,
    Retention,
    days_to_prepare,
    expires,
    is_old,
    ledger_day,
)
from shared.contract import MAX_AGE

NOW = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
R = Retention()


def test_the_ledger_day_is_the_utc_date_whatever_the_offset() -> None:
    shanghai_morning = datetime.fromisoformat("2026-11-30T03:00:00+08:00")
    assert ledger_day(shanghai_morning) == date(2026, 11, 29)
    assert ledger_day(datetime.fromisoformat("2026-11-29T23:59:59.999999-12:00")) == date(
        2026, 11, 30
    )


@pytest.mark.parametrize("lag", [timedelta(0), timedelta(hours=1), BROKER_RETENTION])
@pytest.mark.parametrize("offset_h", [-12, 0, 14])
def test_no_live_event_can_reach_an_expired_day(lag: timedelta, offset_h: int) -> None:
    """The oldest event ingest accepts live, read by scoring as late as the broker keeps it:
    its day is not old, so its partition is still there and a retry is recognised."""
    received = NOW - lag
    occurred = (received - MAX_AGE).astimezone(timezone(timedelta(hours=offset_h)))
    day = ledger_day(occurred)
    assert not is_old(day, NOW, R)
    assert not expires(day, None, NOW, R)


def test_old_days_expire_unless_an_import_wrote_to_them_within_the_hold() -> None:
    day = ledger_day(NOW - R.live_horizon - timedelta(days=2))
    assert is_old(day, NOW, R)
    assert expires(day, None, NOW, R)
    assert not expires(day, NOW - R.import_hold + timedelta(minutes=1), NOW, R)
    assert expires(day, NOW - R.import_hold, NOW, R)


def test_every_day_eventually_expires() -> None:
    """Bounded: whatever day it is, a day far enough behind is dropped once imports stop."""
    for back in range(0, 120):
        day = ledger_day(NOW) - timedelta(days=back)
        later = NOW + R.live_horizon + R.import_hold + timedelta(days=2)
        assert expires(day, NOW, later, R), day


def test_partitions_are_made_from_yesterday_to_ahead() -> None:
    days = days_to_prepare(NOW, R)
    assert days[0] == date(2026, 11, 29)
    assert days[-1] == date(2026, 11, 30) + timedelta(days=R.days_ahead)
    # an event 5 minutes in the future (ingest's limit) near UTC midnight has its partition
    assert ledger_day(datetime(2026, 11, 30, 23, 58, tzinfo=UTC) + timedelta(minutes=5)) in days


def test_a_horizon_shorter_than_the_acceptance_window_is_refused() -> None:
    with pytest.raises(ValueError, match="must cover the 35-day acceptance window"):
        Retention(live_horizon=timedelta(days=30))
