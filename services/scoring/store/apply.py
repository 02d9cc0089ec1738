"""Performs a batch plan in one transaction: ledger, aggregates, changelog outbox and offsets.

Concurrency (several replicas, SPEC §4 "scales out"): user-level rows belong to one partition
(events are keyed by user_id, and a retried event keeps its user), so replicas never share them,
and a partition's batches are serialised by the lock on its stored offset. Group rows are shared:
they change only by additive deltas, which commute, and every transaction first takes
transaction-scoped advisory locks on the groups it touches, in ascending key order and in one
statement — so there is no deadlock cycle.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.batch import BatchPlan, SessionFact
from services.scoring.domain.membership import MembershipEvent, Span, is_member, spans_of
from services.scoring.domain.periods import end_of_month, local_day, month_of, months_between
from services.scoring.domain.sessions import SessionState, online_time_by_day
from services.scoring.domain.vitality import (
    MESSAGE_POINTS_CAP,
    MOBILE_SECONDS_PER_POINT,
    ONLINE_POINTS_CAP,
    PC_SECONDS_PER_POINT,
)
from services.scoring.store.changelog import (
    USER_DAY_COLUMNS,
    USER_MONTH_COLUMNS,
    group_month_key,
    mark_changed,
    user_day_key,
    user_month_key,
)
from shared.contract import Envelope
from shared.db import lock_keys

ONLINE_POINTS_SQL = (
    f"LEAST({ONLINE_POINTS_CAP}, online_seconds_pc / {PC_SECONDS_PER_POINT}"
    f" + online_seconds_mobile / {MOBILE_SECONDS_PER_POINT})"
)
MESSAGE_POINTS_SQL = f"LEAST(messages, {MESSAGE_POINTS_CAP})"
MONTH_END_SQL = "((t.month + interval '1 month')::timestamp AT TIME ZONE :tz)"


STEP_SECONDS = Histogram(
    "engage_scoring_step_seconds",
    "Time per step of applying a batch (database included).",
    ["step"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


@contextmanager
def _step(name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    STEP_SECONDS.labels(name).observe(time.perf_counter() - start)


@dataclass(slots=True)
class BatchOutcome:
    new_events: list[Envelope] = field(default_factory=list)
    duplicates: int = 0


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


async def _apply_sessions(
    session: AsyncSession,
    facts: list[SessionFact],
    tz: ZoneInfo,
    user_day: dict[tuple[str, date], dict[str, int]],
) -> None:
    by_key: dict[tuple[str, str], list[SessionFact]] = defaultdict(list)
    for fact in facts:
        by_key[(fact.user_id, fact.session_id)].append(fact)
    keys = sorted(by_key)
    rows = await session.execute(
        text(
            "SELECT s.user_id, s.session_id, start_at, start_client, start_event_id, end_at "
            "FROM sessions s JOIN unnest(CAST(:u AS text[]), CAST(:s AS text[])) AS k(u, s) "
            "ON s.user_id = k.u AND s.session_id = k.s FOR UPDATE OF s"
        ),
        {"u": [k[0] for k in keys], "s": [k[1] for k in keys]},
    )
    old = {
        (r.user_id, r.session_id): SessionState(
            r.start_at, r.start_client, r.start_event_id, r.end_at
        )
        for r in rows
    }
    new_states: list[tuple[tuple[str, str], SessionState]] = []
    for key in keys:
        before = old.get(key, SessionState())
        after = before
        for fact in by_key[key]:
            after = (
                after.with_login(fact.at, fact.client, fact.event_id)
                if fact.kind == "login"
                else after.with_logout(fact.at)
            )
        new_states.append((key, after))
        gained, lost = online_time_by_day(after, tz), online_time_by_day(before, tz)
        for day in gained.keys() | lost.keys():
            g, lo = gained.get(day), lost.get(day)
            d_pc = (g.pc if g else 0) - (lo.pc if lo else 0)
            d_mobile = (g.mobile if g else 0) - (lo.mobile if lo else 0)
            if d_pc or d_mobile:
                counters = user_day.setdefault((key[0], day), {})
                counters["online_seconds_pc"] = counters.get("online_seconds_pc", 0) + d_pc
                counters["online_seconds_mobile"] = (
                    counters.get("online_seconds_mobile", 0) + d_mobile
                )
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
            "u": [k[0] for k, _ in new_states],
            "s": [k[1] for k, _ in new_states],
            "sa": [st.start_at for _, st in new_states],
            "sc": [st.start_client for _, st in new_states],
            "se": [st.start_event_id for _, st in new_states],
            "ea": [st.end_at for _, st in new_states],
        },
    )


async def _add_user_days(
    session: AsyncSession, user_day: dict[tuple[str, date], dict[str, int]]
) -> list[dict[str, Any]]:
    keys = sorted(user_day)
    if not keys:
        return []
    cols = ", ".join(USER_DAY_COLUMNS)
    arrays = ", ".join(f"CAST(:{c} AS bigint[])" for c in USER_DAY_COLUMNS)
    updates = ", ".join(f"{c} = user_day.{c} + excluded.{c}" for c in USER_DAY_COLUMNS)
    params: dict[str, Any] = {"u": [k[0] for k in keys], "d": [k[1] for k in keys]}
    for c in USER_DAY_COLUMNS:
        params[c] = [user_day[k].get(c, 0) for k in keys]
    rows = await session.execute(
        text(
            f"INSERT INTO user_day (user_id, day, {cols}) "
            f"SELECT * FROM unnest(CAST(:u AS text[]), CAST(:d AS date[]), {arrays}) "
            f"ON CONFLICT (user_id, day) DO UPDATE SET {updates} RETURNING user_id, day"
        ),
        params,
    )
    return [dict(r._mapping) for r in rows]


async def _recompute_user_months(
    session: AsyncSession, keys: list[tuple[str, date]]
) -> list[dict[str, Any]]:
    if not keys:
        return []
    rows = await session.execute(
        text(f"""
        INSERT INTO user_month (user_id, month, {", ".join(USER_MONTH_COLUMNS)})
        SELECT d.user_id, t.month, sum(messages), sum(messages_sms), sum(online_seconds_pc),
               sum(online_seconds_mobile), sum({ONLINE_POINTS_SQL}), sum({MESSAGE_POINTS_SQL}),
               sum({ONLINE_POINTS_SQL} + {MESSAGE_POINTS_SQL}), sum(points_delta),
               sum(friends_added), sum(checkins), sum(logins),
               count(*) FILTER (WHERE messages >= 1)
        FROM unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS t(user_id, month)
        JOIN user_day d ON d.user_id = t.user_id AND d.day >= t.month
                       AND d.day < (t.month + interval '1 month')
        GROUP BY d.user_id, t.month
        ON CONFLICT (user_id, month) DO UPDATE SET
          {", ".join(f"{c} = excluded.{c}" for c in USER_MONTH_COLUMNS)}
        RETURNING *"""),
        {"u": [k[0] for k in keys], "m": [k[1] for k in keys]},
    )
    return [dict(r._mapping) for r in rows]


async def _apply_membership(
    session: AsyncSession, plan: BatchPlan, tz: ZoneInfo, now: datetime
) -> list[tuple[str, str, date, int]]:
    """Store join/leave facts and recompute the touched pairs' spans.

    Returns the flips of month-end membership: (group, user, month, +1 joined / -1 left) for
    every month whose end the new facts can affect (from the earliest fact's month on).
    """
    facts = plan.membership
    if not facts:
        return []
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
    earliest: dict[tuple[str, str], datetime] = {}
    for f in facts:
        pair = (f.group_id, f.user_id)
        earliest[pair] = min(earliest.get(pair, f.at), f.at)
    pairs = sorted(earliest)
    params = {"g": [p[0] for p in pairs], "u": [p[1] for p in pairs]}
    rows = await session.execute(
        text(
            "SELECT e.group_id, e.user_id, occurred_at, event_id, joined FROM membership_events e "
            "JOIN unnest(CAST(:g AS text[]), CAST(:u AS text[])) AS k(g, u) "
            "ON e.group_id = k.g AND e.user_id = k.u"
        ),
        params,
    )
    events: dict[tuple[str, str], list[MembershipEvent]] = defaultdict(list)
    for r in rows:
        events[(r.group_id, r.user_id)].append(MembershipEvent(r.occurred_at, r.event_id, r.joined))
    removed = await session.execute(
        text(
            "DELETE FROM membership_spans s USING unnest(CAST(:g AS text[]), CAST(:u AS text[])) "
            "AS k(g, u) WHERE s.group_id = k.g AND s.user_id = k.u "
            "RETURNING s.group_id, s.user_id, s.joined_at, s.left_at"
        ),
        params,
    )
    old_spans: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for r in removed:
        old_spans[(r.group_id, r.user_id)].append(Span(r.joined_at, r.left_at))
    new_spans = {pair: spans_of(events[pair]) for pair in pairs}
    spans = [(pair, span) for pair in pairs for span in new_spans[pair]]
    if spans:
        await session.execute(
            text(
                "INSERT INTO membership_spans (group_id, user_id, joined_at, left_at) "
                "SELECT * FROM unnest(CAST(:g AS text[]), CAST(:u AS text[]), "
                "CAST(:j AS timestamptz[]), CAST(:l AS timestamptz[]))"
            ),
            {
                "g": [p[0] for p, _ in spans],
                "u": [p[1] for p, _ in spans],
                "j": [s.joined_at for _, s in spans],
                "l": [s.left_at for _, s in spans],
            },
        )
    current = month_of(now.astimezone(tz).date())
    latest = max(f.at for f in facts).astimezone(tz).date()
    flips: list[tuple[str, str, date, int]] = []
    for pair, first in earliest.items():
        for month in months_between(first.astimezone(tz).date(), max(current, latest)):
            end = end_of_month(month, tz)
            was, now_member = is_member(old_spans[pair], end), is_member(new_spans[pair], end)
            if was != now_member:
                flips.append((pair[0], pair[1], month, 1 if now_member else -1))
    return flips


async def _groups_of_members(
    session: AsyncSession, user_months: Iterable[tuple[str, date]], tz: ZoneInfo
) -> dict[tuple[str, date], list[str]]:
    """For each (user, month): the groups the user is a member of at the month's end."""
    keys = sorted(set(user_months))
    if not keys:
        return {}
    rows = await session.execute(
        text(
            f"SELECT DISTINCT t.user_id, t.month, s.group_id "
            f"FROM unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS t(user_id, month) "
            f"JOIN membership_spans s ON s.user_id = t.user_id "
            f"WHERE s.joined_at < {MONTH_END_SQL} "
            f"AND (s.left_at IS NULL OR s.left_at >= {MONTH_END_SQL})"
        ),
        {"u": [k[0] for k in keys], "m": [k[1] for k in keys], "tz": tz.key},
    )
    groups: dict[tuple[str, date], list[str]] = defaultdict(list)
    for r in rows:
        groups[(r.user_id, r.month)].append(r.group_id)
    return groups


async def _lock_groups(session: AsyncSession, group_ids: Iterable[str]) -> None:
    """Serialise writers of the same groups."""
    await lock_keys(session, (f"scoring.group:{g}" for g in group_ids))


async def _apply_group_facts(session: AsyncSession, plan: BatchPlan) -> None:
    if plan.created:
        c = sorted(plan.created, key=lambda x: (x.group_id, x.at, x.event_id))
        await session.execute(
            text("""
            INSERT INTO groups (group_id, owner_id, name, province, created_at, created_event_id)
            SELECT DISTINCT ON (g) g, o, n, p, a, e FROM unnest(CAST(:g AS text[]),
                CAST(:o AS text[]), CAST(:n AS text[]), CAST(:p AS text[]),
                CAST(:a AS timestamptz[]), CAST(:e AS text[])) AS x(g, o, n, p, a, e)
            ORDER BY g, a, e
            ON CONFLICT (group_id) DO UPDATE SET owner_id = excluded.owner_id,
                name = excluded.name, province = excluded.province,
                created_at = excluded.created_at, created_event_id = excluded.created_event_id
            WHERE groups.created_at IS NULL
               OR (excluded.created_at, excluded.created_event_id)
                  < (groups.created_at, groups.created_event_id)"""),
            {
                "g": [x.group_id for x in c],
                "o": [x.owner_id for x in c],
                "n": [x.name for x in c],
                "p": [x.province for x in c],
                "a": [x.at for x in c],
                "e": [x.event_id for x in c],
            },
        )
    if plan.dissolved:
        ids = sorted(plan.dissolved)
        await session.execute(
            text(
                "INSERT INTO groups (group_id, dissolved_at) "
                "SELECT * FROM unnest(CAST(:g AS text[]), CAST(:a AS timestamptz[])) "
                "ON CONFLICT (group_id) DO UPDATE SET dissolved_at = "
                "LEAST(COALESCE(groups.dissolved_at, excluded.dissolved_at), excluded.dissolved_at)"
            ),
            {"g": ids, "a": [plan.dissolved[i] for i in ids]},
        )


Contribution = tuple[int, int, int, int]  # members, active members, activity points, growth
GROUP_DELTA_COLUMNS = (
    "members",
    "active_members",
    "activity_points",
    "points_growth",
    "group_messages",
    "bonus_points",
)


def _contribution(row: dict[str, Any] | None) -> Contribution:
    """What one member's month adds to a group's month (members counted separately)."""
    if row is None:
        return (0, 0, 0, 0)
    return (0, 1 if row["messages"] >= 1 else 0, row["activity_points"], row["points_delta"])


async def _user_month_rows(
    session: AsyncSession, keys: Iterable[tuple[str, date]]
) -> dict[tuple[str, date], dict[str, Any]]:
    keys = sorted(set(keys))
    if not keys:
        return {}
    rows = await session.execute(
        text(
            "SELECT um.* FROM user_month um JOIN unnest(CAST(:u AS text[]), CAST(:m AS date[])) "
            "AS k(u, m) ON um.user_id = k.u AND um.month = k.m"
        ),
        {"u": [k[0] for k in keys], "m": [k[1] for k in keys]},
    )
    return {(r.user_id, r.month): dict(r._mapping) for r in rows}


async def _add_to_group_months(
    session: AsyncSession, deltas: dict[tuple[str, date], list[int]]
) -> list[dict[str, Any]]:
    """group_month += deltas, one statement in key order; returns the full new rows."""
    keys = sorted(k for k, d in deltas.items() if any(d))
    if not keys:
        return []
    params: dict[str, Any] = {"g": [k[0] for k in keys], "m": [k[1] for k in keys]}
    for i, column in enumerate(GROUP_DELTA_COLUMNS):
        params[column] = [deltas[k][i] for k in keys]
    columns = ", ".join(GROUP_DELTA_COLUMNS)
    arrays = ", ".join(f"CAST(:{c} AS bigint[])" for c in GROUP_DELTA_COLUMNS)
    updates = ", ".join(f"{c} = group_month.{c} + excluded.{c}" for c in GROUP_DELTA_COLUMNS)
    rows = await session.execute(
        text(
            f"INSERT INTO group_month (group_id, month, {columns}) "
            f"SELECT * FROM unnest(CAST(:g AS text[]), CAST(:m AS date[]), {arrays}) "
            f"ON CONFLICT (group_id, month) DO UPDATE SET {updates} RETURNING group_id, month"
        ),
        params,
    )
    return [dict(r._mapping) for r in rows]


async def apply_batch(
    session: AsyncSession,
    envelopes: Sequence[Envelope],
    plan_for: Any,
    tz: ZoneInfo,
    now: datetime,
) -> BatchOutcome:
    """Apply new events; `plan_for(new_events)` is the pure planner (domain.batch.plan_batch)."""
    outcome = BatchOutcome()
    with _step("ledger"):
        outcome.new_events = await keep_new(session, envelopes)
    outcome.duplicates = len(envelopes) - len(outcome.new_events)
    if not outcome.new_events:
        return outcome
    with _step("plan"):
        plan: BatchPlan = plan_for(outcome.new_events)

    user_day = {k: dict(v) for k, v in plan.user_day.items()}
    if plan.sessions:
        with _step("sessions"):
            await _apply_sessions(session, plan.sessions, tz, user_day)
    with _step("user_days"):
        day_rows = await _add_user_days(session, user_day)
    user_months = sorted({(u, month_of(d)) for u, d in user_day})
    with _step("user_months"):
        before = await _user_month_rows(session, user_months)
        month_rows = await _recompute_user_months(session, user_months)
    after = {(r["user_id"], r["month"]): r for r in month_rows}

    # Group months change by deltas, which commute across replicas (SPEC §4 "scales out"):
    # first each member's change under the old membership, then membership flips at the new
    # values — together, sum over new members of new values.
    with _step("member_groups"):
        member_of = await _groups_of_members(session, user_months, tz)
    with _step("membership"):
        flips = await _apply_membership(session, plan, tz, now)
    deltas: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * 6)
    for key, groups in member_of.items():
        old, new = _contribution(before.get(key)), _contribution(after.get(key))
        change = [n - o for n, o in zip(new, old, strict=True)]
        if any(change):
            for group_id in groups:
                d = deltas[(group_id, key[1])]
                for i in range(4):
                    d[i] += change[i]
    if flips:
        missing = {(u, m) for _, u, m, _ in flips} - after.keys()
        values = {**await _user_month_rows(session, missing), **after}
        for group_id, user_id, month, sign in flips:
            member = (1, *_contribution(values.get((user_id, month)))[1:])
            d = deltas[(group_id, month)]
            for i in range(4):
                d[i] += sign * member[i]
    for key, counters in plan.group_month.items():
        d = deltas[key]
        d[4] += counters["group_messages"]
        d[5] += counters["bonus_points"]

    with _step("group_locks"):
        await _lock_groups(
            session,
            {g for g, _ in deltas} | {c.group_id for c in plan.created} | set(plan.dissolved),
        )
    with _step("group_facts"):
        await _apply_group_facts(session, plan)
    with _step("group_months"):
        group_rows = await _add_to_group_months(session, deltas)

    with _step("changelog"):
        await mark_changed(
            session,
            [
                *(user_day_key(r["user_id"], r["day"]) for r in day_rows),
                *(user_month_key(r["user_id"], r["month"]) for r in month_rows),
                *(group_month_key(r["group_id"], r["month"]) for r in group_rows),
                # A dissolution changes no counter but must reach rewards (revocations).
                *(
                    group_month_key(g, month_of(local_day(at, tz)))
                    for g, at in plan.dissolved.items()
                ),
            ],
        )
    return outcome
