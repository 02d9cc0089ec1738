"""Keeping the processed-event ledger bounded (services/scoring/domain/retention.py): partitions
made before their days' events arrive, expired days dropped whole and sealed; the per-minute
message counts behind the `message_rate` flag forgotten on the same horizon."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.domain.retention import Retention, days_to_prepare, is_old, ledger_day
from services.scoring.store import anomalies, ledger
from shared.contract import Envelope

log = logging.getLogger(__name__)

PARTITIONS = Gauge(
    "engage_scoring_ledger_partitions", "Open days (partitions) of the processed-event ledger."
)
LEDGER_BYTES = Gauge(
    "engage_scoring_ledger_bytes",
    "Storage of the processed-event ledger, indexes included (pg_total_relation_size).",
)
SEALED_DAYS = Counter(
    "engage_scoring_ledger_sealed_days_total",
    "Ledger days dropped after their horizon; their later events are refused.",
)
SEALED_EVENTS = Counter(
    "engage_scoring_sealed_day_events_total",
    "Events refused because their UTC day's ledger was already dropped (docs/operations.md).",
)

# An import day's stamp is refreshed at most this often: its hold is days long.
STAMP_EVERY = timedelta(minutes=1)


class LedgerDays:
    """Makes sure the days of a batch have their partitions (DDL outside the batch's
    transaction). Remembers the days it saw, so live traffic costs one set lookup per batch."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], retention: Retention | None = None
    ) -> None:
        self._sessions = sessions
        self._retention = retention or Retention()
        self._seen: set[date] = set()
        self._stamped: dict[date, datetime] = {}

    async def prepare(self, days: Iterable[date], now: datetime | None = None) -> None:
        missing = set(days) - self._seen
        if not missing:
            return
        async with self._sessions() as session, session.begin():
            await ledger.open_days(session, missing, now or datetime.now(UTC), self._retention)
        self._seen |= missing  # sealed ones too: the batch refuses their events itself

    async def prepare_events(
        self, envelopes: Iterable[Envelope], now: datetime | None = None
    ) -> None:
        """The batch's days exist, and the old ones (an import) are stamped (ledger.py
        `stamp_imports`) — at most once a minute per day and process."""
        now = now or datetime.now(UTC)
        days = {ledger_day(env.event.occurred_at) for env in envelopes}
        await self.prepare(days, now)
        due = sorted(
            d for d in days
            if is_old(d, now, self._retention)
            and not (d in self._stamped and now - self._stamped[d] < STAMP_EVERY)
        )  # fmt: skip
        if due:
            async with self._sessions() as session, session.begin():
                await ledger.stamp_imports(session, due, now, STAMP_EVERY)
            self._stamped.update(dict.fromkeys(due, now))


def refused_sealed(envelopes: list[Envelope]) -> None:
    """Count (and log once per batch) events refused because their day was sealed."""
    if envelopes:
        SEALED_EVENTS.inc(len(envelopes))
        days = sorted({ledger_day(e.event.occurred_at).isoformat() for e in envelopes})
        log.warning(
            "refused %d events of sealed ledger days %s (older than the ledger's horizon; "
            "see docs/operations.md, 'Retention')",
            len(envelopes),
            ", ".join(days[:5]) + (" …" if len(days) > 5 else ""),
        )


async def maintain_once(
    sessions: async_sessionmaker[AsyncSession], retention: Retention, now: datetime
) -> list[ledger.Sealed]:
    """One pass: partitions for the coming days, expired days sealed, gauges updated."""
    async with sessions() as session, session.begin():
        await ledger.open_days(session, days_to_prepare(now, retention), now, retention)
    sealed: list[ledger.Sealed] = []
    async with sessions() as session:
        expired = await ledger.expired_days(session, now, retention)
    for expired_day in expired:  # one day per transaction: never many locks at once
        async with sessions() as session, session.begin():
            done = await ledger.seal_day(session, expired_day, now, retention)
            if done is not None:
                sealed.append(done)
    async with sessions() as session:
        to_drop = await ledger.sealed_partitions(session)
    engine = sessions.kw["bind"]
    for gone in to_drop:
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await ledger.drop_partition(autocommit, gone)
    # Per-minute message counts (message_rate) are kept as long as the ledger's live days.
    before = int((now - retention.live_horizon - timedelta(days=1)).timestamp()) // 60
    while True:
        async with sessions() as session, session.begin():
            if await anomalies.prune_minutes(session, before) == 0:
                break
    async with sessions() as session:
        partitions, size = await ledger.storage(session)
    for s in sealed:
        log.info("ledger day %s sealed: %d rows, %d bytes dropped", s.day, s.rows, s.bytes)
    SEALED_DAYS.inc(len(sealed))
    PARTITIONS.set(partitions)
    LEDGER_BYTES.set(size)
    return sealed


def retention_loop(
    sessions: async_sessionmaker[AsyncSession],
    retention: Retention,
    interval_s: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The background loop (every replica; passes are idempotent and lock day by day)."""

    async def run() -> None:
        while True:
            await maintain_once(sessions, retention, clock())
            await asyncio.sleep(interval_s)

    return run
