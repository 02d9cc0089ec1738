"""The processed-event ledger: an event counts at most once (SPEC §4), partitioned by the UTC
day of `occurred_at` so an expired day is dropped whole (services/scoring/domain/retention.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.retention import Retention, expires, is_old, ledger_day
from shared.contract import Envelope


@dataclass(slots=True)
class LedgerOutcome:
    """A batch through the ledger: events never seen before, and events of sealed days."""

    fresh: list[Envelope] = field(default_factory=list)
    sealed: list[Envelope] = field(default_factory=list)


def partition_name(day: date) -> str:
    return f"processed_events_{day:%Y%m%d}"


async def open_days(session: AsyncSession, days: Iterable[date]) -> set[date]:
    """Make sure each day has its partition and a `ledger_days` row, unless sealed; return the
    days that are open. DDL: run it in its own short transaction, before a batch's."""
    wanted = sorted(set(days))
    if not wanted:
        return set()
    rows = await session.execute(
        text("SELECT day, sealed_at IS NULL FROM ledger_days WHERE day = ANY(:days)"),
        {"days": wanted},
    )
    known = {r[0]: bool(r[1]) for r in rows}
    for day in wanted:
        if day in known:
            continue
        # IF NOT EXISTS: another replica may be making the same day at the same moment.
        await session.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF processed_events "
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{day.isoformat()}'::date + 1)"
            )
        )
        await session.execute(
            text("INSERT INTO ledger_days (day) VALUES (:day) ON CONFLICT DO NOTHING"),
            {"day": day},
        )
        known[day] = True
    return {d for d, is_open in known.items() if is_open}


async def keep_new(
    session: AsyncSession, envelopes: Sequence[Envelope], now: datetime, retention: Retention
) -> LedgerOutcome:
    """Record every event in the ledger; return the events never seen before, and apart the
    events of sealed days (never applied). The days' rows are locked FOR SHARE, so a day cannot
    be sealed and dropped while this batch writes to it."""
    unique: dict[str, Envelope] = {}
    for env in envelopes:
        unique.setdefault(env.event.event_id, env)
    outcome = LedgerOutcome()
    if not unique:
        return outcome
    day_of = {i: ledger_day(env.event.occurred_at) for i, env in unique.items()}
    days = sorted(set(day_of.values()))
    rows = await session.execute(
        text("SELECT day FROM ledger_days WHERE day = ANY(:days) AND sealed_at IS NULL FOR SHARE"),
        {"days": days},
    )
    open_ = {r[0] for r in rows}
    old = [d for d in open_ if is_old(d, now, retention)]
    if old:  # an import: it keeps the day's ledger for the import hold
        await session.execute(
            text("UPDATE ledger_days SET last_old_event_at = :now WHERE day = ANY(:days)"),
            {"now": now, "days": old},
        )
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
    outcome.fresh = [env for i, env in unique.items() if i.lower() in fresh or i in fresh]
    return outcome


@dataclass(frozen=True, slots=True)
class Sealed:
    day: date
    rows: int
    bytes: int


async def seal_expired(session: AsyncSession, now: datetime, retention: Retention) -> list[Sealed]:
    """Drop the partition of every expired open day and mark the day sealed, one day per
    transaction (commits), oldest first. Each day's row is locked FOR UPDATE first, so a batch
    writing to that day finishes before its partition goes (and the next sees it sealed)."""
    rows = await session.execute(
        text("SELECT day, last_old_event_at FROM ledger_days WHERE sealed_at IS NULL ORDER BY day")
    )
    candidates = [r[0] for r in rows if expires(r[0], r[1], now, retention)]
    await session.commit()
    sealed: list[Sealed] = []
    for day in candidates:
        async with session.begin():
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
                continue  # sealed by another replica, or an import wrote to it meanwhile
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
            await session.execute(text(f"DROP TABLE IF EXISTS {name}"))
            await session.execute(
                text("UPDATE ledger_days SET sealed_at = :now WHERE day = :day"),
                {"now": now, "day": day},
            )
            sealed.append(Sealed(day=day, rows=max(int(size[1] or 0), 0), bytes=int(size[0])))
    return sealed


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
