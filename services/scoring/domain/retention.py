"""How long the processed-event ledger remembers a day (SPEC §4: at most once per `event_id`,
within at least the 35-day acceptance window).

The ledger is partitioned by the UTC day of `occurred_at`; a day's partition is dropped whole
when no event of that day can still arrive unannounced:

- a **live** event is accepted by ingest at most `MAX_AGE` (35 days) after it occurred, and it
  waits on the broker at most the topic's retention (7 days) before scoring must have read it —
  so at processing time its day is at most 42 days old (+1 for the day boundary). Days older
  than the *live horizon* receive only imports;
- an **import** (history, any age) keeps its day open for the *import hold* after its last
  batch, so a re-run of the same import within the hold is recognised event by event.

Once dropped, a day is *sealed*: later events of it are refused (counted, never applied),
because a repeat could no longer be told apart from a new event. Re-importing an old day
therefore counts nothing twice; it counts nothing at all, and says so.

A repeat is recognised by (`event_id`, UTC day of `occurred_at`): a retry resends the same
event, so it lands on the same day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from shared.contract import MAX_AGE

BROKER_RETENTION = timedelta(days=7)  # log.retention.hours of engage.events.v1 (docs/capacity.md)


@dataclass(frozen=True, slots=True)
class Retention:
    """The ledger's horizons, from scoring's settings."""

    live_horizon: timedelta = MAX_AGE + BROKER_RETENTION
    import_hold: timedelta = timedelta(days=7)
    days_ahead: int = 2  # partitions made ahead of time, so live traffic never waits on DDL

    def __post_init__(self) -> None:
        if self.live_horizon < MAX_AGE:
            raise ValueError(
                f"the ledger's live horizon ({self.live_horizon.days} days) must cover the "
                f"{MAX_AGE.days}-day acceptance window"
            )


def ledger_day(occurred_at: datetime) -> date:
    """The ledger day of an event: the UTC date of `occurred_at` (partition key)."""
    return occurred_at.astimezone(UTC).date()


def oldest_live_day(now: datetime, retention: Retention) -> date:
    """The oldest day a live event processed `now` can belong to; older days get only imports."""
    return ledger_day(now - retention.live_horizon) - timedelta(days=1)


def is_old(day: date, now: datetime, retention: Retention) -> bool:
    """True if an event of `day` processed `now` can only be an import."""
    return day < oldest_live_day(now, retention)


def expires(
    day: date, last_old_event_at: datetime | None, now: datetime, retention: Retention
) -> bool:
    """True if `day`'s partition may be dropped `now`: past the live horizon, and no import
    batch wrote to it within the import hold."""
    if not is_old(day, now, retention):
        return False
    return last_old_event_at is None or now - last_old_event_at >= retention.import_hold


def days_to_prepare(now: datetime, retention: Retention) -> list[date]:
    """The live days whose partitions should exist before events arrive: yesterday to ahead."""
    today = ledger_day(now)
    return [today + timedelta(days=d) for d in range(-1, retention.days_ahead + 1)]
