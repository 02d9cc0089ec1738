"""Lifecycle stages and business KPIs (SPEC §12) against an independent reference, and the proof
of the "Engage business" dashboard's SQL.

One seeded two-month simulation goes through ingest (last month by import, this month live),
plus a crafted third month before it through the import endpoint, on a private stack. Then a
late message flips a user's month from dormant to returning. Every user month's stage and
`loyal` (scoring's table) and every day's and month's KPIs (`GET /v1/stats/...`, totals and by
province, client, both) must equal tests/reference/kpi_model.py; every dashboard panel's SQL
must return rows with its columns on the same database.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import MetaData, make_url, text

from engage.demo import simulate_through_ingest, split_months
from engage.ops.dashboards import SQL_DASHBOARDS
from engage.ops.grafana_sql import prove_sql_panels
from engage.progress import wait_processed
from engage.simulator.client import post_events
from engage.simulator.world import SimConfig
from engage.stack import ServiceProcess, Stack
from engage.topic_audit import latest_values
from services.scoring.app import MIGRATIONS
from services.scoring.usecases.apply_events import apply_events
from services.scoring.usecases.ledger_retention import LedgerDays
from shared.contract import decode_envelope, encode_envelope
from shared.db import make_engine, make_sessionmaker, migrate
from shared.topics import METRICS_TOPIC
from tests.builders import make_event
from tests.integration.conftest import Keys, issue_keys, own_stack
from tests.reference import kpi_model as kpi
from tests.reference import scoring_model as ref

pytestmark = pytest.mark.asyncio
CONFIG = SimConfig(seed=20261130, users=150, groups=15, duplicate_rate=0.03, shuffle_window=800)
BREAKDOWNS: tuple[tuple[str, ...], ...] = ((), ("province",), ("client",), ("province", "client"))
FLIP = "kpi-flip"  # active two months ago and this month; a late message last month


@dataclass
class Traffic:
    stack: Stack
    keys: Keys
    scoring: ServiceProcess
    events: list[dict[str, Any]]  # distinct accepted events, late one included
    months: list[str]  # the three months, oldest first
    before_late: dict[str, Any]  # FLIP's last and this month before the late event


def local(month: str, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(int(month[:4]), int(month[5:]), day, hour, minute, tzinfo=ref.TZ)


def crafted_month(
    history: list[dict[str, Any]], third: str, last: str, this: str, now: datetime
) -> list[dict[str, Any]]:
    """A month before the simulated two: some simulated users active in it too (their
    first_seen moves back, their stages change), and a few users made to be each stage."""
    senders = sorted(
        {e["user_id"] for e in history if e["type"] == "message" and e["client"] != "sms"}
    )
    groups = sorted({e["group_id"] for e in history if e["type"] == "group_created"})
    out: list[dict[str, Any]] = []
    for i, user in enumerate(senders[::3]):
        group = groups[i % len(groups)]
        client = ("pc", "mobile")[i % 2]
        at = local(third, 1 + i % 28, 9 + i % 12)
        out += [
            make_event("message", user_id=user, client=client, group_id=group, at=at),
            make_event("message", user_id=user, client="pc", group_id=..., at=at),
            make_event("login", user_id=user, client=client, session_id=f"k{i}", at=at),
            make_event(
                "logout",
                user_id=user,
                client=client,
                session_id=f"k{i}",
                at=at + timedelta(hours=1),
            ),
        ]
        if i % 4 == 0:
            out.append(make_event("checkin", user_id=user, at=at))
    this_start = min(local(this, 1, 0, 30), now - timedelta(minutes=5))
    last_day = kpi.days_in(third)[-1]
    out += [
        make_event(
            "message", user_id=FLIP, client="pc", group_id=groups[0], at=local(third, 3, 12)
        ),
        make_event("message", user_id=FLIP, client="mobile", group_id=..., at=this_start),
        # active two months running, then gone: dormant this month
        make_event("message", user_id="kpi-gone", client="pc", group_id=..., at=local(third, 5, 8)),
        make_event(
            "message", user_id="kpi-gone", client="mobile", group_id=groups[1], at=local(last, 5, 8)
        ),
        # SMS only: new, never active
        make_event("message", user_id="kpi-sms", client="sms", group_id=..., at=local(third, 7, 8)),
        # seen through a join only: new without counters
        make_event("group_join", user_id="kpi-joiner", group_id=groups[2], at=local(third, 9, 8)),
        # a session over the month boundary: counted on its first day, time split across months
        make_event(
            "login",
            user_id="kpi-night",
            client="mobile",
            session_id="n",
            at=datetime.combine(last_day, datetime.min.time(), ref.TZ) + timedelta(hours=23),
        ),
        make_event(
            "logout",
            user_id="kpi-night",
            client="mobile",
            session_id="n",
            at=datetime.combine(last_day, datetime.min.time(), ref.TZ) + timedelta(hours=25),
        ),
        # a session whose logout comes before its login: counts nothing
        make_event(
            "login", user_id="kpi-night", client="pc", session_id="b", at=local(third, 2, 9)
        ),
        make_event(
            "logout", user_id="kpi-night", client="pc", session_id="b", at=local(third, 2, 8)
        ),
    ]
    return out


MONTH_NAMES = (*kpi.COUNTED, *kpi.STAGE_COUNTS)


def dense(rows: dict[Any, dict[str, int]], names: tuple[str, ...]) -> dict[Any, dict[str, int]]:
    return {k: {n: v.get(n, 0) for n in names} for k, v in rows.items()}


async def stored(database_url: str, schema: str) -> kpi.KpiExpected:
    """What scoring stored, in the reference's shape: every user month's stage, and the KPI
    rows summed by (period, province as read — pending keys are unknown, client), zeros out."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    out = kpi.KpiExpected()
    try:
        for r in await conn.fetch(
            f"SELECT user_id, to_char(month, 'YYYY-MM') AS m, lifecycle, loyal "
            f'FROM "{schema}".user_month WHERE lifecycle IS NOT NULL OR loyal'
        ):
            out.lifecycle[(r["user_id"], r["m"])] = (r["lifecycle"], r["loyal"])
        for table, period, names, into in (
            ("kpi_day", "day", kpi.COUNTED, out.day),
            ("kpi_month", "to_char(month, 'YYYY-MM')", MONTH_NAMES, out.month),
        ):
            rows = await conn.fetch(
                f"SELECT {period} AS p, CASE WHEN province LIKE '?%' THEN 'unknown' "
                f"ELSE province END AS province, client, {', '.join(names)} "
                f'FROM "{schema}".{table}'
            )
            sums: dict[Any, dict[str, int]] = {}
            for r in rows:
                row = sums.setdefault((r["p"], r["province"], r["client"]), dict.fromkeys(names, 0))
                for n in names:
                    row[n] += r[n]
            into.update({k: v for k, v in sums.items() if any(v.values())})
    finally:
        await conn.close()
    return out


async def read_only_role(database_url: str) -> str:
    """A login with exactly the grants docs/operations.md gives Grafana's role; its URL."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        database = await conn.fetchval("SELECT current_database()")
        for statement in (
            "CREATE ROLE engage_grafana LOGIN PASSWORD 'grafana'",
            "ALTER ROLE engage_grafana SET default_transaction_read_only = on",
            f'GRANT CONNECT ON DATABASE "{database}" TO engage_grafana',
            "GRANT USAGE ON SCHEMA scoring TO engage_grafana",
            "GRANT SELECT ON scoring.kpi_day, scoring.kpi_month TO engage_grafana",
        ):
            await conn.execute(statement)
    finally:
        await conn.close()
    url = make_url(database_url).set(username="engage_grafana", password="grafana")
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def kpi_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from own_stack(tmp_path_factory, "kpis")


async def read(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    """GET a 200 answer, waiting out the per-caller read limit (429, Retry-After)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        r = await client.get(path, params=params)
        if r.status_code != 429 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(float(r.headers.get("Retry-After", "0.2")) or 0.2)
    assert r.status_code == 200, f"{path}: {r.text}"
    return dict(r.json())


async def user_month(client: httpx.AsyncClient, user: str, month: str) -> dict[str, Any]:
    return await read(client, f"/v1/users/{user}/months/{month}")


@pytest.fixture(scope="module")
async def traffic(kpi_stack: Stack) -> Traffic:
    ingest = kpi_stack.start_service("ingest")
    scoring = kpi_stack.start_service("scoring", env={"SCORING_MAX_BATCH_RECORDS": "500"})
    keys = await issue_keys(kpi_stack)
    url = kpi_stack.database_url
    assert url
    now = datetime.now(UTC)
    history, live = split_months(CONFIG, now)
    this = ref.month_key(ref.day_of(now))
    last = kpi.previous_month(this)
    third = kpi.previous_month(last)
    crafted = crafted_month(history, third, last, this, now)
    # The crafted month first, by import: the simulated months then arrive after it.
    extra = await post_events(ingest.url, keys.importer, crafted, path="/v1/events:import")
    imported, posted = await simulate_through_ingest(
        ingest.url, keys.platform, keys.importer, CONFIG, now
    )
    assert imported.rejected == posted.rejected == extra.rejected == 0
    accepted = imported.accepted_ids | posted.accepted_ids | extra.accepted_ids
    events = [e for e in crafted + history + live if e["event_id"] in accepted]
    await wait_processed(url, len(events), timeout_s=240)

    headers = {"Authorization": f"Bearer {keys.viewer}"}
    async with httpx.AsyncClient(base_url=scoring.url, headers=headers, timeout=30) as c:
        before = {m: await user_month(c, FLIP, m) for m in (last, this)}
    late = make_event("message", user_id=FLIP, client="pc", group_id=..., at=local(last, 20, 10))
    report = await post_events(ingest.url, keys.importer, [late], path="/v1/events:import")
    assert report.unique_accepted == 1
    await wait_processed(url, len(events) + 1, timeout_s=60)
    return Traffic(kpi_stack, keys, scoring, [*events, late], [third, last, this], before)


def expected(t: Traffic) -> tuple[ref.Expected, kpi.KpiExpected]:
    exp = ref.compute(t.events, t.months)
    return exp, kpi.compute(t.events, exp)


async def test_a_late_message_turns_a_dormant_month_into_returning(traffic: Traffic) -> None:
    _, last, this = traffic.months
    assert (traffic.before_late[last]["lifecycle"], traffic.before_late[last]["loyal"]) == (
        "dormant",
        False,
    )
    assert traffic.before_late[this]["lifecycle"] == "resurrecting"
    headers = {"Authorization": f"Bearer {traffic.keys.viewer}"}
    async with httpx.AsyncClient(base_url=traffic.scoring.url, headers=headers, timeout=30) as c:
        got = {m: await user_month(c, FLIP, m) for m in traffic.months}
    assert [(got[m]["lifecycle"], got[m]["loyal"]) for m in traffic.months] == [
        ("new", False),
        ("returning", False),
        ("returning", True),
    ]
    # and the changelog republished both months (SPEC §4: consumers keep the latest value)
    assert traffic.stack.kafka_bootstrap
    keys = {f"user:{FLIP}:{m}": stage for m, stage in ((last, "returning"), (this, "returning"))}
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        table = await latest_values(traffic.stack.kafka_bootstrap, METRICS_TOPIC, 60)
        published = {k: (table.get(k) or {}).get("lifecycle") for k in keys}
        if published == keys or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert published == keys
    assert table[f"user:{FLIP}:{this}"]["loyal"] is True


async def test_every_user_months_stage_equals_the_reference(traffic: Traffic) -> None:
    exp, want = expected(traffic)
    assert traffic.stack.database_url
    got = await stored(traffic.stack.database_url, "scoring")
    assert got.lifecycle == want.lifecycle
    stages = {s for s, _ in want.lifecycle.values()}
    assert stages == {"new", "returning", "resurrecting", "dormant"}, "every stage exercised"
    assert any(loyal for _, loyal in want.lifecycle.values())
    # and through the read API, for a sample (with the §4 counters beside them)
    headers = {"Authorization": f"Bearer {traffic.keys.viewer}"}
    sample = sorted(want.lifecycle)[::7]
    async with httpx.AsyncClient(base_url=traffic.scoring.url, headers=headers, timeout=30) as c:
        for user, month in sample:
            body = await user_month(c, user, month)
            assert (body["lifecycle"], body["loyal"]) == want.lifecycle[(user, month)], (
                user,
                month,
            )
            assert body["messages"] == exp.user_month.get((user, month), {}).get("messages", 0)


def comparable(items: list[dict[str, Any]]) -> dict[tuple[Any, Any], dict[str, Any]]:
    """Items by (province, client), without those holding nothing at all."""
    out = {}
    for item in items:
        numbers = [v for k, v in item.items() if k not in ("province", "client") and v]
        if numbers:
            out[(item["province"], item["client"])] = {
                k: pytest.approx(v, abs=1e-9) if isinstance(v, float) else v
                for k, v in item.items()
            }
    return out


async def test_day_and_month_stats_equal_the_reference(traffic: Traffic) -> None:
    _, want = expected(traffic)
    today = datetime.now(ref.TZ).date()
    headers = {"Authorization": f"Bearer {traffic.keys.viewer}"}
    checked = 0
    async with httpx.AsyncClient(base_url=traffic.scoring.url, headers=headers, timeout=30) as c:
        for month in traffic.months:
            for by in BREAKDOWNS:
                body = await read(c, f"/v1/stats/month/{month}", by=list(by))
                wanted = kpi.month_items(want, month, set(by), today)
                assert comparable(body["items"]) == comparable(wanted), (month, by)
                checked += 1
            for day in (d for d in kpi.days_in(month) if d <= today):
                for by in BREAKDOWNS:
                    body = await read(c, f"/v1/stats/day/{day.isoformat()}", by=list(by))
                    wanted = kpi.day_items(want, day, set(by))
                    assert comparable(body["items"]) == comparable(wanted), (day, by)
                    checked += 1
    assert checked >= 4 * (3 + 31)
    provinces = {p for (_, p, _) in want.month if p != kpi.UNKNOWN}
    assert len(provinces) >= 3, "the breakdown by province is exercised"


async def test_stored_kpi_rows_equal_the_reference(traffic: Traffic) -> None:
    """The rows Grafana reads (pending provinces read as unknown), every client."""
    _, want = expected(traffic)
    assert traffic.stack.database_url
    got = await stored(traffic.stack.database_url, "scoring")
    assert got.day == dense(want.day, kpi.COUNTED)
    assert got.month == dense(want.month, MONTH_NAMES)


async def test_every_business_panel_query_returns_its_columns(traffic: Traffic) -> None:
    """The proof of deploy/grafana/dashboards/engage-business.json (like the Prometheus one)."""
    url = traffic.stack.database_url
    assert url
    now = datetime.now(UTC)
    results = await prove_sql_panels(await read_only_role(url), now - timedelta(days=100), now)
    assert len(results) == sum(len(d.panels) for d in SQL_DASHBOARDS)
    assert [(r.panel, r.problem) for r in results if not r.ok] == []
    by_title = {r.panel: r for r in results}
    lifecycle = by_title["Lifecycle by month"]
    assert [row[0] for row in lifecycle.rows] == traffic.months
    _, want = expected(traffic)
    third = traffic.months[0]
    new_then = sum(
        v.get("new_users", 0) for (m, _, c), v in want.month.items() if m == third and c == "all"
    )
    assert lifecycle.rows[0][2] == new_then


def random_events(rnd: random.Random, now: datetime) -> list[dict[str, Any]]:
    """Messages (some to a group never created), sessions (some ending before they start),
    check-ins and joins of 40 users over the last 33 days; six groups created meanwhile."""
    events = [
        make_event(
            "group_created",
            user_id=f"o{g}",
            group_id=f"r{g}",
            province=("GD", "BJ", "SH")[g % 3],
            at=now - timedelta(days=rnd.uniform(0, 33)),
        )
        for g in range(6)
    ]
    for _ in range(600):
        user = f"ru{rnd.randrange(40)}"
        at = now - timedelta(days=rnd.uniform(0, 33))
        kind = rnd.random()
        if kind < 0.6:
            group = rnd.choice([..., *(f"r{i}" for i in range(7))])
            client = rnd.choice(["pc", "mobile", "sms"])
            events.append(make_event("message", user_id=user, client=client, group_id=group, at=at))
        elif kind < 0.8:
            session = f"s{rnd.randrange(5)}"
            client = rnd.choice(["pc", "mobile", "sms"])
            end = at + timedelta(minutes=rnd.uniform(-5, 90))
            events += [
                make_event("login", user_id=user, session_id=session, client=client, at=at),
                make_event("logout", user_id=user, session_id=session, client=client, at=end),
            ]
        elif kind < 0.9:
            events.append(make_event("checkin", user_id=user, at=at))
        else:
            group = f"r{rnd.randrange(6)}"
            events.append(make_event("group_join", user_id=user, group_id=group, at=at))
    rnd.shuffle(events)
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_stages_and_kpis_stay_exact_in_any_order_and_batching(
    kpi_stack: Stack, seed: int
) -> None:
    """Random events in random order and batch sizes straight into scoring's use case: the
    stored stages and KPI rows equal the reference computed from the events at once."""
    assert kpi_stack.database_url
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    events = random_events(rnd, now)
    schema = f"kpi_random_{seed}"
    engine = make_engine(kpi_stack.database_url, schema, pool_size=2)
    try:
        await migrate(engine, MIGRATIONS, schema, MetaData())
        sessions = make_sessionmaker(engine)
        envelopes = [
            decode_envelope(encode_envelope(e, now.isoformat(), "test", "import")) for e in events
        ]
        await LedgerDays(sessions).prepare_events(envelopes)
        i = 0
        while i < len(envelopes):
            n = rnd.randint(1, 60)
            async with sessions() as session, session.begin():
                await apply_events(session, envelopes[i : i + n], ref.TZ, now)
            i += n
        got = await stored(kpi_stack.database_url, schema)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
    months = sorted({ref.month_key(ref.day_of(ref.ts(e["occurred_at"]))) for e in events})
    want = kpi.compute(events, ref.compute(events, months))
    assert got.lifecycle == want.lifecycle
    assert got.day == dense(want.day, kpi.COUNTED)
    assert got.month == dense(want.month, MONTH_NAMES)
    assert any(p == kpi.UNKNOWN for _, p, _ in want.month), "a group never created: unknown"
