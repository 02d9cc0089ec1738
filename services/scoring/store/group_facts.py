"""The stored facts that decide group-fact events (SPEC §14), owner transfers, and the audit
of refused events.

Deciding a `group_created` or `group_dissolved` needs the group's facts before the batch's
memberships are written, so they are locked first, under keys of their own
(`scoring.group_facts:<id>`): every batch takes these before any `scoring.group:<id>` lock
(store/groups.py), each set in one ordered statement, so the order is global and no two writers
wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.group_facts import GroupFacts, Refusal
from shared.db import lock_keys


async def lock_and_read(session: AsyncSession, group_ids: Iterable[str]) -> dict[str, GroupFacts]:
    """Lock these groups' facts until the commit and return those stored (absent: none)."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    await lock_keys(session, (f"scoring.group_facts:{g}" for g in ids))
    rows = await session.execute(
        text(
            "SELECT group_id, created_at IS NOT NULL AS created, creator_id, owner_changed_at, "
            "owner_changed_event_id, owner_id FROM groups WHERE group_id = ANY(:g)"
        ),
        {"g": ids},
    )
    return {
        r.group_id: GroupFacts(
            created=r.created,
            creator_id=r.creator_id,
            transfer_at=r.owner_changed_at,
            transfer_event_id=r.owner_changed_event_id,
            transfer_to=r.owner_id if r.owner_changed_at is not None else None,
        )
        for r in rows
    }


async def record_transfers(session: AsyncSession, facts: Mapping[str, GroupFacts]) -> None:
    """Owner = the latest accepted transfer's user (the row exists: groups.record_seen)."""
    moved = sorted((g, f) for g, f in facts.items() if f.transfer_at is not None)
    if not moved:
        return
    await session.execute(
        text("""
        UPDATE groups SET owner_id = x.o, owner_changed_at = x.a, owner_changed_event_id = x.e
        FROM unnest(CAST(:g AS text[]), CAST(:o AS text[]), CAST(:a AS timestamptz[]),
                    CAST(:e AS text[])) AS x(g, o, a, e)
        WHERE groups.group_id = x.g"""),
        {
            "g": [g for g, _ in moved],
            "o": [f.transfer_to for _, f in moved],
            "a": [f.transfer_at for _, f in moved],
            "e": [f.transfer_event_id for _, f in moved],
        },
    )


async def record_refusals(session: AsyncSession, refused: Sequence[Refusal]) -> None:
    """Audit each refused event once (the ledger already makes a repeat impossible)."""
    if not refused:
        return
    rows = sorted(refused, key=lambda r: r.event_id)
    await session.execute(
        text("""
        INSERT INTO refused_events (event_id, type, user_id, group_id, authority, source,
                                    occurred_at, reason)
        SELECT * FROM unnest(CAST(:i AS text[]), CAST(:t AS text[]), CAST(:u AS text[]),
            CAST(:g AS text[]), CAST(:au AS text[]), CAST(:s AS text[]),
            CAST(:a AS timestamptz[]), CAST(:r AS text[]))
        ON CONFLICT (event_id) DO NOTHING"""),
        {
            "i": [r.event_id for r in rows],
            "t": [r.type for r in rows],
            "u": [r.user_id for r in rows],
            "g": [r.group_id for r in rows],
            "au": [r.authority for r in rows],
            "s": [r.source for r in rows],
            "a": [r.occurred_at for r in rows],
            "r": [r.reason for r in rows],
        },
    )


async def refusals_of_group(session: AsyncSession, group_id: str) -> list[dict[str, object]]:
    """The refused events that named this group, oldest first (audit reads)."""
    rows = await session.execute(
        text(
            "SELECT event_id, type, user_id, authority, source, occurred_at, reason, refused_at "
            "FROM refused_events WHERE group_id = :g ORDER BY refused_at, event_id"
        ),
        {"g": group_id},
    )
    return [dict(r._mapping) for r in rows]
