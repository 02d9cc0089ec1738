"""Users scoring has applied an event of, with the local day of their earliest event (SPEC §9:
a user never seen is a 404; §10: `first_seen`). Rows are per user, so per partition: replicas
never share them (usecases/apply_events.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def record_seen(
    session: AsyncSession, first_seen: Mapping[str, date]
) -> dict[str, tuple[date | None, date]]:
    """Add new users; move a user's `first_seen` back when a late event is earlier. Returns each
    user's `first_seen` before (None: new) and after."""
    ids = sorted(first_seen)
    if not ids:
        return {}
    stored: dict[str, date] = dict(
        (
            await session.execute(
                text("SELECT user_id, first_seen FROM users WHERE user_id = ANY(:u)"), {"u": ids}
            )
        )
        .tuples()
        .all()
    )
    await session.execute(
        text(
            "INSERT INTO users (user_id, first_seen) "
            "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:d AS date[])) "
            "ON CONFLICT (user_id) DO UPDATE SET first_seen = excluded.first_seen "
            "WHERE excluded.first_seen < users.first_seen"
        ),
        {"u": ids, "d": [first_seen[i] for i in ids]},
    )
    out: dict[str, tuple[date | None, date]] = {}
    for i in ids:
        old: date | None = stored.get(i)
        out[i] = (old, first_seen[i] if old is None else min(old, first_seen[i]))
    return out


async def first_seen(session: AsyncSession, user_id: str) -> date | None:
    """The user's first local day, or None when scoring never applied an event of theirs."""
    day: date | None = (
        await session.execute(
            text("SELECT first_seen FROM users WHERE user_id = :u"), {"u": user_id}
        )
    ).scalar_one_or_none()
    return day
