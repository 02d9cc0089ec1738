"""The partitioned processed-event ledger on a real PostgreSQL (SPEC §4; issue 19): exactly once
across the live window, imports exactly once within their hold and refused (never counted
twice) once their day is sealed, and storage bounded by the horizon — expired days dropped as
whole partitions.

Scoring's use cases run directly (apply_events, the retention pass) with a simulated clock, in a
schema of their own, migrated like the service's."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engage.stack import Stack
from services.scoring.domain.retention import Retention, ledger_day
from services.scoring.usecases.apply_events import apply_events
from services.scoring.usecases.ledger_retention import LedgerDays, maintain_once
from shared.contract import Envelope, decode_envelope, encode_envelope
from shared.db import make_engine, make_sessionmaker, migrate
from tests.builders import make_event

pytestmark = pytest.mark.asyncio

MIGRATIONS = Path(__file__).parents[2] / "services" / "scoring" / "store" / "migrations"
TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
R = Retention()
_schemas = itertools.count()


@pytest.fixture
async def sessions(stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    assert stack.database_url
    schema = f"ledger_t{next(_schemas)}"
    engine = make_engine(stack.database_url, schema, pool_size=2)
    try:
        await migrate(engine, MIGRATIONS, schema, MetaData())
        yield make_sessionmaker(engine)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


def envelope(raw: dict[str, object], received: datetime) -> Envelope:
    return decode_envelope(encode_envelope(raw, received.isoformat(), "test", "user"))


async def through_scoring(
    sessions: async_sessionmaker[AsyncSession], envs: list[Envelope], now: datetime
) -> tuple[int, int]:
    """What the consumer does with a batch: its days prepared, then applied in one transaction.
    Returns (new events, events refused for a sealed day)."""
    await LedgerDays(sessions, R).prepare_events(envs, now)
    async with sessions() as session, session.begin():
        outcome = await apply_events(session, envs, TZ, now)
    return len(outcome.new_events), len(outcome.sealed)


async def messages_of(sessions: async_sessionmaker[AsyncSession], user: str) -> int:
    async with sessions() as session:
        n = await session.scalar(
            text("SELECT coalesce(sum(messages), 0) FROM user_day WHERE user_id = :u"), {"u": user}
        )
    return int(n or 0)


async def test_a_retry_counts_once_across_the_whole_acceptance_window(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    occurred = START - timedelta(days=1)
    raw = make_event("message", at=occurred, user_id="retry")
    assert await through_scoring(sessions, [envelope(raw, START)], START) == (1, 0)
    # Every day until ingest would refuse the event as too old, the retry finds its day open.
    clock = START
    while clock - occurred < timedelta(days=35):
        await maintain_once(sessions, R, clock)
        assert await through_scoring(sessions, [envelope(raw, clock)], clock) == (0, 0), clock
        clock += timedelta(days=1)
    assert await messages_of(sessions, "retry") == 1


async def test_an_import_counts_once_while_held_and_is_refused_once_sealed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    old = START - timedelta(days=200)
    batch = [make_event("message", at=old + timedelta(minutes=i), user_id="hist") for i in range(5)]
    envs = [envelope(e, START) for e in batch]
    assert await through_scoring(sessions, envs, START) == (5, 0)
    # The same import re-run within the hold: every event recognised.
    later = START + R.import_hold - timedelta(hours=1)
    await maintain_once(sessions, R, later)
    assert await through_scoring(sessions, envs, later) == (0, 0)
    # The re-import moved the hold: past the first batch's hold, the day is still kept.
    assert await maintain_once(sessions, R, START + R.import_hold + timedelta(hours=1)) == []
    # The hold counts from the last import batch; after it, the day is dropped and sealed.
    sealed_at = later + R.import_hold
    sealed = await maintain_once(sessions, R, sealed_at)
    assert [s.day for s in sealed] == [ledger_day(old)]
    # A third run: refused, not counted twice — and not counted at all.
    assert await through_scoring(sessions, envs, sealed_at) == (0, 5)
    new_on_sealed_day = [envelope(make_event("message", at=old, user_id="hist"), sealed_at)]
    assert await through_scoring(sessions, new_on_sealed_day, sealed_at) == (0, 1)
    assert await messages_of(sessions, "hist") == 5


async def test_sixty_days_leave_only_the_horizon_on_disk(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """60 simulated days of live traffic (the same number of events a day): the ledger keeps
    the horizon's days and drops the rest; its size stops growing once the horizon is full."""
    per_day = 400
    sizes: list[int] = []
    for d in range(60):
        now = START + timedelta(days=d)
        await maintain_once(sessions, R, now)
        batch = [
            envelope(make_event("message", at=now - timedelta(minutes=i), user_id=f"u{i}"), now)
            for i in range(per_day)
        ]
        assert await through_scoring(sessions, batch, now) == (per_day, 0)
        async with sessions() as session:
            size = await session.scalar(
                text(
                    "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                    "WHERE inhparent = 'processed_events'::regclass"
                )
            )
            days = await session.scalar(text("SELECT count(*) FROM ledger_days"))
            open_days = await session.scalar(
                text("SELECT count(*) FROM ledger_days WHERE sealed_at IS NULL")
            )
        sizes.append(int(size or 0))
        horizon_days = R.live_horizon.days + 2 + R.days_ahead + 1
        assert int(open_days or 0) <= horizon_days, (d, open_days)
    assert int(days or 0) > horizon_days  # days were made and sealed, not just never made
    # Once the horizon is full the size stays flat: the last 10 days within 10% of each other.
    tail = sizes[-10:]
    assert max(tail) <= min(tail) * 1.1, tail
    async with sessions() as session:
        rows = await session.scalar(text("SELECT count(*) FROM processed_events"))
        oldest_minute = await session.scalar(text("SELECT min(minute) FROM user_minute_messages"))
    assert int(rows or 0) < 60 * per_day * 0.8
    # The per-minute counts behind the message_rate flag are forgotten on the same horizon.
    assert oldest_minute is not None
    horizon_start = now - R.live_horizon - timedelta(days=1)
    assert int(oldest_minute) >= int(horizon_start.timestamp()) // 60


async def test_a_new_import_day_is_held_from_its_creation(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The day is made before its batch commits; a retention pass in between must not seal it
    (its events would then be refused after ingest said 202)."""
    old = START - timedelta(days=300)
    envs = [envelope(make_event("message", at=old, user_id="early"), START)]
    await LedgerDays(sessions, R).prepare_events(envs, START)
    assert await maintain_once(sessions, R, START + timedelta(hours=1)) == []
    async with sessions() as session, session.begin():
        outcome = await apply_events(session, envs, TZ, START + timedelta(hours=1))
    assert (len(outcome.new_events), len(outcome.sealed)) == (1, 0)


async def test_two_replicas_importing_the_same_old_day_do_not_deadlock(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Imports are keyed by user, so every replica writes the same old days at once: each
    stamps the days in a short transaction of its own (day order) and then shares their rows
    for its batch — four replicas at once, in opposite day orders, neither deadlock nor wait
    for one another's batches."""
    old = START - timedelta(days=120)
    days = [old + timedelta(days=d) for d in range(3)]
    batches = [
        [envelope(make_event("message", at=d, user_id=f"imp{r}-{i}"), START)
         for i in range(50) for d in (days if r % 2 else reversed(days))]
        for r in range(4)
    ]  # fmt: skip
    # The partitions exist first (as after any earlier batch); the stamps race below.
    await LedgerDays(sessions, R).prepare([ledger_day(d) for d in days], START)

    async def apply(batch: list[Envelope]) -> int:
        await LedgerDays(sessions, R).prepare_events(batch, START)  # a replica of its own
        async with sessions() as session, session.begin():
            return len((await apply_events(session, batch, TZ, START)).new_events)

    assert await asyncio.gather(*(apply(b) for b in batches)) == [150] * 4
