"""The counts a campaign report is made of (SPEC §12, domain/report.py): one pass over the
campaign's grants for counts, units and budget use; one grouped by user for the funnel and the
uplift (its means and variances computed in PostgreSQL); the draws' frozen entries and the
enrolled groups' members for entrants who won nothing. No row leaves PostgreSQL but a count.
`labels`: the period labels the report's range covers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.holdout import GroupStats
from services.rewards.domain.report import LedgerCount
from services.rewards.store.ledger import FULFILMENT_VIEW_SQL

_SCOPE = "g.campaign_id = :c AND g.period = ANY(:labels)"

# The first day of the month after the one a period label starts in (day, week, month or year
# labels; `campaign` → NULL: a once-per-campaign grant has no next period of its own).
_NEXT_MONTH_SQL = """CAST(CASE
    WHEN {label} ~ '^\\d{{4}}-\\d{{2}}' THEN
        CAST(substr({label}, 1, 7) || '-01' AS date) + interval '1 month'
    WHEN {label} ~ '^\\d{{4}}-W\\d{{2}}$' THEN
        date_trunc('month', to_date({label}, 'IYYY-"W"IW')) + interval '1 month'
    WHEN {label} ~ '^\\d{{4}}$' THEN CAST({label} || '-01-01' AS date) + interval '1 year'
    END AS date)"""


async def ledger_counts(
    session: AsyncSession, campaign_id: str, labels: Sequence[str], today: date, tz: ZoneInfo
) -> list[LedgerCount]:
    """Grants and units by rule, period, status, fulfilment state, local day recorded, kind."""
    rows = await session.execute(
        text(f"""
        SELECT g.rule_id, g.period, g.status, {FULFILMENT_VIEW_SQL} AS fulfilment,
            CAST(timezone(:tz, g.created_at) AS date) AS day, i.e->>'kind' AS kind,
            count(*) FILTER (WHERE i.n = 1) AS grants,
            sum(CAST(i.e->>'amount' AS bigint)) AS units
        FROM grants g CROSS JOIN LATERAL jsonb_array_elements(g.items) WITH ORDINALITY AS i(e, n)
        WHERE {_SCOPE}
        GROUP BY 1, 2, 3, 4, 5, 6"""),
        {"c": campaign_id, "labels": list(labels), "today": today, "tz": tz.key},
    )
    return [
        LedgerCount(r.rule_id, r.period, r.status, r.fulfilment, r.day, r.kind, int(r.grants),
                    int(r.units))
        for r in rows
    ]  # fmt: skip


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


async def people_totals(
    session: AsyncSession,
    campaign_id: str,
    labels: Sequence[str],
    rank_rules: Sequence[tuple[str, str]],
    months: tuple[date, date],
    metric: str,
) -> PeopleTotals:
    """One pass grouping the campaign's grants by user, joined to the month after each user's
    first period won (active? the uplift metric?)."""
    # The months after the range's periods: a year period's next is the next January.
    next_months = (months[0] + timedelta(days=31)).replace(day=1), date(months[1].year + 1, 1, 1)
    params: dict[str, Any] = {
        "c": campaign_id, "labels": list(labels), "metric": metric, "n0": next_months[0],
        "n1": next_months[1], **_rank_params(rank_rules),
    }  # fmt: skip
    row = (
        await session.execute(
            text(f"""
            WITH u AS (
                SELECT g.user_id, bool_or(g.status = 'granted') AS won,
                    bool_or(g.status = 'held_out') AS held_out,
                    bool_or(g.fulfilment_status = 'fulfilled') AS fulfilled,
                    min(g.period) FILTER (WHERE g.status IN ('granted', 'held_out')) AS first_won
                FROM grants g WHERE {_SCOPE} GROUP BY g.user_id),
            x AS (
                SELECT u.won, u.held_out, u.fulfilled,
                    coalesce(CAST(um.metrics->>'active' AS float8), 0) >= 1 AS active,
                    coalesce(CAST(um.metrics->>:metric AS float8), 0) AS value
                FROM u LEFT JOIN (SELECT * FROM user_month WHERE month BETWEEN :n0 AND :n1) um
                    ON um.user_id = u.user_id
                    AND um.month = {_NEXT_MONTH_SQL.format(label="u.first_won")}),
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
                (SELECT count(*) FROM extra WHERE NOT EXISTS (SELECT 1 FROM grants g
                    WHERE g.user_id = extra.user_id AND {_SCOPE})) AS extra
            FROM x"""),
            params,
        )
    ).one()
    if months[0] == months[1]:
        reached_sql = "SELECT count(*) FROM user_month WHERE month = :m0"
    else:
        reached_sql = (  # in primary-key order: counted without hashing or sorting
            "SELECT count(*) FROM (SELECT DISTINCT user_id FROM user_month "
            "WHERE month BETWEEN :m0 AND :m1 ORDER BY user_id) x"
        )
    reached = (
        await session.execute(text(reached_sql), {"m0": months[0], "m1": months[1]})
    ).scalar_one()
    return PeopleTotals(
        reached=int(reached),
        entered=int(row.in_ledger) + int(row.extra),
        won=int(row.won),
        fulfilled=int(row.fulfilled),
        active_next_period=int(row.active_next_period),
        treated=GroupStats(int(row.nt), _f(row.mt), _f(row.vt)),
        held_out=GroupStats(int(row.nh), _f(row.mh), _f(row.vh)),
    )


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
