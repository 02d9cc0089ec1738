"""The counts a campaign report is made of (SPEC §12, domain/report.py). The ledger's figures are
kept as it changes (migration 0009: append-only deltas written by triggers on `grants` in the
transaction of every write), so the report sums a few rows per rule, period and day instead of
scanning the campaign's grants; the funnel and the uplift sum one row per user and month
(`report_people`) and join the winners to the month after the first period they won. The draws'
frozen entries and the enrolled groups' members count entrants who won nothing. No row leaves
PostgreSQL but a count. `labels`: the period labels the report's range covers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.holdout import GroupStats
from services.rewards.domain.report import LedgerCount
from services.rewards.store.ledger import FULFILMENT_VIEW_SQL

_SCOPE = "g.campaign_id = :c AND g.period = ANY(:labels)"
_COUNT_KEY = "campaign_id, rule_id, period, status, fulfilment_status, fulfil_by, recorded_at, kind"
_PEOPLE_KEY = "campaign_id, user_id, next_month"
_PEOPLE_COUNTS = ("grants", "granted", "held_out", "fulfilled")
# Users whose deltas one compaction folds at most: a backlog (a bulk load) is folded over a few
# reports, each well within the API's statement timeout; the reader sums what is left.
COMPACT_USERS = 500_000
ANALYZE_AFTER_USERS = 50_000


async def compact(session: AsyncSession, campaign_id: str) -> None:
    """Fold the campaign's count deltas written since the last compaction into one row per key,
    and the month reach's (READ COMMITTED: rows written meanwhile stay as they are; at most
    COMPACT_USERS users' at a time). Skipped while another transaction compacts the same
    campaign. Only flushes."""
    locked = (
        await session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext('rewards.report'), hashtext(:c))"),
            {"c": campaign_id},
        )
    ).scalar_one()
    if not locked:
        return
    await session.execute(text(_COMPACT_COUNTS), {"c": campaign_id})
    folded = await session.execute(text(_COMPACT_PEOPLE), {"c": campaign_id, "n": COMPACT_USERS})
    if folded.rowcount > ANALYZE_AFTER_USERS:  # type: ignore[attr-defined]
        # Many new summaries (a bulk load, a first report): the next plan should know them.
        await session.execute(text("ANALYZE report_users, report_people"))
    reach_locked = (
        await session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext('rewards.report'), hashtext('reach'))")
        )
    ).scalar_one()
    if reach_locked:
        await session.execute(text(_COMPACT_REACH))


async def pending_campaigns(session: AsyncSession) -> list[str]:
    """The campaigns with count deltas not folded yet."""
    rows = await session.execute(
        text(
            "SELECT campaign_id FROM report_people WHERE NOT compact "
            "UNION SELECT campaign_id FROM report_counts WHERE NOT compact ORDER BY 1"
        )
    )
    return [r.campaign_id for r in rows]


# Only the keys with fresh deltas are folded (their compacted row and the deltas become one
# row): the settler folds every few seconds, and rewriting a campaign's every key each time
# would churn thousands of rows for a handful of changes.
_NULLABLE = ("fulfilment_status", "fulfil_by")
# `=` where a column is never NULL — a hash join; a row-wise IS NOT DISTINCT FROM forced a nested
# loop over every row of the campaign times every fresh key (seconds for a bulk fulfilment).
_KEY_MATCH = " AND ".join(
    f"r.{c} IS NOT DISTINCT FROM k.{c}" if c in _NULLABLE else f"r.{c} = k.{c}"
    for c in _COUNT_KEY.split(", ")
)
_COMPACT_COUNTS = f"""
    WITH keys AS (
        SELECT DISTINCT {_COUNT_KEY} FROM report_counts WHERE campaign_id = :c AND NOT compact),
    gone AS (
        DELETE FROM report_counts r USING keys k
        WHERE r.campaign_id = :c AND {_KEY_MATCH}
        RETURNING r.*)
    INSERT INTO report_counts ({_COUNT_KEY}, items, grants, units, compact)
    SELECT {_COUNT_KEY}, sum(items), sum(grants), sum(units), true FROM gone
    GROUP BY {_COUNT_KEY} HAVING sum(items) <> 0 OR sum(units) <> 0 OR sum(grants) <> 0"""

_COMPACT_REACH = """
    WITH gone AS (
        DELETE FROM report_reach
        WHERE EXISTS (SELECT 1 FROM report_reach f WHERE NOT f.compact)
        RETURNING *)
    INSERT INTO report_reach (month, prev, users, compact)
    SELECT month, prev, sum(users), true FROM gone GROUP BY month, prev HAVING sum(users) <> 0"""


# Fold the fresh deltas of the users who have some, then rebuild those users' summaries from
# what was folded (deltas written meanwhile stay fresh: the reader sums them itself).
_PEOPLE_SUMS = ", ".join(f"sum({c})" for c in _PEOPLE_COUNTS)
_COMPACT_PEOPLE = f"""
    WITH fresh AS (
        SELECT DISTINCT user_id FROM report_people WHERE campaign_id = :c AND NOT compact
        LIMIT :n),
    gone AS (
        DELETE FROM report_people p WHERE p.campaign_id = :c
            AND p.user_id IN (SELECT user_id FROM fresh)
        RETURNING p.*),
    kept AS (
        INSERT INTO report_people ({_PEOPLE_KEY}, {", ".join(_PEOPLE_COUNTS)}, compact)
        SELECT {_PEOPLE_KEY}, {_PEOPLE_SUMS}, true FROM gone GROUP BY {_PEOPLE_KEY}
        HAVING {" OR ".join(f"sum({c}) <> 0" for c in _PEOPLE_COUNTS)}
        ORDER BY user_id, next_month
        RETURNING *)
    INSERT INTO report_users (campaign_id, user_id, grants, won, held_out, fulfilled, first_next)
    SELECT :c, f.user_id, coalesce(sum(k.grants), 0), coalesce(bool_or(k.granted > 0), false),
        coalesce(bool_or(k.held_out > 0), false), coalesce(bool_or(k.fulfilled > 0), false),
        min(k.next_month) FILTER (WHERE k.granted + k.held_out > 0)
    FROM fresh f LEFT JOIN kept k ON k.user_id = f.user_id GROUP BY f.user_id
    ON CONFLICT (campaign_id, user_id) DO UPDATE SET grants = excluded.grants,
        won = excluded.won, held_out = excluded.held_out, fulfilled = excluded.fulfilled,
        first_next = excluded.first_next"""


async def ledger_counts(
    session: AsyncSession, campaign_id: str, labels: Sequence[str], today: date, tz: ZoneInfo
) -> list[LedgerCount]:
    """Grants and units by rule, period, status, fulfilment state, local day recorded, kind —
    from the kept counts; the fulfilment state (`overdue` is relative to `today`) at read."""
    rows = await session.execute(
        text(f"""
        SELECT rule_id, period, status, {FULFILMENT_VIEW_SQL} AS fulfilment,
            CAST(timezone(:tz, recorded_at) AS date) AS day, kind,
            sum(grants) AS grants, sum(units) AS units
        FROM report_counts WHERE campaign_id = :c AND period = ANY(:labels)
        GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(items) <> 0 OR sum(units) <> 0"""),
        {"c": campaign_id, "labels": list(labels), "today": today, "tz": tz.key},
    )
    return [
        LedgerCount(r.rule_id, r.period, r.status, r.fulfilment, r.day, r.kind, int(r.grants),
                    int(r.units))
        for r in rows
    ]  # fmt: skip


async def covers_every_period(
    session: AsyncSession, campaign_id: str, labels: Sequence[str]
) -> bool:
    """Whether `labels` hold every period the campaign has grants in (a whole-campaign report):
    then its people are counted from `report_people`, else from its grants."""
    outside = await session.execute(
        text(
            "SELECT 1 FROM report_counts WHERE campaign_id = :c AND NOT period = ANY(:labels) "
            "LIMIT 1"
        ),
        {"c": campaign_id, "labels": list(labels)},
    )
    return outside.first() is None


async def draw_entrants(
    session: AsyncSession, campaign_id: str, labels: Sequence[str]
) -> dict[tuple[str, str], int]:
    """Distinct ticket holders of each frozen draw."""
    rows = await session.execute(
        text(
            "SELECT d.rule_id, d.period, (SELECT count(DISTINCT split_part(e, '#', 1)) "
            "FROM unnest(d.entries) AS e) AS n FROM draws d "
            "WHERE d.campaign_id = :c AND d.period = ANY(:labels) AND d.entries IS NOT NULL"
        ),
        {"c": campaign_id, "labels": list(labels)},
    )
    return {(r.rule_id, r.period): int(r.n) for r in rows}


def _rank_params(rank_rules: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    fmts = {"month": "YYYY-MM", "year": "YYYY"}
    ranked = [(rule_id, fmts[grain]) for rule_id, grain in rank_rules if grain in fmts]
    return {"rank_rules": [r for r, _ in ranked], "rank_fmts": [f for _, f in ranked]}


# Members of groups enrolled in the campaign, for each rank rule's periods in range.
_RANK_MEMBERS = """
    SELECT r.rule_id, to_char(gm.month, r.fmt) AS period, m AS user_id FROM enrollments en
        JOIN group_month gm ON gm.group_id = en.group_id
        CROSS JOIN unnest(CAST(:rank_rules AS text[]), CAST(:rank_fmts AS text[]))
            AS r(rule_id, fmt)
        CROSS JOIN LATERAL jsonb_array_elements_text(gm.member_ids) AS m
        WHERE en.campaign_id = :c AND to_char(gm.month, r.fmt) = ANY(:labels)"""


async def rank_people(
    session: AsyncSession,
    campaign_id: str,
    labels: Sequence[str],
    rank_rules: Sequence[tuple[str, str]],
) -> dict[tuple[str, str], tuple[int, int]]:
    """Rank rules (an owner may hold an owner's and a member's grant): distinct entrants
    (subjects and enrolled groups' members) and winners per period."""
    params = _rank_params(rank_rules)
    if not params["rank_rules"]:
        return {}
    rows = await session.execute(
        text(f"""
        SELECT rule_id, period, count(DISTINCT user_id) AS entrants,
            count(DISTINCT user_id) FILTER (WHERE won) AS winners
        FROM (SELECT g.rule_id, g.period, g.user_id, g.status = 'granted' AS won FROM grants g
              WHERE {_SCOPE} AND g.rule_id = ANY(:rank_rules)
              UNION ALL SELECT rule_id, period, user_id, false FROM ({_RANK_MEMBERS}) m) x
        GROUP BY 1, 2"""),
        {"c": campaign_id, "labels": list(labels), **params},
    )
    return {(r.rule_id, r.period): (int(r.entrants), int(r.winners)) for r in rows}


@dataclass(frozen=True, slots=True)
class PeopleTotals:
    """Distinct users over the range (funnel) and the uplift's two groups."""

    reached: int
    entered: int
    won: int
    fulfilled: int
    active_next_period: int
    treated: GroupStats
    held_out: GroupStats


# Per user: won (granted), held out, a grant fulfilled, and the first month after a period they
# won or would have won (held out) — kept (a whole-campaign report): the compacted summaries, and
# for the users with deltas not folded yet, their deltas summed ...
_FRESH = "SELECT DISTINCT user_id FROM report_people WHERE campaign_id = :c AND NOT compact"
_USERS_KEPT = f"""
    SELECT r.user_id, r.won, r.held_out, r.fulfilled, r.first_next FROM report_users r
    WHERE r.campaign_id = :c AND r.grants > 0 AND r.user_id NOT IN ({_FRESH})
    UNION ALL
    SELECT user_id, bool_or(granted > 0), bool_or(held_out > 0), bool_or(fulfilled > 0),
        min(next_month) FILTER (WHERE granted + held_out > 0)
    FROM (SELECT user_id, next_month, sum(grants) AS grants, sum(granted) AS granted,
              sum(held_out) AS held_out, sum(fulfilled) AS fulfilled
          FROM report_people WHERE campaign_id = :c AND user_id IN ({_FRESH})
          GROUP BY user_id, next_month) p
    WHERE grants > 0 GROUP BY user_id"""
# ... or from the grants of the range's periods.
_USERS_SCANNED = f"""
    SELECT g.user_id, bool_or(g.status = 'granted') AS won,
        bool_or(g.status = 'held_out') AS held_out,
        bool_or(g.fulfilment_status = 'fulfilled') AS fulfilled,
        min(report_next_month(g.period)) FILTER (WHERE g.status IN ('granted', 'held_out'))
            AS first_next
    FROM grants g WHERE {_SCOPE} GROUP BY g.user_id"""
_IN_LEDGER_KEPT = "SELECT 1 FROM report_people p WHERE p.campaign_id = :c AND p.user_id = {user}"
_IN_LEDGER_SCANNED = f"SELECT 1 FROM grants g WHERE g.user_id = {{user}} AND {_SCOPE}"


async def people_totals(
    session: AsyncSession,
    campaign_id: str,
    labels: Sequence[str],
    rank_rules: Sequence[tuple[str, str]],
    months: tuple[date, date],
    metric: str,
    kept: bool,
) -> PeopleTotals:
    """The campaign's users (from the kept per-user counts when `kept`: the range holds every
    period of the campaign; else grouping the range's grants by user), the winners joined to the
    month after the first period they won (active? the uplift metric?), and the range's reached
    users."""
    # The months after the range's periods: a week starting in the month before the range's
    # first day ends in it; a year period's next is the next January.
    params: dict[str, Any] = {
        "c": campaign_id, "labels": list(labels), "metric": metric, "n0": months[0],
        "n1": date(months[1].year + 1, 1, 1), **_rank_params(rank_rules),
    }  # fmt: skip
    users, in_ledger = (
        (_USERS_KEPT, _IN_LEDGER_KEPT) if kept else (_USERS_SCANNED, _IN_LEDGER_SCANNED)
    )
    row = (
        await session.execute(
            text(f"""
            WITH u AS ({users}),
            x AS (
                SELECT u.won, u.held_out, u.fulfilled,
                    coalesce(CAST(um.metrics->>'active' AS float8), 0) >= 1 AS active,
                    coalesce(CAST(um.metrics->>:metric AS float8), 0) AS value
                FROM u LEFT JOIN (SELECT * FROM user_month WHERE month BETWEEN :n0 AND :n1) um
                    ON um.user_id = u.user_id AND um.month = u.first_next),
            extra AS (
                SELECT DISTINCT split_part(e, '#', 1) AS user_id FROM draws d
                    CROSS JOIN LATERAL unnest(d.entries) AS e
                    WHERE d.campaign_id = :c AND d.period = ANY(:labels)
                UNION SELECT user_id FROM ({_RANK_MEMBERS}) m)
            SELECT count(*) AS in_ledger,
                count(*) FILTER (WHERE won) AS won,
                count(*) FILTER (WHERE won AND fulfilled) AS fulfilled,
                count(*) FILTER (WHERE won AND active) AS active_next_period,
                count(*) FILTER (WHERE won AND NOT held_out) AS nt,
                avg(value) FILTER (WHERE won AND NOT held_out) AS mt,
                var_samp(value) FILTER (WHERE won AND NOT held_out) AS vt,
                count(*) FILTER (WHERE held_out AND NOT won) AS nh,
                avg(value) FILTER (WHERE held_out AND NOT won) AS mh,
                var_samp(value) FILTER (WHERE held_out AND NOT won) AS vh,
                (SELECT count(*) FROM extra WHERE NOT EXISTS
                    ({in_ledger.format(user="extra.user_id")})) AS extra
            FROM x"""),
            params,
        )
    ).one()
    reached = await reached_users(session, months)
    return PeopleTotals(
        reached=int(reached),
        entered=int(row.in_ledger) + int(row.extra),
        won=int(row.won),
        fulfilled=int(row.fulfilled),
        active_next_period=int(row.active_next_period),
        treated=GroupStats(int(row.nt), _f(row.mt), _f(row.vt)),
        held_out=GroupStats(int(row.nh), _f(row.mh), _f(row.vh)),
    )


async def reached_users(session: AsyncSession, months: tuple[date, date]) -> int:
    """Users with stored metrics in some month of [months] (migration 0009 `report_reach`):
    each user's first month in the range is the one whose previous month is before it."""
    reached = await session.execute(
        text(
            "SELECT coalesce(sum(users), 0) FROM report_reach WHERE month BETWEEN :m0 AND :m1 "
            "AND (prev IS NULL OR prev < :m0)"
        ),
        {"m0": months[0], "m1": months[1]},
    )
    return int(reached.scalar_one())


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


async def budgets(session: AsyncSession, campaign_id: str) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT kind, total, spent, total - spent AS remaining FROM budgets "
            "WHERE campaign_id = :c ORDER BY kind"
        ),
        {"c": campaign_id},
    )
    return [dict(r._mapping) for r in rows]
