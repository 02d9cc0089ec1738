"""The processed-event ledger: an event counts at most once (SPEC §4), partitioned by the UTC
day of `occurred_at` so an expired day is dropped whole (services/scoring/domain/retention.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.scoring.domain.retention import Retention, expires, is_old, ledger_day
from shared.contract import Envelope


@dataclass(slots=True)
class LedgerOutcome:
    """A batch through the ledger: events never seen before, and events of sealed days."""

    fresh: list[Envelope] = field(default_factory=list)
    sealed: list[Envelope] = field(default_factory=list)


def partition_name(day: date) -> str:
    return f"processed_events_{day:%Y%m%d}"


LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"  # DDL never queues the pipeline behind it


async def open_days(
    session: AsyncSession, days: Iterable[date], now: datetime, retention: Retention
) -> set[date]:
    """Make sure each day has its partition and a `ledger_days` row, unless sealed; return the
    days that are open. DDL: run it in its own short transaction, before a batch's.

    A partition is made as a table of its own, then attached: ATTACH takes SHARE UPDATE
    EXCLUSIVE on the ledger, which batches writing to it do not wait for (CREATE … PARTITION OF
    would take ACCESS EXCLUSIVE). An old day (an import) is stamped now, so its import hold runs
    from its creation even if the batch that needed it has not committed yet."""
    wanted = sorted(set(days))
    if not wanted:
        return set()
    await session.execute(text(LOCK_TIMEOUT))
    rows = await session.execute(
        text("SELECT day, sealed_at IS NULL FROM ledger_days WHERE day = ANY(:days)"),
        {"days": wanted},
    )
    known = {r[0]: bool(r[1]) for r in rows}
    for day in wanted:
        if day in known:
            continue
        name = partition_name(day)
        attached = await session.scalar(
            text(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'processed_events'::regclass "
                "AND inhrelid = to_regclass(:n)"
            ),
            {"n": name},
        )
        if not attached:
            await session.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {name} "
                    "(LIKE processed_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                )
            )
            await session.execute(
                text(
                    f"ALTER TABLE processed_events ATTACH PARTITION {name} "
                    f"FOR VALUES FROM ('{day.isoformat()}') TO ('{day.isoformat()}'::date + 1)"
                )
            )
        stamp = now if is_old(day, now, retention) else None
        await session.execute(
            text(
                "INSERT INTO ledger_days (day, last_old_event_at) VALUES (:day, :stamp) "
                "ON CONFLICT DO NOTHING"
            ),
            {"day": day, "stamp": stamp},
        )
        known[day] = True
    return {d for d, is_open in known.items() if is_open}


async def stamp_imports(
    session: AsyncSession, days: Sequence[date], now: datetime, fresh_for: timedelta
) -> None:
    """Stamp the old `days` a batch imports into (in a short transaction of their own, before
    the batch): each day's import hold runs from its last import. A stamp younger than
    `fresh_for` is left alone — the hold is days, so a minute's slack costs nothing and saves a
    write per batch. Rows are locked in day order (FOR NO KEY UPDATE: batches' KEY SHARE locks
    do not block it), so two replicas stamping cannot deadlock."""
    await session.execute(text(LOCK_TIMEOUT))
    await session.execute(
        text(
            "UPDATE ledger_days SET last_old_event_at = :now WHERE day IN ("
            "SELECT day FROM ledger_days WHERE day = ANY(:days) AND sealed_at IS NULL "
            "AND (last_old_event_at IS NULL OR last_old_event_at < :stale) "
            "ORDER BY day FOR NO KEY UPDATE)"
        ),
        {"now": now, "days": sorted(set(days)), "stale": now - fresh_for},
    )


async def keep_new(session: AsyncSession, envelopes: Sequence[Envelope]) -> LedgerOutcome:
    """Record every event in the ledger; return the events never seen before, and apart the
    events of sealed days (never applied). The days' rows are locked FOR KEY SHARE, so a day
    cannot be sealed (FOR UPDATE) and dropped while this batch writes to it."""
    unique: dict[str, Envelope] = {}
    for env in envelopes:  # one event id, however it is spelled (a UUID's case is not its id)
        unique.setdefault(env.event.event_id.lower(), env)
    outcome = LedgerOutcome()
    if not unique:
        return outcome
    day_of = {i: ledger_day(env.event.occurred_at) for i, env in unique.items()}
    days = sorted(set(day_of.values()))
    # Old days (imports) were stamped before the batch (`stamp_imports`, its own transaction):
    # here every day's row is only KEY SHARE-locked, so replicas importing the same days never
    # wait on one another (an UPDATE here held each day's row until the batch committed and
    # made two replicas take turns) nor on a stamp (NO KEY UPDATE does not conflict with it;
    # FOR SHARE would, and a stream of overlapping batches could starve the stamp), while the
    # seal's FOR UPDATE still waits for every batch writing to the day.
    rows = await session.execute(
        text(
            "SELECT day FROM ledger_days WHERE day = ANY(:days) AND sealed_at IS NULL "
            "ORDER BY day FOR KEY SHARE"
        ),
        {"days": days},
    )
    open_: set[date] = {r[0] for r in rows}
    ids = sorted(i for i in unique if day_of[i] in open_)  # sorted: index walked in order
    outcome.sealed = [env for i, env in unique.items() if day_of[i] not in open_]
    if not ids:
        return outcome
    rows = await session.execute(
        text(
            "INSERT INTO processed_events (event_id, occurred_day, occurred_at) "
            "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:days AS date[]), "
            "CAST(:ats AS timestamptz[])) "
            "ON CONFLICT DO NOTHING RETURNING event_id::text"
        ),
        {
            "ids": ids,
            "days": [day_of[i] for i in ids],
            "ats": [unique[i].event.occurred_at for i in ids],
        },
    )
    fresh = {str(r[0]) for r in rows}
    outcome.fresh = [env for i, env in unique.items() if i in fresh]
    return outcome


@dataclass(frozen=True, slots=True)
class Sealed:
    day: date
    rows: int
    bytes: int


async def expired_days(session: AsyncSession, now: datetime, retention: Retention) -> list[date]:
    """Open days whose partitions may be dropped now, oldest first."""
    rows = await session.execute(
        text("SELECT day, last_old_event_at FROM ledger_days WHERE sealed_at IS NULL ORDER BY day")
    )
    return [r[0] for r in rows if expires(r[0], r[1], now, retention)]


async def seal_day(
    session: AsyncSession, day: date, now: datetime, retention: Retention
) -> Sealed | None:
    """Mark `day` sealed (in the caller's transaction) if it still expires: from the commit on,
    batches refuse its events. The day's row is locked FOR UPDATE first, so a batch writing to
    it finishes before (its FOR KEY SHARE) and the next one sees it sealed."""
    await session.execute(text(LOCK_TIMEOUT))
    row = (
        await session.execute(
            text(
                "SELECT last_old_event_at FROM ledger_days "
                "WHERE day = :day AND sealed_at IS NULL FOR UPDATE"
            ),
            {"day": day},
        )
    ).first()
    if row is None or not expires(day, row[0], now, retention):
        return None  # sealed by another replica, or an import wrote to it meanwhile
    name = partition_name(day)
    size = (
        await session.execute(
            text(
                "SELECT coalesce(pg_total_relation_size(to_regclass(:n)), 0), "
                "(SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:n))"
            ),
            {"n": name},
        )
    ).one()
    await session.execute(
        text("UPDATE ledger_days SET sealed_at = :now WHERE day = :day"), {"now": now, "day": day}
    )
    return Sealed(day=day, rows=max(int(size[1] or 0), 0), bytes=int(size[0]))


async def sealed_partitions(session: AsyncSession) -> list[date]:
    """Sealed days whose partition is still there (dropped next, or left by an interruption)."""
    rows = await session.execute(
        text(
            "SELECT day FROM ledger_days WHERE sealed_at IS NOT NULL "
            "AND to_regclass('processed_events_' || to_char(day, 'YYYYMMDD')) IS NOT NULL "
            "ORDER BY day"
        )
    )
    return [r[0] for r in rows]


async def drop_partition(conn: AsyncConnection, day: date) -> None:
    """Detach a sealed day's partition CONCURRENTLY (SHARE UPDATE EXCLUSIVE: batches writing
    to the ledger do not wait) and drop it. `conn` must be in autocommit mode."""
    name = partition_name(day)
    await conn.execute(text("SET lock_timeout = '5s'"))
    pending = await conn.scalar(
        text(
            "SELECT inhdetachpending FROM pg_inherits "
            "WHERE inhparent = 'processed_events'::regclass AND inhrelid = to_regclass(:n)"
        ),
        {"n": name},
    )
    if pending is not None:  # attached: detach (or finish an interrupted detach)
        how = "FINALIZE" if pending else "CONCURRENTLY"
        await conn.execute(text(f"ALTER TABLE processed_events DETACH PARTITION {name} {how}"))
    await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


async def storage(session: AsyncSession) -> tuple[int, int]:
    """(open partitions, bytes of the whole ledger incl. indexes) — pg_total_relation_size of
    every partition (the partitioned parent itself holds nothing)."""
    row = (
        await session.execute(
            text(
                "SELECT count(*), coalesce(sum(pg_total_relation_size(inhrelid)), 0) "
                "FROM pg_inherits WHERE inhparent = 'processed_events'::regclass"
            )
        )
    ).one()
    return int(row[0]), int(row[1])
