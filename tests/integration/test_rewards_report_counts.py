"""The report's kept counts (migration 0009) on a real PostgreSQL: after every kind of grant write
— record (granted, budget_exhausted, held_out), hold, exclude, release, fulfil (fulfilled,
failed), revoke (one grant, a dissolved group's) — the counts kept by the triggers equal a fresh
GROUP BY over the grants, before and after compaction; the report's whole-campaign figures from
the kept counts equal those scanned from the grants; and concurrent writers of one campaign
neither wait on each other's counts nor lose any."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import astuple
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engage.stack import Stack
from services.rewards.app import MIGRATIONS
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.fulfilment import FulfilmentReport
from services.rewards.domain.holdout import Holdout
from services.rewards.store import ledger
from services.rewards.store import report as counts
from services.rewards.store.ledger import FULFILMENT_VIEW_SQL
from services.rewards.usecases.report import compact_pending
from tests.integration.conftest import migrated_sessions

pytestmark = pytest.mark.asyncio
SCHEMA = "rewards_report_counts_test"
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 4, 2, tzinfo=UTC)
LABELS = ["2026", "2026-03", *(f"2026-03-0{d}" for d in range(1, 6)), "2026-W10", "campaign"]


@pytest.fixture(scope="module")
async def sessions(stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(stack, MIGRATIONS, SCHEMA) as sessions:
        yield sessions


async def new_campaign(
    sessions: async_sessionmaker[AsyncSession], campaign: str, credit_fen: int
) -> None:
    async with sessions() as s, s.begin():
        await s.execute(
            text("INSERT INTO campaigns (campaign_id, created_by) VALUES (:c, 'test')"),
            {"c": campaign},
        )
        await s.execute(
            text("INSERT INTO budgets (campaign_id, kind, total) VALUES (:c, 'credit_fen', :n)"),
            {"c": campaign, "n": credit_fen},
        )


def decision(
    rule: str, user: str, period: str, group: str | None = None, **items: int
) -> GrantDecision:
    return GrantDecision(
        rule, "user", user, period, tuple((items or {"credit_fen": 100}).items()),
        date(2026, 4, 10), group_id=group, revocable=group is not None,
    )  # fmt: skip


def next_month(label: str) -> date | None:
    """The month after the one a period label starts in (written apart from the migration's)."""
    if label == "campaign":
        return None
    if len(label) == 4:
        return date(int(label) + 1, 1, 1)
    if "-W" in label:
        start = date.fromisocalendar(int(label[:4]), int(label[6:]), 1)
    else:
        start = date(int(label[:4]), int(label[5:7]), 1)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


async def grants_of(s: AsyncSession, campaign: str) -> list[Any]:
    rows = await s.execute(
        text(
            "SELECT user_id, rule_id, period, status, fulfilment_status, fulfil_by, created_at, "
            "items FROM grants WHERE campaign_id = :c"
        ),
        {"c": campaign},
    )
    return list(rows)


def quarter_hour(at: datetime) -> datetime:
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


async def expected_counts(s: AsyncSession, campaign: str) -> dict[tuple[Any, ...], list[int]]:
    """The counts table's contents computed afresh, in Python, from the grants."""
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for g in await grants_of(s, campaign):
        may_be_overdue = g.status == "granted" and g.fulfilment_status != "fulfilled"
        for n, item in enumerate(g.items):
            key = (
                g.rule_id, g.period, g.status, g.fulfilment_status,
                g.fulfil_by if may_be_overdue else None, quarter_hour(g.created_at), item["kind"],
            )  # fmt: skip
            out[key][0] += 1
            out[key][1] += n == 0
            out[key][2] += int(item["amount"])
    return dict(out)


async def kept_counts(s: AsyncSession, campaign: str) -> dict[tuple[Any, ...], list[int]]:
    rows = await s.execute(
        text(
            "SELECT rule_id, period, status, fulfilment_status, fulfil_by, recorded_at, kind, "
            "sum(items) AS items, sum(grants) AS grants, sum(units) AS units FROM report_counts "
            "WHERE campaign_id = :c GROUP BY 1, 2, 3, 4, 5, 6, 7 "
            "HAVING sum(items) <> 0 OR sum(units) <> 0"
        ),
        {"c": campaign},
    )
    return {tuple(r[:7]): [int(r.items), int(r.grants), int(r.units)] for r in rows}


async def expected_people(s: AsyncSession, campaign: str) -> dict[tuple[Any, ...], list[int]]:
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for g in await grants_of(s, campaign):
        row = out[(g.user_id, next_month(g.period))]
        row[0] += 1
        row[1] += g.status == "granted"
        row[2] += g.status == "held_out"
        row[3] += g.fulfilment_status == "fulfilled"
    return dict(out)


async def kept_people(s: AsyncSession, campaign: str) -> dict[tuple[Any, ...], list[int]]:
    rows = await s.execute(
        text(
            "SELECT user_id, next_month, sum(grants) AS n, sum(granted) AS granted, "
            "sum(held_out) AS held_out, sum(fulfilled) AS fulfilled FROM report_people "
            "WHERE campaign_id = :c GROUP BY 1, 2"
        ),
        {"c": campaign},
    )
    return {
        (r.user_id, r.next_month): [int(r.n), int(r.granted), int(r.held_out), int(r.fulfilled)]
        for r in rows
    }


async def assert_counts_equal_a_scan(s: AsyncSession, campaign: str) -> None:
    assert await kept_counts(s, campaign) == await expected_counts(s, campaign)
    assert await kept_people(s, campaign) == await expected_people(s, campaign)
    for today in (date(2026, 4, 1), date(2026, 4, 11)):  # before and after fulfil_by
        kept = await counts.ledger_counts(s, campaign, LABELS, today, TZ)
        scanned = await s.execute(
            text(f"""
            SELECT rule_id, period, status, {FULFILMENT_VIEW_SQL} AS fulfilment,
                CAST(timezone(:tz, created_at) AS date) AS day, i.e->>'kind' AS kind,
                count(*) FILTER (WHERE i.n = 1) AS grants,
                sum(CAST(i.e->>'amount' AS bigint)) AS units
            FROM grants CROSS JOIN LATERAL jsonb_array_elements(items) WITH ORDINALITY i(e, n)
            WHERE campaign_id = :c AND period = ANY(:labels) GROUP BY 1, 2, 3, 4, 5, 6"""),
            {"c": campaign, "today": today, "tz": TZ.key, "labels": LABELS},
        )
        assert Counter(map(astuple, kept)) == Counter(tuple(r) for r in scanned)


async def assert_people_paths_agree(s: AsyncSession, campaign: str) -> None:
    months = (date(2026, 3, 1), date(2026, 4, 1))
    kept, scanned = [
        await counts.people_totals(s, campaign, LABELS, [], months, "activity_points", from_kept)
        for from_kept in (True, False)
    ]
    assert kept == scanned
    assert await counts.covers_every_period(s, campaign, LABELS)
    periods = {g.period for g in await grants_of(s, campaign)}
    assert await counts.covers_every_period(s, campaign, ["2026-03"]) == (periods <= {"2026-03"})


async def check(sessions: async_sessionmaker[AsyncSession], campaign: str) -> None:
    """Exact before compaction, after it, and again (a second compaction changes nothing)."""
    for _ in range(3):
        async with sessions() as s:
            await assert_counts_equal_a_scan(s, campaign)
            await assert_people_paths_agree(s, campaign)
        async with sessions() as s, s.begin():
            await counts.compact(s, campaign)
    async with sessions() as s:
        fresh = await s.execute(
            text(
                "SELECT (SELECT count(*) FROM report_counts WHERE campaign_id = :c AND NOT "
                "compact) + (SELECT count(*) FROM report_people WHERE campaign_id = :c AND NOT "
                "compact)"
            ),
            {"c": campaign},
        )
        assert fresh.scalar_one() == 0


async def test_kept_counts_equal_a_scan_after_every_kind_of_grant_write(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = "cmp_00000000c0a1"
    await new_campaign(sessions, campaign, credit_fen=2000)
    users = [f"w{i:03d}" for i in range(40)]
    async with sessions() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO user_month (user_id, month, metrics) SELECT u, m, "
                "jsonb_build_object('activity_points', length(u) + extract(month FROM m), "
                "'active', CAST(right(u, 1) < '6' AS int)) FROM unnest(CAST(:u AS text[])) u "
                "CROSS JOIN unnest(CAST(:m AS date[])) m"
            ),
            {"u": users, "m": [date(2026, 3, 1), date(2026, 4, 1), date(2027, 1, 1)]},
        )
    steps: list[tuple[str, Any]] = []

    async def record(s: AsyncSession) -> None:  # granted, budget_exhausted and held_out
        monthly = [decision("monthly", u, "2026-03", data_mb=50, credit_fen=100) for u in users]
        await ledger.record_grants(s, campaign, 1, monthly, holdout=Holdout("seed", 20))
        others = [
            decision("daily", "w001", "2026-03-05", group="g1"),
            decision("yearly", "w002", "2026", sms=2),
            decision("once", "w003", "campaign", data_mb=10),
        ]
        await ledger.record_grants(s, campaign, 1, others)

    async def hold(s: AsyncSession) -> None:
        await s.execute(text("UPDATE budgets SET total = total + 5000 WHERE campaign_id = :c"),
                        {"c": campaign})  # fmt: skip
        weekly = [decision("weekly", u, "2026-W10", group="g2") for u in users[:12]]
        await ledger.record_grants(s, campaign, 1, weekly, hold=True)

    async def exclude(s: AsyncSession) -> None:
        excluded = Exclusions(users=frozenset(users[:3]))
        assert await ledger.exclude_held(s, campaign, "2026-W10", excluded, "fraud", "a", NOW)

    async def release(s: AsyncSession) -> None:
        assert await ledger.release_held(s, campaign, "2026-W10", "approver", NOW)

    async def fulfil(s: AsyncSession) -> None:
        rows = await s.execute(
            text(
                "SELECT grant_id FROM grants WHERE campaign_id = :c AND status = 'granted' "
                "ORDER BY grant_id LIMIT 8"
            ),
            {"c": campaign},
        )
        for n, (grant_id,) in enumerate(rows.all()):
            report = (
                FulfilmentReport("failed", f"ref-{grant_id}", "no account", NOW)
                if n % 4 == 3
                else FulfilmentReport("fulfilled", f"ref-{grant_id}", None, NOW)
            )
            await ledger.record_fulfilment(s, grant_id, report)

    async def revoke(s: AsyncSession) -> None:
        grant_id = (
            await s.execute(
                text(
                    "SELECT grant_id FROM grants WHERE campaign_id = :c AND status = 'granted' "
                    "AND fulfilment_status = 'pending' AND rule_id = 'monthly' "
                    "ORDER BY grant_id DESC LIMIT 1"
                ),
                {"c": campaign},
            )
        ).scalar_one()
        assert await ledger.revoke_grant(s, grant_id, "mistake", NOW)
        dissolved = {"g1": datetime(2026, 3, 20, tzinfo=UTC), "g2": NOW}
        assert await ledger.revoke_for_dissolved_groups(s, dissolved, NOW, TZ)

    steps += [("record", record), ("hold", hold), ("exclude", exclude), ("release", release),
              ("fulfil", fulfil), ("revoke", revoke)]  # fmt: skip
    seen: set[str] = set()
    for _name, write in steps:
        async with sessions() as s, s.begin():
            await write(s)
            await assert_counts_equal_a_scan(s, campaign)  # inside the writing transaction
        await check(sessions, campaign)
        async with sessions() as s:
            seen |= {g.status for g in await grants_of(s, campaign)}
    assert seen == {"granted", "budget_exhausted", "held_out", "held", "excluded", "revoked"}


async def test_concurrent_writers_of_one_campaign_neither_wait_on_counts_nor_lose_any(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = "cmp_00000000c0a2"
    await new_campaign(sessions, campaign, credit_fen=10**9)
    async with sessions() as s, s.begin():
        await ledger.record_grants(
            s, campaign, 1, [decision("monthly", f"x{i}", "2026-03") for i in range(20)]
        )
        ids = [r[0] for r in await s.execute(
            text("SELECT grant_id FROM grants WHERE campaign_id = :c ORDER BY grant_id"),
            {"c": campaign},
        )]  # fmt: skip

    async with sessions() as first, sessions() as second, sessions() as compactor:
        # A consumer records grants of the campaign and has not committed yet ...
        await first.begin()
        await ledger.record_grants(
            first, campaign, 1, [decision("monthly", f"y{i}", "2026-03") for i in range(20)]
        )
        # ... while the same counts change elsewhere: a fulfilment, a compaction, a bulk insert.
        async with second.begin():
            report = FulfilmentReport("fulfilled", "ref", None, NOW)
            await asyncio.wait_for(ledger.record_fulfilment(second, ids[0], report), 10)
            await asyncio.wait_for(
                second.execute(
                    text(
                        "INSERT INTO grants (campaign_id, version, rule_id, role, user_id, "
                        "period, status, items, fulfil_by, explanation, fulfilment_status) "
                        "SELECT :c, 1, 'monthly', 'user', 'z' || n, '2026-03', 'granted', "
                        "'[{\"kind\": \"credit_fen\", \"amount\": 100}]', '2026-04-10', '{}', "
                        "'pending' FROM generate_series(1, 20) n"
                    ),
                    {"c": campaign},
                ),
                10,
            )
        async with compactor.begin():
            await asyncio.wait_for(counts.compact(compactor, campaign), 10)
        await first.commit()
    await check(sessions, campaign)
    async with sessions() as s:
        n = (await s.execute(
            text("SELECT sum(grants) FROM report_counts WHERE campaign_id = :c"), {"c": campaign}
        )).scalar_one()  # fmt: skip
        assert n == 60


async def test_concurrent_compactions_fold_each_delta_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = "cmp_00000000c0a3"
    await new_campaign(sessions, campaign, credit_fen=10**9)
    for batch in range(5):
        async with sessions() as s, s.begin():
            decisions = [decision("daily", f"v{i}", f"2026-03-0{batch + 1}") for i in range(30)]
            await ledger.record_grants(s, campaign, 1, decisions)

    async def compact_once() -> None:
        async with sessions() as s, s.begin():
            await counts.compact(s, campaign)

    async with sessions() as s:
        assert campaign in await counts.pending_campaigns(s)
    # The settler's pass (every campaign with deltas) and reports' own compactions at once.
    await asyncio.gather(*(compact_once() for _ in range(3)), compact_pending(sessions))
    await check(sessions, campaign)
    async with sessions() as s:
        assert campaign not in await counts.pending_campaigns(s)


async def test_reached_users_equal_distinct_users_with_metrics_in_any_month_range(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    months = [date(2025, m, 1) for m in range(7, 13)]
    rng = random.Random(12)
    owned = {f"r{i:02d}": sorted(rng.sample(months, rng.randint(1, 5))) for i in range(60)}
    rows = [(u, m) for u, ms in owned.items() for m in ms]
    rng.shuffle(rows)  # later months often arrive before earlier ones
    insert = text(
        "INSERT INTO user_month (user_id, month, metrics) SELECT u, m, '{}' FROM "
        "unnest(CAST(:u AS text[]), CAST(:m AS date[])) AS x(u, m) "
        "ON CONFLICT (user_id, month) DO UPDATE SET metrics = excluded.metrics"
    )
    for start in range(0, len(rows), 17):  # a statement may hold several months of one user
        chunk = rows[start : start + 17]
        again = rows[: start // 2]  # upserts of months already stored add nobody
        async with sessions() as s, s.begin():
            await s.execute(
                insert, {"u": [u for u, _ in chunk + again], "m": [m for _, m in chunk + again]}
            )
    async with sessions() as s, s.begin():
        await s.execute(
            text("DELETE FROM user_month WHERE user_id = ANY(:u) AND month = :m"),
            {"u": ["r01", "r02", "r03"], "m": owned["r02"][0]},
        )

    async def assert_exact() -> None:
        async with sessions() as s:
            for i, m0 in enumerate(months):
                for m1 in months[i:]:
                    distinct = await s.execute(
                        text(
                            "SELECT count(DISTINCT user_id) FROM user_month "
                            "WHERE month BETWEEN :m0 AND :m1"
                        ),
                        {"m0": m0, "m1": m1},
                    )
                    assert await counts.reached_users(s, (m0, m1)) == distinct.scalar_one()

    await assert_exact()
    async with sessions() as s, s.begin():
        await counts.compact(s, "cmp_none")
    await assert_exact()
