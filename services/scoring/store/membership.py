"""Join/leave facts as they arrived, and the membership spans folded from them (SPEC §4)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.contributions import UserMonthKey
from services.scoring.domain.membership import MembershipEvent, MembershipFact, Pair, Span
from services.scoring.domain.periods import end_of_month
from services.scoring.store.rules_sql import member_at_sql


async def add_membership_events(session: AsyncSession, facts: Sequence[MembershipFact]) -> None:
    """Store the facts (one seen before is kept as it was)."""
    if not facts:
        return
    await session.execute(
        text(
            "INSERT INTO membership_events (group_id, user_id, occurred_at, event_id, joined) "
            "SELECT * FROM unnest(CAST(:g AS text[]), CAST(:u AS text[]), "
            "CAST(:at AS timestamptz[]), CAST(:e AS text[]), CAST(:j AS boolean[])) "
            "ON CONFLICT DO NOTHING"
        ),
        {
            "g": [f.group_id for f in facts],
            "u": [f.user_id for f in facts],
            "at": [f.at for f in facts],
            "e": [f.event_id for f in facts],
            "j": [f.joined for f in facts],
        },
    )


async def membership_events(
    session: AsyncSession, pairs: Sequence[Pair]
) -> dict[Pair, list[MembershipEvent]]:
    """Every stored join and leave of these pairs."""
    events: dict[Pair, list[MembershipEvent]] = {pair: [] for pair in pairs}
    if not pairs:
        return events
    rows = await session.execute(
        text(
            "SELECT e.group_id, e.user_id, occurred_at, event_id, joined FROM membership_events e "
            "JOIN unnest(CAST(:g AS text[]), CAST(:u AS text[])) AS k(g, u) "
            "ON e.group_id = k.g AND e.user_id = k.u"
        ),
        {"g": [p[0] for p in pairs], "u": [p[1] for p in pairs]},
    )
    for r in rows:
        events[(r.group_id, r.user_id)].append(MembershipEvent(r.occurred_at, r.event_id, r.joined))
    return events


async def take_spans(session: AsyncSession, pairs: Sequence[Pair]) -> dict[Pair, list[Span]]:
    """Remove these pairs' stored spans and return them (`put_spans` writes the new ones)."""
    spans: dict[Pair, list[Span]] = {pair: [] for pair in pairs}
    if not pairs:
        return spans
    rows = await session.execute(
        text(
            "DELETE FROM membership_spans s USING unnest(CAST(:g AS text[]), CAST(:u AS text[])) "
            "AS k(g, u) WHERE s.group_id = k.g AND s.user_id = k.u "
            "RETURNING s.group_id, s.user_id, s.joined_at, s.left_at"
        ),
        {"g": [p[0] for p in pairs], "u": [p[1] for p in pairs]},
    )
    for r in rows:
        spans[(r.group_id, r.user_id)].append(Span(r.joined_at, r.left_at))
    return spans


async def put_spans(session: AsyncSession, spans: Mapping[Pair, Sequence[Span]]) -> None:
    rows = [(pair, span) for pair, pair_spans in spans.items() for span in pair_spans]
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO membership_spans (group_id, user_id, joined_at, left_at) "
            "SELECT * FROM unnest(CAST(:g AS text[]), CAST(:u AS text[]), "
            "CAST(:j AS timestamptz[]), CAST(:l AS timestamptz[]))"
        ),
        {
            "g": [p[0] for p, _ in rows],
            "u": [p[1] for p, _ in rows],
            "j": [s.joined_at for _, s in rows],
            "l": [s.left_at for _, s in rows],
        },
    )


async def groups_at_month_end(
    session: AsyncSession, user_months: Collection[UserMonthKey], tz: ZoneInfo
) -> dict[UserMonthKey, list[str]]:
    """For each (user, month): the groups the user is a member of at the month's end."""
    keys = sorted(user_months)
    if not keys:
        return {}
    ends = {month: end_of_month(month, tz) for month in {k[1] for k in keys}}
    rows = await session.execute(
        text(
            "SELECT DISTINCT t.user_id, t.month, s.group_id "
            "FROM unnest(CAST(:u AS text[]), CAST(:m AS date[]), CAST(:e AS timestamptz[])) "
            "AS t(user_id, month, month_end) "
            "JOIN membership_spans s ON s.user_id = t.user_id "
            f"WHERE {member_at_sql('s', 't.month_end')}"
        ),
        {
            "u": [k[0] for k in keys],
            "m": [k[1] for k in keys],
            "e": [ends[k[1]] for k in keys],
        },
    )
    groups: dict[UserMonthKey, list[str]] = {}
    for r in rows:
        groups.setdefault((r.user_id, r.month), []).append(r.group_id)
    return groups
