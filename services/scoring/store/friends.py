"""The first `friend_added` of every pair of users (domain/friends.py, SPEC §9). Pairs are
shared by two users' partitions: each batch locks its pairs (advisory locks, ascending) before
reading and writing them, so two replicas never both believe they made a friendship."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.friends import FirstAdd, Move, Pair
from shared.db import lock_keys


async def lock_and_read(session: AsyncSession, pairs: Collection[Pair]) -> dict[Pair, FirstAdd]:
    """Lock these pairs until the transaction ends; their stored first adds."""
    if not pairs:
        return {}
    await lock_keys(session, (f"scoring.friends:{a}\x1f{b}" for a, b in pairs))
    ordered = sorted(pairs)
    rows = await session.execute(
        text(
            "SELECT f.user_lo, f.user_hi, f.first_at, f.first_event_id, f.adder, f.first_day "
            "FROM friend_pairs f JOIN unnest(CAST(:a AS text[]), CAST(:b AS text[])) AS k(a, b) "
            "ON f.user_lo = k.a AND f.user_hi = k.b"
        ),
        {"a": [p[0] for p in ordered], "b": [p[1] for p in ordered]},
    )
    return {
        (r.user_lo, r.user_hi): FirstAdd(r.first_at, r.first_event_id, r.adder, r.first_day)
        for r in rows
    }


async def save(session: AsyncSession, moved: Sequence[Move]) -> None:
    if not moved:
        return
    await session.execute(
        text(
            "INSERT INTO friend_pairs (user_lo, user_hi, first_at, first_event_id, adder, "
            "first_day) SELECT * FROM unnest(CAST(:a AS text[]), CAST(:b AS text[]), "
            "CAST(:t AS timestamptz[]), CAST(:e AS text[]), CAST(:u AS text[]), "
            "CAST(:d AS date[])) "
            "ON CONFLICT (user_lo, user_hi) DO UPDATE SET first_at = excluded.first_at, "
            "first_event_id = excluded.first_event_id, adder = excluded.adder, "
            "first_day = excluded.first_day"
        ),
        {
            "a": [m.pair[0] for m in moved],
            "b": [m.pair[1] for m in moved],
            "t": [m.new.at for m in moved],
            "e": [m.new.event_id for m in moved],
            "u": [m.new.adder for m in moved],
            "d": [m.new.day for m in moved],
        },
    )


# The friends a user made on a day (first adds), for a row aliased `t` with `user_id` and a
# day column; and the count over a month. Used where counters are read and published.
def friend_ids_sql(alias: str, day_column: str) -> str:
    return (
        f"ARRAY(SELECT CASE WHEN f.user_lo = {alias}.user_id THEN f.user_hi ELSE f.user_lo END "
        f"FROM friend_pairs f WHERE f.adder = {alias}.user_id "
        f"AND f.first_day = {alias}.{day_column} "
        "ORDER BY 1)"
    )


def friends_added_day_sql(alias: str, day_column: str) -> str:
    return (
        f"(SELECT count(*) FROM friend_pairs f WHERE f.adder = {alias}.user_id "
        f"AND f.first_day = {alias}.{day_column})"
    )


def friends_added_month_sql(alias: str, month_column: str) -> str:
    return (
        f"(SELECT count(*) FROM friend_pairs f WHERE f.adder = {alias}.user_id "
        f"AND f.first_day >= {alias}.{month_column} "
        f"AND f.first_day < ({alias}.{month_column} + interval '1 month'))"
    )


def touched_days(moved: Iterable[Move]) -> set[tuple[str, date]]:
    """The (user, day) whose `friends_added` the moves change: the old adder's and the new."""
    out: set[tuple[str, date]] = set()
    for m in moved:
        out.add((m.new.adder, m.new.day))
        if m.old is not None:
            out.add((m.old.adder, m.old.day))
    return out
