"""Per-campaign exclusion lists (SPEC §10): users and groups that never win. Only flushes."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.exclusions import Exclusions


async def exclusions_of(session: AsyncSession, campaign_id: str) -> Exclusions:
    rows = await session.execute(
        text("SELECT subject, subject_id FROM exclusions WHERE campaign_id = :c"),
        {"c": campaign_id},
    )
    users: set[str] = set()
    groups: set[str] = set()
    for r in rows:
        (users if r.subject == "user" else groups).add(r.subject_id)
    return Exclusions(frozenset(users), frozenset(groups))


async def replace_exclusions(
    session: AsyncSession, campaign_id: str, users: Iterable[str], groups: Iterable[str]
) -> None:
    """The campaign's lists become exactly `users` and `groups`."""
    await session.execute(text("DELETE FROM exclusions WHERE campaign_id = :c"), {"c": campaign_id})
    subjects = [("user", u) for u in sorted(set(users))] + [
        ("group", g) for g in sorted(set(groups))
    ]
    if subjects:
        await session.execute(
            text(
                "INSERT INTO exclusions (campaign_id, subject, subject_id) "
                "SELECT :c, * FROM unnest(CAST(:s AS text[]), CAST(:i AS text[]))"
            ),
            {"c": campaign_id, "s": [s for s, _ in subjects], "i": [i for _, i in subjects]},
        )
