"""Stored sessions: one row per (user, session_id) with its earliest login and latest logout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.sessions import SessionKey, SessionState


async def lock_sessions(
    session: AsyncSession, keys: Sequence[SessionKey]
) -> dict[SessionKey, SessionState]:
    """The stored state of these sessions (absent: none yet), locked until the commit."""
    if not keys:
        return {}
    rows = await session.execute(
        text(
            "SELECT s.user_id, s.session_id, start_at, start_client, start_event_id, end_at "
            "FROM sessions s JOIN unnest(CAST(:u AS text[]), CAST(:s AS text[])) AS k(u, s) "
            "ON s.user_id = k.u AND s.session_id = k.s FOR UPDATE OF s"
        ),
        {"u": [k[0] for k in keys], "s": [k[1] for k in keys]},
    )
    return {
        (r.user_id, r.session_id): SessionState(
            r.start_at, r.start_client, r.start_event_id, r.end_at
        )
        for r in rows
    }


async def save_sessions(session: AsyncSession, states: Mapping[SessionKey, SessionState]) -> None:
    if not states:
        return
    keys = list(states)
    values = list(states.values())
    await session.execute(
        text(
            "INSERT INTO sessions "
            "(user_id, session_id, start_at, start_client, start_event_id, end_at) "
            "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:s AS text[]), "
            "CAST(:sa AS timestamptz[]), "
            "CAST(:sc AS text[]), CAST(:se AS text[]), CAST(:ea AS timestamptz[])) "
            "ON CONFLICT (user_id, session_id) DO UPDATE SET start_at = excluded.start_at, "
            "start_client = excluded.start_client, start_event_id = excluded.start_event_id, "
            "end_at = excluded.end_at"
        ),
        {
            "u": [k[0] for k in keys],
            "s": [k[1] for k in keys],
            "sa": [st.start_at for st in values],
            "sc": [st.start_client for st in values],
            "se": [st.start_event_id for st in values],
            "ea": [st.end_at for st in values],
        },
    )
