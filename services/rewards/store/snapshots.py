"""Latest metric values from engage.metrics.v1, stored so that settlement, thresholds and
simulation read rewards' own tables (SPEC §2: no service reads another's)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import orjson
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.flags import GROUP_MONTH_FLAGS, USER_DAY_FLAGS, flag_values
from services.rewards.domain.groups import GroupMonth
from shared.db import jsonb, lock_keys
from shared.records import METRIC_RECORD, UserDayRecord, UserMonthRecord, metric_counters


class MalformedMetric(ValueError):
    """A changelog record that cannot be a metric value (goes to the DLQ)."""


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One decoded changelog record: the latest value of a user-day, user-month or group-month."""

    grain: Literal["user_day", "user_month", "group_month"]
    entity_id: str
    period: date  # the day, or the month's first day
    counters: dict[str, float]  # with a user-day's or group-month's flags as 0/1 values
    group: GroupMonth | None = None
    flags: tuple[dict[str, Any], ...] = ()  # as published: name, reason, values
    first_seen: date | None = None  # the user's, as published on their records
    friend_ids: tuple[str, ...] = ()  # a user-day's friends made that day (SPEC §9)


def parse(value: bytes) -> MetricValue:
    """Decode a record of engage.metrics.v1 (shared/records.py); MalformedMetric if it is not
    one. A user-day's or group-month's flags become values a condition can name
    (domain/flags.py) and are kept, with their reasons, for the reviewer."""
    try:
        record = METRIC_RECORD.validate_json(value)
    except ValidationError as exc:
        raise MalformedMetric(f"not a metric record: {exc}"[:500]) from None
    counters = metric_counters(record)
    if isinstance(record, UserDayRecord):
        flags = tuple(f.model_dump() for f in record.flags)
        counters |= flag_values(flags, USER_DAY_FLAGS)
        day = date.fromisoformat(record.period)
        return MetricValue(
            "user_day", record.id, day, counters, flags=flags, first_seen=record.first_seen,
            friend_ids=tuple(record.friend_ids),
        )  # fmt: skip
    month = date.fromisoformat(f"{record.period}-01")
    if isinstance(record, UserMonthRecord):
        return MetricValue("user_month", record.id, month, counters, first_seen=record.first_seen)
    flags = tuple(f.model_dump() for f in record.flags)
    counters |= flag_values(flags, GROUP_MONTH_FLAGS)
    group = GroupMonth(
        group_id=record.id,
        owner_id=record.owner_id,
        province=record.province,
        created_at=record.created_at,
        dissolved_at=record.dissolved_at,
        member_ids=tuple(record.member_ids),
        counters=counters,
        month=month,
    )
    return MetricValue("group_month", record.id, month, counters, group, flags)


@dataclass(slots=True)
class SnapshotBatch:
    """The latest value per key within one consumed batch."""

    user_days: dict[tuple[str, date], dict[str, float]] = field(default_factory=dict)
    user_months: dict[tuple[str, date], dict[str, float]] = field(default_factory=dict)
    groups: dict[tuple[str, date], GroupMonth] = field(default_factory=dict)
    flags: dict[tuple[str, str, date], tuple[dict[str, Any], ...]] = field(default_factory=dict)
    friend_ids: dict[tuple[str, date], tuple[str, ...]] = field(default_factory=dict)
    first_seen: dict[str, date] = field(default_factory=dict)  # the earliest in the batch

    @classmethod
    def of(cls, values: Iterable[MetricValue]) -> SnapshotBatch:
        """Later values of a key replace earlier ones (the changelog is latest-state)."""
        batch = cls()
        for m in values:
            key = (m.entity_id, m.period)
            if m.grain != "user_month":
                batch.flags[(m.grain, *key)] = m.flags
            if m.first_seen is not None:
                held = batch.first_seen.get(m.entity_id)
                batch.first_seen[m.entity_id] = min(held, m.first_seen) if held else m.first_seen
            if m.grain == "user_day":
                batch.user_days[key] = m.counters
                batch.friend_ids[key] = m.friend_ids
            elif m.grain == "user_month":
                batch.user_months[key] = m.counters
            elif m.group is not None:
                batch.groups[key] = m.group
        return batch


def _json(values: Iterable[Mapping[str, Any]]) -> list[str]:
    return [orjson.dumps(v).decode() for v in values]


async def store(session: AsyncSession, batch: SnapshotBatch) -> set[str]:
    """Upsert the batch's latest values (keys in order, so concurrent writers never deadlock).

    A user's days and months travel on different partitions, so two replicas may apply the
    same user's records at once. Each first locks the batch's users: the second then sees the
    first's committed values when it evaluates rules that add up several of them (a campaign's
    friends_added over days) — without the lock, both could see only their own half.
    """
    await lock_keys(
        session, (f"rewards.user:{u}" for u, _ in (*batch.user_days, *batch.user_months))
    )
    keys = sorted(batch.user_days)
    if keys:
        await session.execute(
            text(
                "INSERT INTO user_day (user_id, day, metrics, flags, friend_ids) "
                "SELECT * FROM unnest(CAST(:i AS text[]), CAST(:p AS date[]), "
                "CAST(:m AS jsonb[]), CAST(:f AS jsonb[]), CAST(:fr AS jsonb[])) "
                "ON CONFLICT (user_id, day) DO UPDATE SET metrics = excluded.metrics, "
                "flags = excluded.flags, friend_ids = excluded.friend_ids"
            ),
            {
                "i": [k[0] for k in keys],
                "p": [k[1] for k in keys],
                "m": _json(batch.user_days[k] for k in keys),
                "f": [_flags_json(batch, "user_day", k) for k in keys],
                "fr": [orjson.dumps(list(batch.friend_ids.get(k, ()))).decode() for k in keys],
            },
        )
    users, seen = sorted(batch.first_seen), set()
    if users:
        # First seen only moves earlier; records of one user arrive on several partitions.
        moved = await session.execute(
            text(
                "INSERT INTO user_first_seen (user_id, first_seen) "
                "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:d AS date[])) "
                "ON CONFLICT (user_id) DO UPDATE SET first_seen = excluded.first_seen "
                "WHERE excluded.first_seen < user_first_seen.first_seen RETURNING user_id"
            ),
            {"u": users, "d": [batch.first_seen[u] for u in users]},
        )
        seen = {r.user_id for r in moved}
    keys = sorted(batch.user_months)
    if keys:
        await session.execute(
            text(
                "INSERT INTO user_month (user_id, month, metrics) "
                "SELECT * FROM unnest(CAST(:i AS text[]), CAST(:p AS date[]), "
                "CAST(:m AS jsonb[])) "
                "ON CONFLICT (user_id, month) DO UPDATE SET metrics = excluded.metrics"
            ),
            {
                "i": [k[0] for k in keys],
                "p": [k[1] for k in keys],
                "m": _json(batch.user_months[k] for k in keys),
            },
        )
    keys = sorted(batch.groups)
    if keys:
        gs = [batch.groups[k] for k in keys]
        await session.execute(
            text("""
            INSERT INTO group_month (group_id, month, metrics, owner_id, province, created_at,
                                     dissolved_at, member_ids, flags)
            SELECT * FROM unnest(CAST(:g AS text[]), CAST(:m AS date[]), CAST(:v AS jsonb[]),
                CAST(:o AS text[]), CAST(:p AS text[]), CAST(:c AS timestamptz[]),
                CAST(:d AS timestamptz[]), CAST(:members AS jsonb[]), CAST(:f AS jsonb[]))
            ON CONFLICT (group_id, month) DO UPDATE SET metrics = excluded.metrics,
                owner_id = excluded.owner_id, province = excluded.province,
                created_at = excluded.created_at, dissolved_at = excluded.dissolved_at,
                member_ids = excluded.member_ids, flags = excluded.flags"""),
            {
                "g": [k[0] for k in keys],
                "m": [k[1] for k in keys],
                "v": _json(g.counters for g in gs),
                "o": [g.owner_id for g in gs],
                "p": [g.province for g in gs],
                "c": [g.created_at for g in gs],
                "d": [g.dissolved_at for g in gs],
                "members": [orjson.dumps(list(g.member_ids)).decode() for g in gs],
                "f": [_flags_json(batch, "group_month", k) for k in keys],
            },
        )
    return seen


async def befriended(session: AsyncSession, users: Iterable[str]) -> list[tuple[str, date]]:
    """(user, day) of the days on which somebody made one of `users` a friend: their new-friend
    counts change when those users' first_seen does."""
    ids = sorted(set(users))
    if not ids:
        return []
    rows = await session.execute(
        text("SELECT user_id, day FROM user_day WHERE friend_ids ?| CAST(:u AS text[])"),
        {"u": ids},
    )
    return [(r.user_id, r.day) for r in rows]


def _flags_json(batch: SnapshotBatch, grain: str, key: tuple[str, date]) -> str:
    return orjson.dumps(list(batch.flags.get((grain, *key), ()))).decode()


def _float_values(doc: Any) -> dict[str, float]:
    return {k: float(v) for k, v in jsonb(doc).items()}


_FIELD = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)?")  # `checkins`, `flags.lockstep`


def _projection(fields: Iterable[str] | None) -> tuple[str, list[str] | None]:
    """Select only the named metric fields, as float8 columns (no JSON to parse in Python)."""
    if fields is None:
        return "metrics", None
    names = sorted(set(fields))
    if not names:
        return "NULL AS none", []
    for f in names:  # field names come from validated rules; keep it that way
        if not _FIELD.fullmatch(f):
            raise ValueError(f"not a metric field: {f!r}")
    cols = (f"COALESCE(CAST(metrics->>'{f}' AS float8), 0) AS m_{i}" for i, f in enumerate(names))
    return ", ".join(cols), names


def _values(row: Any, names: list[str] | None) -> dict[str, float]:
    if names is None:
        return _float_values(row.metrics)
    return {f: float(getattr(row, f"m_{i}")) for i, f in enumerate(names)}


async def _users_in(
    session: AsyncSession, table: str, column: str, period: date, fields: Iterable[str] | None
) -> dict[str, dict[str, float]]:
    cols, names = _projection(fields)
    rows = await session.execute(
        text(f"SELECT user_id, {cols} FROM {table} WHERE {column} = :p"), {"p": period}
    )
    return {r.user_id: _values(r, names) for r in rows}


async def user_days_on(
    session: AsyncSession, day: date, fields: Iterable[str] | None = None
) -> dict[str, dict[str, float]]:
    return await _users_in(session, "user_day", "day", day, fields)


async def user_day_series(
    session: AsyncSession,
    first: date,
    last: date,
    fields: Iterable[str],
    users: Sequence[str] | None = None,
) -> AsyncIterator[tuple[str, list[tuple[date, dict[str, float]]]]]:
    """Each user's stored days in [first, last] (only `fields`, as float8 columns), one user
    at a time in user id order, streamed from a server-side cursor in the session's
    transaction: memory holds one fetch and one user's days, whatever the number of users
    (SPEC §9 backtests of 1 M users). Read through the driver: a backtest reads every row of
    its range, and rows without a mapping layer cost a tenth as much."""
    cols, names = _projection(fields)
    names = names or []
    # Two statements, not one with `$3 IS NULL OR user_id = ANY($3)`: the driver prepares
    # statements, and PostgreSQL's generic plan for that OR cannot use the primary key — it
    # scanned every user's days of the range for each batch's few users (the consumption
    # regression measured in bench/RESULTS.md).
    query = f"SELECT user_id, day, {cols} FROM user_day WHERE day BETWEEN $1 AND $2 "
    args: tuple[object, ...] = (first, last)
    if users is not None:
        query += "AND user_id = ANY($3) "
        args += (sorted(set(users)),)
    query += "ORDER BY user_id, day"
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    current: str | None = None
    days: list[tuple[date, dict[str, float]]] = []
    async for r in driver.cursor(query, *args, prefetch=10_000):
        if r[0] != current:
            if current is not None:
                yield current, days
            current, days = r[0], []
        days.append((r[1], dict(zip(names, r[2:], strict=True)) if names else {}))
    if current is not None:
        yield current, days


async def new_friends(
    session: AsyncSession, refs: Sequence[tuple[str, date]], first: date, last: date
) -> dict[tuple[str, date], int]:
    """For (user, evaluated day): the friends the user made in [first, that day] whose own
    first_seen lies in [first, last] and is not after that day (SPEC §10, §9)."""
    keys = sorted(set(refs))
    if not keys:
        return {}
    # Each user's friends once — the first day in [first, last] the user added them, and from
    # when they count (that day or the friend's first_seen, whichever is later) — then each
    # evaluated day counts those counted by then. Joining every evaluated day to all the user's
    # days before it read a user's days once per evaluated day (seconds per batch, e2e bench).
    rows = await session.execute(
        text(
            "WITH k AS (SELECT * FROM unnest(CAST(:u AS text[]), CAST(:e AS date[])) AS k(u, e)), "
            "added AS (SELECT d.user_id AS u, f.fid, min(d.day) AS day FROM user_day d "
            "CROSS JOIN LATERAL jsonb_array_elements_text(d.friend_ids) AS f(fid) "
            "WHERE d.user_id = ANY(CAST(:users AS text[])) AND d.day BETWEEN :a AND :b "
            "GROUP BY 1, 2), "
            "counted AS (SELECT a.u, a.fid, GREATEST(a.day, s.first_seen) AS since FROM added a "
            "JOIN user_first_seen s ON s.user_id = a.fid AND s.first_seen BETWEEN :a AND :b) "
            "SELECT k.u, k.e, count(*) AS n FROM k JOIN counted c ON c.u = k.u AND c.since <= k.e "
            "GROUP BY k.u, k.e"
        ),
        {"u": [k[0] for k in keys], "e": [k[1] for k in keys], "a": first, "b": last,
         "users": sorted({k[0] for k in keys})},
    )  # fmt: skip
    return {(r.u, r.e): int(r.n) for r in rows}


async def members_of(session: AsyncSession, month: date, group_ids: Iterable[str]) -> set[str]:
    """Members at the month's end (now, for the current month) of these groups."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT m.u FROM group_month gm "
            "CROSS JOIN LATERAL jsonb_array_elements_text(gm.member_ids) AS m(u) "
            "WHERE gm.month = :m AND gm.group_id = ANY(:g)"
        ),
        {"m": month, "g": sorted(set(group_ids))},
    )
    return {r.u for r in rows}


async def user_months_in(
    session: AsyncSession, month: date, fields: Iterable[str] | None = None
) -> dict[str, dict[str, float]]:
    return await _users_in(session, "user_month", "month", month, fields)


async def user_months_of(
    session: AsyncSession,
    pairs: Iterable[tuple[str, date]],
    fields: Iterable[str] | None = None,
) -> dict[tuple[str, date], dict[str, float]]:
    keys = sorted(set(pairs))
    if not keys:
        return {}
    cols, names = _projection(fields)
    rows = await session.execute(
        text(
            f"SELECT um.user_id, um.month, {cols.replace('metrics', 'um.metrics')} "
            "FROM user_month um JOIN unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS k(u, m) "
            "ON um.user_id = k.u AND um.month = k.m"
        ),
        {"u": [k[0] for k in keys], "m": [k[1] for k in keys]},
    )
    return {(r.user_id, r.month): _values(r, names) for r in rows}


async def user_days_of(
    session: AsyncSession, pairs: Iterable[tuple[str, date]]
) -> dict[tuple[str, date], dict[str, float]]:
    """The stored values of these (user, day) keys, all fields."""
    keys = sorted(set(pairs))
    if not keys:
        return {}
    rows = await session.execute(
        text(
            "SELECT ud.user_id, ud.day, ud.metrics FROM user_day ud "
            "JOIN unnest(CAST(:u AS text[]), CAST(:d AS date[])) AS k(u, d) "
            "ON ud.user_id = k.u AND ud.day = k.d"
        ),
        {"u": [k[0] for k in keys], "d": [k[1] for k in keys]},
    )
    return {(r.user_id, r.day): _float_values(r.metrics) for r in rows}


async def active_members(session: AsyncSession, month: date, group_ids: Iterable[str]) -> set[str]:
    """Members (at the month's end) of these groups who were active in the month."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT m.u FROM group_month gm "
            "CROSS JOIN LATERAL jsonb_array_elements_text(gm.member_ids) AS m(u) "
            "JOIN user_month um ON um.user_id = m.u AND um.month = gm.month "
            "WHERE gm.month = :m AND gm.group_id = ANY(:g) "
            "AND COALESCE(CAST(um.metrics->>'active' AS float8), 0) >= 1"
        ),
        {"m": month, "g": sorted(set(group_ids))},
    )
    return {r.u for r in rows}


async def window_sums(
    session: AsyncSession, users: Iterable[str], first: date, last: date, fields: Iterable[str]
) -> dict[str, dict[str, float]]:
    """Day values summed over [first, last] per user (the `user.campaign.*` scope)."""
    users, fields = sorted(set(users)), sorted(set(fields))
    if not users or not fields:
        return {}
    sums = ", ".join(f"COALESCE(sum(CAST(metrics->>'{f}' AS float8)), 0) AS {f}" for f in fields)
    rows = await session.execute(
        text(
            f"SELECT user_id, {sums} FROM user_day WHERE user_id = ANY(:u) "
            "AND day BETWEEN :a AND :b GROUP BY user_id"
        ),
        {"u": users, "a": first, "b": last},
    )
    return {r.user_id: {f: float(getattr(r, f)) for f in fields} for r in rows}


async def group_months_in(
    session: AsyncSession, month: date, members: bool = True, only: Iterable[str] | None = None
) -> list[GroupMonth]:
    """A month's groups; without their member lists when `members` is false (cheaper)."""
    ids = None if only is None else sorted(set(only))
    rows = await session.execute(
        text(
            "SELECT group_id, metrics, owner_id, province, created_at, dissolved_at, "
            f"{'member_ids' if members else 'CAST(NULL AS jsonb) AS member_ids'} "
            "FROM group_month WHERE month = :m "
            "AND (CAST(:only AS text[]) IS NULL OR group_id = ANY(:only)) ORDER BY group_id"
        ),
        {"m": month, "only": ids},
    )
    return [
        GroupMonth(
            r.group_id,
            r.owner_id,
            r.province,
            r.created_at,
            r.dissolved_at,
            tuple(jsonb(r.member_ids) or ()),
            _float_values(r.metrics),
            month,
        )
        for r in rows
    ]


async def group_owner(session: AsyncSession, group_id: str) -> tuple[str | None, bool] | None:
    """The group's owner and whether it is dissolved, from its latest stored month."""
    row = (
        await session.execute(
            text(
                "SELECT owner_id, dissolved_at FROM group_month WHERE group_id = :g "
                "ORDER BY month DESC LIMIT 1"
            ),
            {"g": group_id},
        )
    ).first()
    return None if row is None else (row.owner_id, row.dissolved_at is not None)


async def has_metrics(session: AsyncSession, user_id: str) -> bool:
    """Whether any day or month of this user's metrics reached rewards."""
    found = await session.scalar(
        text(
            "SELECT EXISTS (SELECT 1 FROM user_day WHERE user_id = :u) "
            "OR EXISTS (SELECT 1 FROM user_month WHERE user_id = :u)"
        ),
        {"u": user_id},
    )
    return bool(found)
