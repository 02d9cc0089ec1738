"""The campaign report (SPEC §12) on a real PostgreSQL against an independent computation
(tests/reference/report_model.py): a two-rule campaign with a 20% holdout is fed through the
real ledger (record_grants with the campaign's holdout), fulfilment reports, a frozen draw and
the month metrics rewards stores, with a planted effect on next month's activity, and its
winners' reward notices queued in notify and left in various statuses; the report's entrants,
winners, held-out users, money, each period's notices, the funnel and the uplift must equal the
reference."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engage.progress import wait_keys_known
from engage.stack import ServiceProcess, Stack
from services.notify.app import MIGRATIONS as NOTIFY_MIGRATIONS
from services.notify.domain.notices import grant_notice, schedule
from services.notify.store import notifications as notify_store
from services.notify.usecases.notifications import resend
from services.rewards.app import MIGRATIONS
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.fulfilment import FulfilmentReport
from services.rewards.domain.holdout import Holdout
from services.rewards.store import holdouts, ledger
from services.rewards.usecases.report import ReportRequest, campaign_report, report_csv
from shared.auth import Principal, Role
from shared.records import GrantRecord
from tests.integration.conftest import Keys, migrated_sessions
from tests.reference import report_model as ref

pytestmark = pytest.mark.asyncio
SCHEMA = "rewards_report_test"
NOTIFY_SCHEMA = "notify_report_test"
TZ = ZoneInfo("Asia/Shanghai")
READER = Principal("k_report", "report", frozenset({Role.VIEWER}), 1.0)  # no team, as CAMPAIGN
CAMPAIGN = "cmp_00000000a11c"
HOLDOUT = 20
EFFECT = 8.0
PRICES = {"data_mb": 3, "sms": 5}
CHECKIN_ITEMS = {"credit_fen": 200, "data_mb": 100}
DRAW_ITEMS = {"prize": 1}
USERS = [f"u{i:04d}" for i in range(1500)]
DEFINITION: dict[str, Any] = {
    "name": "Report test",
    "starts_at": "2026-03-01T00:00:00+08:00",
    "ends_at": "2026-05-01T00:00:00+08:00",
    "unit_prices": PRICES,
    "holdout_percent": HOLDOUT,
    "rules": [
        {
            "kind": "threshold",
            "id": "checkin",
            "period": "month",
            "condition": {"metric": "user.month.checkins", "op": ">=", "value": 3},
            "rewards": [
                {"kind": "credit_fen", "amount": 200},
                {"kind": "data_mb", "amount": 100},
            ],
        },
        {
            "kind": "lottery",
            "id": "draw",
            "period": "month",
            "winners": 20,
            "rewards": [{"kind": "prize", "amount": 1}],
        },
    ],
}


@pytest.fixture(scope="module")
async def sessions(stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(stack, MIGRATIONS, SCHEMA) as sessions:
        yield sessions


@pytest.fixture(scope="module")
async def notify_sessions(stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(stack, NOTIFY_MIGRATIONS, NOTIFY_SCHEMA) as sessions:
        yield sessions


def grant_record(grant_id: int, campaign: str, rule: str, period: str, user: str) -> GrantRecord:
    return GrantRecord.model_validate(
        {
            "event": "recorded", "grant_id": grant_id, "campaign_id": campaign, "version": 1,
            "rule_id": rule, "role": "user", "user_id": user, "period": period,
            "status": "granted", "items": [{"kind": "credit_fen", "amount": 100}],
            "fulfil_by": date(2026, 4, 10),
        }
    )  # fmt: skip


REASONS = {"deferred": "daily_cap", "suppressed": "opted_out", "failed": "receipt: UNDELIV"}


async def queue_notices(
    sessions: async_sessionmaker[AsyncSession],
    grants: Sequence[GrantRecord],
    statuses: Sequence[str],
    old: Sequence[int] = (),
) -> list[ref.Notice]:
    """Queue each grant's reward notice as notify's consumer does, leave it in its status (with
    a reason where one applies), and wipe the rule and period of the grants `old` as if queued
    before notices kept them. Returns the notices as the reference sees them."""
    notices = [n for n in map(grant_notice, grants) if n is not None]
    async with sessions() as s, s.begin():
        policies = await notify_store.policies(s)
        await notify_store.enqueue(s, schedule(notices, policies, datetime.now(UTC)))
        await s.execute(
            text(
                "UPDATE notifications n SET status = x.st, reason = x.r FROM unnest("
                "CAST(:src AS text[]), CAST(:st AS text[]), CAST(:r AS text[])) AS x(src, st, r) "
                "WHERE n.source = x.src"
            ),
            {
                "src": [f"grant:{g.grant_id}" for g in grants],
                "st": list(statuses),
                "r": [REASONS.get(st) for st in statuses],
            },
        )
        await s.execute(
            text(
                "UPDATE notifications SET rule_id = NULL, period = NULL "
                "WHERE source = ANY(CAST(:src AS text[]))"
            ),
            {"src": [f"grant:{g}" for g in old]},
        )
    return [
        ref.Notice(
            None if g.grant_id in old else g.rule_id, None if g.grant_id in old else g.period,
            g.user_id, st,
        )
        for g, st in zip(grants, statuses, strict=True)
    ]  # fmt: skip


def decision(rule: str, user: str, items: dict[str, int]) -> GrantDecision:
    return GrantDecision(rule, "user", user, "2026-03", tuple(items.items()), date(2026, 4, 10))


class World:
    """What the test feeds the ledger, and the reference's view of it."""

    def __init__(self, seed: str) -> None:
        rng = random.Random(16)
        self.seed = seed
        self.reached = USERS  # every user has March metrics
        self.met = USERS[:900]  # met the check-in condition in March
        self.tickets = USERS[600:1400]  # held tickets in March's draw
        self.drawn = rng.sample(self.tickets, 20)
        self.fulfilled = set(self.met[:300])
        self.base = {u: max(0.0, rng.gauss(30, 12)) for u in USERS}
        self.checkin = ref.period_of(self.met, [], self.met, CHECKIN_ITEMS, seed, HOLDOUT)
        self.draw = ref.period_of([], self.tickets, self.drawn, DRAW_ITEMS, seed, HOLDOUT)
        self.winners = self.checkin.winners | self.draw.winners
        self.treated_next: dict[str, float] = {}
        for u in USERS:  # the planted effect: winners are EFFECT more active in April
            noise = rng.gauss(0, 4)
            self.treated_next[u] = self.base[u] + (EFFECT + noise if u in self.winners else 0)

    def april(self, user: str) -> dict[str, float]:
        points = round(self.treated_next[user], 2)
        return {"activity_points": points, "active": 1.0 if points >= 25 else 0.0}


async def feed(sessions: async_sessionmaker[AsyncSession], w: World) -> None:
    async with sessions() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO campaigns (campaign_id, created_by, live_version, state) "
                "VALUES (:c, 'test', 1, 'active')"
            ),
            {"c": CAMPAIGN},
        )
        await s.execute(
            text(
                "INSERT INTO campaign_versions (campaign_id, version, status, definition, author,"
                " authors) VALUES (:c, 1, 'active', CAST(:d AS jsonb), 'test', '{test}')"
            ),
            {"c": CAMPAIGN, "d": orjson.dumps(DEFINITION).decode()},
        )
        await s.execute(
            text("INSERT INTO holdout_seeds (campaign_id, seed, seed_sha256) VALUES (:c, :s, 'x')"),
            {"c": CAMPAIGN, "s": w.seed},
        )
        holdout = await holdouts.holdout_of(s, CAMPAIGN, HOLDOUT)
        assert holdout == Holdout(w.seed, HOLDOUT)
        await ledger.record_grants(
            s, CAMPAIGN, 1, [decision("checkin", u, CHECKIN_ITEMS) for u in w.met], holdout=holdout
        )
        await ledger.record_grants(
            s, CAMPAIGN, 1, [decision("draw", u, DRAW_ITEMS) for u in w.drawn], holdout=holdout
        )
        entries = sorted(w.tickets)
        await s.execute(
            text(
                "INSERT INTO draws (campaign_id, rule_id, period, seed, seed_sha256, "
                "period_starts_at, drawn_at, version, entries, entries_digest, winners) VALUES "
                "(:c, 'draw', '2026-03', 's', 'h', now(), now(), 1, :e, 'd', :w)"
            ),
            {"c": CAMPAIGN, "e": entries, "w": sorted(w.drawn)},
        )
        rows = await s.execute(
            text(
                "SELECT grant_id, user_id FROM grants WHERE rule_id = 'checkin' AND "
                "status = 'granted' AND user_id = ANY(:u)"
            ),
            {"u": sorted(w.fulfilled)},
        )
        at = datetime(2026, 4, 2, tzinfo=UTC)
        for r in rows:
            report = FulfilmentReport("fulfilled", f"ref-{r.grant_id}", None, at)
            await ledger.record_fulfilment(s, r.grant_id, report)
        for month, values in (
            (date(2026, 3, 1), lambda u: {"activity_points": w.base[u], "active": 1.0}),
            (date(2026, 4, 1), w.april),
        ):
            await s.execute(
                text(
                    "INSERT INTO user_month (user_id, month, metrics) SELECT u, :m, m FROM "
                    "unnest(CAST(:u AS text[]), CAST(:v AS jsonb[])) AS x(u, m)"
                ),
                {"m": month, "u": USERS, "v": [orjson.dumps(values(u)).decode() for u in USERS]},
            )


NOTICE_STATUSES = ["queued", "deferred", "sent", "delivered", "failed", "suppressed"]


async def notify_winners(
    sessions: async_sessionmaker[AsyncSession], notify: async_sessionmaker[AsyncSession]
) -> list[ref.Notice]:
    """Every winner's reward notice, in a status drawn at random, and one more notice of a
    checkin winner queued before notices kept their rule and period (delivered: it tells a
    user the periods' notices may not)."""
    async with sessions() as s:
        rows = await s.execute(
            text(
                "SELECT grant_id, rule_id, period, user_id FROM grants WHERE campaign_id = :c "
                "AND status = 'granted' ORDER BY grant_id"
            ),
            {"c": CAMPAIGN},
        )
        grants = [grant_record(r.grant_id, CAMPAIGN, r.rule_id, r.period, r.user_id) for r in rows]
    rng = random.Random(1616)
    statuses = [rng.choice(NOTICE_STATUSES) for _ in grants]
    untold = next(g for g, st in zip(grants, statuses, strict=True) if st not in ref.TOLD)
    grants.append(grant_record(10**9, CAMPAIGN, untold.rule_id, untold.period, untold.user_id))
    statuses.append("delivered")
    return await queue_notices(notify, grants, statuses, old=[10**9])


async def test_the_report_equals_the_reference(
    sessions: async_sessionmaker[AsyncSession], notify_sessions: async_sessionmaker[AsyncSession]
) -> None:
    w = World(seed="c0ffee" * 10)
    await feed(sessions, w)
    made = await notify_winners(sessions, notify_sessions)

    async def counted(campaign_id: str) -> dict[str, Any]:  # notify's answer, as over HTTP
        async with notify_sessions() as s:
            got = await notify_store.campaign_counts(s, campaign_id)
        doc: dict[str, Any] = orjson.loads(orjson.dumps(asdict(got)))
        return doc

    now = datetime(2026, 4, 20, tzinfo=UTC)  # grants due by 04-10 and not fulfilled: overdue
    doc = await campaign_report(sessions, ReportRequest(CAMPAIGN), READER, TZ, now, counted)

    periods = {(p["rule_id"], p["period"]): p for p in doc["periods"]}
    for rule, exp in (("checkin", w.checkin), ("draw", w.draw)):
        got = periods[(rule, "2026-03")]
        assert got["entrants"] == len(exp.entrants), rule
        assert got["winners"] == len(exp.winners), rule
        assert got["held_out"] == len(exp.held_out), rule
        assert got["units"] == exp.units, rule
        assert got["grants"] == {"granted": len(exp.winners), "held_out": len(exp.held_out)}
    checkin = periods[("checkin", "2026-03")]
    n_checkin = len(w.checkin.winners)
    fulfilled = len(w.fulfilled & w.checkin.winners)
    assert checkin["fulfilment"] == {"fulfilled": fulfilled, "overdue": n_checkin - fulfilled}
    assert checkin["money_fen"] == {
        "credit_fen": 200 * n_checkin,
        "data_mb": ref.money(100 * n_checkin, PRICES["data_mb"]),
    }
    assert periods[("draw", "2026-03")]["money_fen"] == {"prize": None}  # no price, no money
    expected_notices = ref.notices_per_period(made)
    assert set(expected_notices) == {("checkin", "2026-03"), ("draw", "2026-03")}
    for key, exp_notices in expected_notices.items():
        assert periods[key]["notices"] == exp_notices.counts, key
        assert periods[key]["told"] == len(exp_notices.told), key
        reasons = [(r["status"], r["reason"], r["n"]) for r in periods[key]["notice_reasons"]]
        expected_reasons = [(st, REASONS.get(st), n) for st, n in exp_notices.counts.items()]
        assert sorted(reasons) == sorted(expected_reasons), key
    csv_rows = {(r[0], r[1]): r for r in (line.split(",") for line in report_csv(doc).splitlines())}
    header = csv_rows.pop(("rule_id", "period"))
    for key, exp_notices in expected_notices.items():
        row = dict(zip(header, csv_rows[key], strict=True))
        assert row["told"] == str(len(exp_notices.told)), key
        assert row["notices_suppressed"] == str(exp_notices.counts.get("suppressed", 0)), key
    assert "periods" not in doc["notices"]  # the campaign's notices stay whole
    assert doc["notices"]["counts"]["delivered"] == sum(n.status == "delivered" for n in made)
    assert doc["totals"]["money_fen_total"] == 200 * n_checkin + 300 * n_checkin
    assert doc["totals"]["money_fen_fulfilled"] == 500 * fulfilled
    assert doc["totals"]["unpriced_kinds"] == ["prize"]

    funnel = {s["step"]: s["users"] for s in doc["funnel"]}
    entered = w.checkin.entrants | w.draw.entrants
    active_april = {u for u in w.winners if w.april(u)["active"] >= 1}
    assert funnel == {
        "reached": len(w.reached),
        "entered": len(entered),
        "won": len(w.winners),
        # with the notice of no period: told in the campaign, in no period
        "told": len(ref.told_users(made)),
        "fulfilled": fulfilled,
        "active_next_period": len(active_april),
    }

    held = {u for u in w.checkin.held_out | w.draw.held_out}
    treated = [w.treated_next[u] for u in sorted(w.winners)]
    control = [w.treated_next[u] for u in sorted(held)]
    diff, low, high = ref.welch(treated, control)
    u = doc["uplift"]
    assert (u["n_treated"], u["n_held_out"]) == (len(treated), len(control))
    assert u["difference"] == pytest.approx(diff, abs=0.01)  # April values stored to 2 decimals
    assert (u["ci_low"], u["ci_high"]) == pytest.approx((low, high), rel=0.01)
    assert u["ci_low"] < EFFECT < u["ci_high"] and u["ci_low"] > 0
    assert doc["holdout"]["percent"] == HOLDOUT and doc["holdout"]["seed"] is None  # not ended


async def test_held_out_grants_spend_no_budget_and_are_never_published(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = "cmp_00000000b0d9"
    async with sessions() as s, s.begin():
        await s.execute(
            text("INSERT INTO campaigns (campaign_id, created_by) VALUES (:c, 'test')"),
            {"c": campaign},
        )
        await s.execute(
            text(
                "INSERT INTO budgets (campaign_id, kind, total) VALUES (:c, 'credit_fen', 1000000)"
            ),
            {"c": campaign},
        )
        seed = await holdouts.commit_seed(s, campaign)
        assert seed == await holdouts.commit_seed(s, campaign)  # chosen once
        before = (await s.execute(text("SELECT count(*) FROM grants_outbox"))).scalar_one()
        users = [f"v{i}" for i in range(200)]
        recorded = await ledger.record_grants(
            s, campaign, 1, [decision("r", u, {"credit_fen": 100}) for u in users],
            holdout=Holdout(seed, 50),
        )  # fmt: skip
        out = {r["user_id"] for r in recorded.rows if r["status"] == "held_out"}
        assert out == {u for u in users if ref.is_held_out(seed, u, 50)}
        assert 60 < len(out) < 140
        spent = (
            await s.execute(
                text("SELECT spent FROM budgets WHERE campaign_id = :c"), {"c": campaign}
            )
        ).scalar_one()
        assert spent == 100 * (len(users) - len(out))
        published = (await s.execute(text("SELECT count(*) FROM grants_outbox"))).scalar_one()
        assert published - before == len(users) - len(out)


# -- over HTTP ------------------------------------------------------------------------------------


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_the_report_over_http_json_csv_404_and_422(
    rewards: ServiceProcess, keys: Keys
) -> None:
    await wait_keys_known(rewards.url, "/v1/templates", [keys.owner, keys.approver, keys.viewer])
    start = datetime.now(UTC) + timedelta(days=3)
    window = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(days=40)).isoformat()}
    async with httpx.AsyncClient(base_url=rewards.url, timeout=30) as api:
        r = await api.post(
            "/v1/campaigns", json={"template": "invite_friends", **window}, headers=auth(keys.owner)
        )
        assert r.status_code == 201, r.text
        cid = r.json()["campaign_id"]
        definition = dict(r.json()["versions"][0]["definition"])
        definition |= {"holdout_percent": 10, "unit_prices": {"data_mb": 3}}
        r = await api.put(f"/v1/campaigns/{cid}/draft", json=definition, headers=auth(keys.owner))
        assert r.status_code == 200, r.text
        v = r.json()["versions"][-1]["version"]  # a saved draft may be a new version
        for path, key in (
            (f"/versions/{v}:submit", keys.owner),
            (f"/versions/{v}:approve", keys.approver),
            (":activate", keys.owner),
        ):
            r = await api.post(f"/v1/campaigns/{cid}{path}", headers=auth(key))
            assert r.status_code == 200, r.text

        r = await api.get(f"/v1/campaigns/{cid}/report", headers=auth(keys.viewer))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["state"] == "active" and doc["periods"] == []
        assert doc["unit_prices"] == {"data_mb": 3}
        assert doc["holdout"]["percent"] == 10 and len(doc["holdout"]["seed_sha256"]) == 64
        assert doc["holdout"]["seed"] is None  # revealed only once the campaign has ended
        assert [s["step"] for s in doc["funnel"]] == [
            "reached", "entered", "won", "told", "fulfilled", "active_next_period"
        ]  # fmt: skip
        assert doc["funnel"][3]["users"] is None  # this rewards is not wired to notify
        assert doc["uplift"]["n_treated"] == 0 and doc["uplift"]["ci_low"] is None

        for params, headers in (({"format": "csv"}, {}), ({}, {"Accept": "text/csv"})):
            r = await api.get(
                f"/v1/campaigns/{cid}/report",
                params=params,
                headers=auth(keys.viewer) | headers,
            )
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            assert r.text.startswith("rule_id,period,entrants,winners,held_out,")

        r = await api.get("/v1/campaigns/cmp_000000000000/report", headers=auth(keys.viewer))
        assert r.status_code == 404 and r.json()["code"] == "campaign_not_found"
        r = await api.get(
            f"/v1/campaigns/{cid}/report",
            params={"from": "2026-05-02", "to": "2026-05-01"},
            headers=auth(keys.viewer),
        )
        assert r.status_code == 422, r.text
        r = await api.post(f"/v1/campaigns/{cid}:end", headers=auth(keys.owner))
        assert r.status_code == 200, r.text
        r = await api.get(f"/v1/campaigns/{cid}/report", headers=auth(keys.viewer))
        seed = r.json()["holdout"]["seed"]
        assert hashlib.sha256(seed.encode()).hexdigest() == r.json()["holdout"]["seed_sha256"]


# -- notify's counts per campaign, rule and period ------------------------------------------------


async def test_notify_counts_a_campaigns_notices_by_status_and_reason_and_per_period(
    notify_sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = "cmp_00000000a11d"
    periods = [("r", "2026-03"), ("r", "2026-04"), ("s", "2026-03")]
    first = 900_000  # grant ids of no other test's campaign
    grants = [grant_record(first + i, campaign, *periods[i % 3], f"n{i % 4}") for i in range(12)]
    statuses = ["sent", "delivered", "suppressed", "queued", "failed", "deferred"] * 2
    # the second grant's notice (delivered to n1, whose others were not) was queued before
    # notices kept their rule and period: it counts, and tells n1, in the campaign, in no period
    made = await queue_notices(notify_sessions, grants, statuses, old=[first + 1])
    async with notify_sessions() as s:
        original = await s.execute(
            text("SELECT id FROM notifications WHERE source = :s"), {"s": f"grant:{first}"}
        )
        original_id = original.scalar_one()
    again = await resend(notify_sessions, original_id, "k_admin")  # keeps its original's period
    made.append(ref.Notice("r", "2026-03", again.user_id, again.status))
    async with notify_sessions() as s:
        got = await notify_store.campaign_counts(s, campaign)
        other = await notify_store.campaign_counts(s, "cmp_ffffffffffff")

    assert got.counts == {"sent": 2, "delivered": 2, "suppressed": 2, "queued": 3,
                          "failed": 2, "deferred": 2}  # fmt: skip
    assert {"status": "suppressed", "reason": "opted_out", "n": 2} in got.reasons
    assert got.told_users == len(ref.told_users(made)) == 4
    expected = ref.notices_per_period(made)
    assert [(p.rule_id, p.period) for p in got.periods] == sorted(expected)
    for p in got.periods:
        exp = expected[(p.rule_id, p.period)]
        assert p.counts == exp.counts, p
        assert p.told_users == len(exp.told), p
        assert sum(r["n"] for r in p.reasons) == sum(exp.counts.values()), p
    assert sum(sum(p.counts.values()) for p in got.periods) == sum(got.counts.values()) - 1
    assert got.unattributed == 1 and other.unattributed == 0  # the old notice, said so
    assert {p.period: p.told_users for p in got.periods if p.rule_id == "r"} == {
        "2026-03": 2, "2026-04": 1,
    }  # fmt: skip
    assert other.counts == {} and other.told_users == 0 and other.periods == []
