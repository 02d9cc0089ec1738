"""What the anomaly flags read (domain/anomalies.py), kept exactly in the batch's transaction,
and read back for the changelog and the reads (SPEC §14).

Kept by increments, which commute, so they are exact in any arrival order:
- `user_minute_messages` (messages per user and clock minute) and `user_day.peak_minute_messages`
  (their maximum over the day: counts only grow, so GREATEST is exact);
- `user_day_source`: per user, local day and source, the events and the sum of their minutes;
- `group_day_joins`: joins per group, local day dated and local day heard (a client's join is
  heard when ingest received it: one backdated into a closed month counts as late).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.anomalies import GroupMonthInputs, UserDayInputs
from services.scoring.domain.batch import SourceDay, SourceDayKey
from services.scoring.domain.periods import end_of_month, next_month
from services.scoring.domain.sessions import UserDayKey
from services.scoring.domain.vitality import Weights
from services.scoring.store.rules_sql import (
    member_at_sql,
    member_contribution_sql,
    vitality_sql,
    weight_params,
)

GroupMonthKey = tuple[str, date]


async def add_minute_messages(
    session: AsyncSession, counts: Mapping[tuple[str, int], int], tz: ZoneInfo
) -> None:
    """Messages per (user, minute) += counts; each touched day's peak follows (the user-day
    rows exist: the batch's messages wrote them)."""
    keys = sorted(counts)
    if not keys:
        return
    await session.execute(
        text("""
        WITH m AS (
            INSERT INTO user_minute_messages (user_id, minute, messages)
            SELECT * FROM unnest(CAST(:u AS text[]), CAST(:t AS bigint[]), CAST(:n AS int[]))
            ON CONFLICT (user_id, minute) DO UPDATE
                SET messages = user_minute_messages.messages + excluded.messages
            RETURNING user_id, minute, messages)
        UPDATE user_day d SET peak_minute_messages = GREATEST(d.peak_minute_messages, x.peak)
        FROM (SELECT user_id, (to_timestamp(minute * 60) AT TIME ZONE :tz)::date AS day,
                     max(messages) AS peak
              FROM m GROUP BY 1, 2) x
        WHERE d.user_id = x.user_id AND d.day = x.day"""),
        {
            "u": [k[0] for k in keys],
            "t": [k[1] for k in keys],
            "n": [counts[k] for k in keys],
            "tz": str(tz),
        },
    )


async def add_source_days(
    session: AsyncSession, increments: Mapping[SourceDayKey, SourceDay]
) -> list[UserDayKey]:
    """Fingerprints += increments; returns the user days whose lockstep flag may have changed:
    every user who shares, or shared before this batch, a changed fingerprint."""
    keys = sorted(increments)
    if not keys:
        return []
    rows = await session.execute(
        text("""
        INSERT INTO user_day_source (user_id, day, source, events, minute_sum)
        SELECT * FROM unnest(CAST(:u AS text[]), CAST(:d AS date[]), CAST(:s AS text[]),
                             CAST(:n AS int[]), CAST(:m AS bigint[]))
        ON CONFLICT (user_id, day, source) DO UPDATE
            SET events = user_day_source.events + excluded.events,
                minute_sum = user_day_source.minute_sum + excluded.minute_sum
        RETURNING user_id, day, source, events, minute_sum"""),
        {
            "u": [k[0] for k in keys],
            "d": [k[1] for k in keys],
            "s": [k[2] for k in keys],
            "n": [increments[k].events for k in keys],
            "m": [increments[k].minute_sum for k in keys],
        },
    )
    prints: set[tuple[date, str, int, int]] = set()
    for r in rows:
        inc = increments[(r.user_id, r.day, r.source)]
        prints.add((r.day, r.source, r.events, r.minute_sum))
        if r.events > inc.events:
            prints.add((r.day, r.source, r.events - inc.events, r.minute_sum - inc.minute_sum))
    p = sorted(prints)
    shared = await session.execute(
        text("""
        SELECT DISTINCT o.user_id, o.day FROM unnest(CAST(:d AS date[]), CAST(:s AS text[]),
            CAST(:n AS int[]), CAST(:m AS bigint[])) AS f(d, s, n, m)
        JOIN user_day_source o ON o.day = f.d AND o.source = f.s AND o.events = f.n
                              AND o.minute_sum = f.m"""),
        {
            "d": [x[0] for x in p],
            "s": [x[1] for x in p],
            "n": [x[2] for x in p],
            "m": [x[3] for x in p],
        },
    )
    return [(r.user_id, r.day) for r in shared]


async def days_after(
    session: AsyncSession, changed: Sequence[UserDayKey], days: int
) -> list[UserDayKey]:
    """The stored user days within `days` after each of these: their points history changed."""
    if not changed or days <= 0:
        return []
    keys = sorted(set(changed))
    rows = await session.execute(
        text("""
        SELECT DISTINCT d.user_id, d.day FROM unnest(CAST(:u AS text[]), CAST(:d AS date[]))
            AS k(u, d)
        JOIN user_day d ON d.user_id = k.u AND d.day > k.d AND d.day <= k.d + CAST(:n AS int)"""),
        {"u": [k[0] for k in keys], "d": [k[1] for k in keys], "n": days},
    )
    return [(r.user_id, r.day) for r in rows]


async def add_join_days(session: AsyncSession, joins: Mapping[tuple[str, date, date], int]) -> None:
    """Joins per (group, local day dated, local day heard) += joins."""
    keys = sorted(joins)
    if not keys:
        return
    await session.execute(
        text("""
        INSERT INTO group_day_joins (group_id, day, heard_day, joins)
        SELECT * FROM unnest(CAST(:g AS text[]), CAST(:d AS date[]), CAST(:h AS date[]),
                             CAST(:n AS int[]))
        ON CONFLICT (group_id, day, heard_day) DO UPDATE
            SET joins = group_day_joins.joins + excluded.joins"""),
        {
            "g": [k[0] for k in keys],
            "d": [k[1] for k in keys],
            "h": [k[2] for k in keys],
            "n": [joins[k] for k in keys],
        },
    )


async def user_day_inputs(
    session: AsyncSession, keys: Sequence[UserDayKey], history_days: int
) -> dict[UserDayKey, UserDayInputs]:
    """What the user-day rules read, for each of these (user, day)."""
    if not keys:
        return {}
    ordered = sorted(set(keys))
    rows = await session.execute(
        text("""
        SELECT k.u, k.d, COALESCE(ud.peak_minute_messages, 0) AS peak,
               COALESCE(ud.points_delta, 0) AS points,
               (SELECT COALESCE(sum(h.points_delta), 0) FROM user_day h
                WHERE h.user_id = k.u AND h.day >= k.d - CAST(:n AS int)
                  AND h.day < k.d) AS history,
               ls.source, ls.accounts, ls.events
        FROM unnest(CAST(:u AS text[]), CAST(:d AS date[])) AS k(u, d)
        LEFT JOIN user_day ud ON ud.user_id = k.u AND ud.day = k.d
        LEFT JOIN LATERAL (
            SELECT s.source, s.events,
                   (SELECT count(*) FROM user_day_source o
                    WHERE o.day = s.day AND o.source = s.source AND o.events = s.events
                      AND o.minute_sum = s.minute_sum) AS accounts
            FROM user_day_source s WHERE s.user_id = k.u AND s.day = k.d
            ORDER BY accounts DESC, s.events DESC, s.source LIMIT 1) ls ON true"""),
        {"u": [k[0] for k in ordered], "d": [k[1] for k in ordered], "n": history_days},
    )
    return {
        (r.u, r.d): UserDayInputs(
            peak_minute_messages=r.peak,
            points_delta=int(r.points),
            points_history=int(r.history),
            history_days=history_days,
            lockstep_source=r.source,
            lockstep_accounts=int(r.accounts or 0),
            lockstep_events=int(r.events or 0),
        )
        for r in rows
    }


async def group_month_inputs(
    session: AsyncSession, keys: Sequence[GroupMonthKey], tz: ZoneInfo, w: Weights, late_days: int
) -> dict[GroupMonthKey, GroupMonthInputs]:
    """What the group-month rules read, for each of these (group, month): joins, members as of
    the month's end, vitality under `w`, and the member contributing most."""
    if not keys:
        return {}
    ordered = sorted(set(keys))
    params: dict[str, Any] = {
        "g": [k[0] for k in ordered],
        "m": [k[1] for k in ordered],
        "nm": [next_month(k[1]) for k in ordered],
        "late": [max(k[1], next_month(k[1]) - timedelta(days=late_days)) for k in ordered],
        "e": [end_of_month(k[1], tz) for k in ordered],
        **weight_params(w),
    }
    rows = await session.execute(
        text(f"""
        SELECT k.g, k.m,
               (SELECT COALESCE(sum(j.joins), 0) FROM group_day_joins j
                WHERE j.group_id = k.g AND j.day >= k.m AND j.day < k.nm) AS joins,
               (SELECT COALESCE(sum(j.joins), 0) FROM group_day_joins j
                WHERE j.group_id = k.g AND j.day >= k.m AND j.day < k.nm
                  AND j.heard_day >= k.late) AS late_joins,
               COALESCE({vitality_sql("gm.{}")}, 0) AS vitality,
               top.user_id AS top_id, top.contribution, COALESCE(top.members, 0) AS members
        FROM unnest(CAST(:g AS text[]), CAST(:m AS date[]), CAST(:nm AS date[]),
                    CAST(:late AS date[]), CAST(:e AS timestamptz[])) AS k(g, m, nm, late, e)
        LEFT JOIN group_month gm ON gm.group_id = k.g AND gm.month = k.m
        LEFT JOIN LATERAL (
            SELECT s.user_id, count(*) OVER () AS members,
                   {member_contribution_sql("COALESCE(um.{}, 0)")} AS contribution
            FROM (SELECT DISTINCT user_id FROM membership_spans s
                  WHERE s.group_id = k.g AND {member_at_sql("s", "k.e")}) s
            LEFT JOIN user_month um ON um.user_id = s.user_id AND um.month = k.m
            ORDER BY contribution DESC, s.user_id LIMIT 1) top ON true"""),
        params,
    )
    return {
        (r.g, r.m): GroupMonthInputs(
            joins=int(r.joins),
            late_joins=int(r.late_joins),
            late_days=late_days,
            members=int(r.members),
            vitality=float(r.vitality),
            top_member_id=r.top_id,
            top_member_contribution=float(r.contribution or 0),
        )
        for r in rows
    }


async def remember_published(session: AsyncSession, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Record (changelog key, flag) pairs as published; return the flags of pairs new here."""
    if not pairs:
        return []
    ordered = sorted(set(pairs))
    rows = await session.execute(
        text(
            "INSERT INTO anomaly_flags (key, flag) SELECT * FROM unnest(CAST(:k AS text[]), "
            "CAST(:f AS text[])) ON CONFLICT DO NOTHING RETURNING flag"
        ),
        {"k": [p[0] for p in ordered], "f": [p[1] for p in ordered]},
    )
    return [r.flag for r in rows]


async def prune_minutes(session: AsyncSession, before_minute: int, limit: int = 50_000) -> int:
    """Forget per-minute message counts older than `before_minute` (epoch minutes), at most
    `limit` rows: no event can land there any more (services/scoring/domain/retention.py), and
    each day keeps its peak in `user_day.peak_minute_messages`."""
    result = await session.execute(
        text(
            "DELETE FROM user_minute_messages WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM user_minute_messages WHERE minute < :m LIMIT :n))"
        ),
        {"m": before_minute, "n": limit},
    )
    return int(getattr(result, "rowcount", 0) or 0)
