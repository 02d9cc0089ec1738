"""Groups (attributes from the first `group_created`, dissolution) and their months, SPEC §4,
§14.

Group rows are shared between replicas: they change only by additive deltas, which commute, and
every writer first locks the groups it touches (`lock_groups`), in one statement in ascending
key order — so there is no deadlock cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.batch import GroupCreated
from services.scoring.domain.contributions import GroupMonthDelta, GroupMonthKey
from services.scoring.domain.periods import end_of_month
from services.scoring.store.rules_sql import member_at_sql
from shared.db import lock_keys
from shared.metric_fields import GROUP_MONTH_COUNTERS


async def lock_groups(session: AsyncSession, group_ids: Iterable[str]) -> None:
    """Serialise writers of the same groups until the commit."""
    await lock_keys(session, (f"scoring.group:{g}" for g in group_ids))


async def record_seen(session: AsyncSession, group_ids: Iterable[str]) -> None:
    """Every group an event names gets a row (attributes come with `group_created`): scoring has
    seen it, so its reads answer (SPEC §9)."""
    ids = sorted(set(group_ids))
    if ids:
        await session.execute(
            text(
                "INSERT INTO groups (group_id) SELECT * FROM unnest(CAST(:g AS text[])) "
                "ON CONFLICT DO NOTHING"
            ),
            {"g": ids},
        )


async def exists(session: AsyncSession, group_id: str) -> bool:
    """Whether scoring has seen the group (any event naming it)."""
    found = await session.execute(text("SELECT 1 FROM groups WHERE group_id = :g"), {"g": group_id})
    return found.first() is not None


async def record_created(session: AsyncSession, created: Sequence[GroupCreated]) -> None:
    """Attributes of each group's first accepted `group_created` (domain.group_facts refuses
    any later one); the owner is the creator unless a transfer already named another."""
    if not created:
        return
    c = sorted(created, key=lambda x: (x.group_id, x.at, x.event_id))
    await session.execute(
        text("""
        INSERT INTO groups (group_id, owner_id, creator_id, name, province, created_at,
                            created_event_id)
        SELECT DISTINCT ON (g) g, o, o, n, p, a, e FROM unnest(CAST(:g AS text[]),
            CAST(:o AS text[]), CAST(:n AS text[]), CAST(:p AS text[]),
            CAST(:a AS timestamptz[]), CAST(:e AS text[])) AS x(g, o, n, p, a, e)
        ORDER BY g, a, e
        ON CONFLICT (group_id) DO UPDATE SET
            owner_id = CASE WHEN groups.owner_changed_at IS NULL THEN excluded.owner_id
                            ELSE groups.owner_id END,
            creator_id = excluded.creator_id,
            name = excluded.name, province = excluded.province,
            created_at = excluded.created_at, created_event_id = excluded.created_event_id
        WHERE groups.created_at IS NULL"""),
        {
            "g": [x.group_id for x in c],
            "o": [x.owner_id for x in c],
            "n": [x.name for x in c],
            "p": [x.province for x in c],
            "a": [x.at for x in c],
            "e": [x.event_id for x in c],
        },
    )


async def record_dissolved(session: AsyncSession, dissolved: Mapping[str, datetime]) -> None:
    """The earliest dissolution of each group is kept."""
    if not dissolved:
        return
    ids = sorted(dissolved)
    await session.execute(
        text(
            "INSERT INTO groups (group_id, dissolved_at) "
            "SELECT * FROM unnest(CAST(:g AS text[]), CAST(:a AS timestamptz[])) "
            "ON CONFLICT (group_id) DO UPDATE SET dissolved_at = "
            "LEAST(COALESCE(groups.dissolved_at, excluded.dissolved_at), excluded.dissolved_at)"
        ),
        {"g": ids, "a": [dissolved[i] for i in ids]},
    )


async def open_group_months(
    session: AsyncSession, batch_members: Mapping[GroupMonthKey, int], tz: ZoneInfo
) -> None:
    """Start each of these group months that has no row yet at its members as of the month's
    end before this batch (the spans now, less the batch's own joins and leaves,
    `batch_members`), zeros elsewhere.

    Deltas count a member only through a join or leave processed while the month was current or
    later (domain.membership.membership_flips), so a month's first row must carry the members it
    inherited; whatever else a month holds arrived as deltas, which created its row.
    """
    keys = sorted(batch_members)
    if not keys:
        return
    await session.execute(
        text(f"""
        INSERT INTO group_month (group_id, month, members)
        SELECT k.g, k.m, (SELECT count(DISTINCT s.user_id) FROM membership_spans s
                          WHERE s.group_id = k.g AND {member_at_sql("s", "k.e")}) - k.own
        FROM unnest(CAST(:g AS text[]), CAST(:m AS date[]), CAST(:e AS timestamptz[]),
                    CAST(:own AS bigint[])) AS k(g, m, e, own)
        ON CONFLICT (group_id, month) DO NOTHING"""),
        {
            "g": [k[0] for k in keys],
            "m": [k[1] for k in keys],
            "e": [end_of_month(k[1], tz) for k in keys],
            "own": [batch_members[k] for k in keys],
        },
    )


async def add_to_group_months(
    session: AsyncSession, deltas: Mapping[GroupMonthKey, GroupMonthDelta]
) -> list[GroupMonthKey]:
    """group_month += deltas, one statement in key order; returns the keys written."""
    keys = sorted(deltas)
    if not keys:
        return []
    rows = [deltas[k] for k in keys]
    params: dict[str, Any] = {"g": [k[0] for k in keys], "m": [k[1] for k in keys]}
    for c in GROUP_MONTH_COUNTERS:
        params[c] = [getattr(r, c) for r in rows]
    columns = ", ".join(GROUP_MONTH_COUNTERS)
    arrays = ", ".join(f"CAST(:{c} AS bigint[])" for c in GROUP_MONTH_COUNTERS)
    updates = ", ".join(f"{c} = group_month.{c} + excluded.{c}" for c in GROUP_MONTH_COUNTERS)
    await session.execute(
        text(
            f"INSERT INTO group_month (group_id, month, {columns}) "
            f"SELECT * FROM unnest(CAST(:g AS text[]), CAST(:m AS date[]), {arrays}) "
            f"ON CONFLICT (group_id, month) DO UPDATE SET {updates}"
        ),
        params,
    )
    return keys
