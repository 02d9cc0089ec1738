"""The processed-event ledger: an event counts at most once per event_id (SPEC §4)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contract import Envelope


async def keep_new(session: AsyncSession, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """Record every event id in the ledger; return the events never seen before."""
    unique: dict[str, Envelope] = {}
    for env in envelopes:
        unique.setdefault(env.event.event_id, env)
    if not unique:
        return []
    ids = sorted(unique)  # sorted: inserts walk the ledger's index in order, not at random
    rows = await session.execute(
        text(
            "INSERT INTO processed_events (event_id, occurred_at) "
            "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[])) "
            "ON CONFLICT DO NOTHING RETURNING event_id::text"
        ),
        {"ids": ids, "ats": [unique[i].event.occurred_at for i in ids]},
    )
    fresh = {str(r[0]) for r in rows}
    return [env for i, env in unique.items() if i.lower() in fresh or i in fresh]
