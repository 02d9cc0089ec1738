"""Review hold, exclusions and changes after settlement (SPEC §10, §14) against a real rewards
service, broker and PostgreSQL of their own.

A reviewed campaign's month settles to `held` grants: nothing reaches engage.grants.v1 (so notify
has nothing to tell) until an approver who did not write the version releases the period —
then each grant is published once, however often the release is repeated. Excluded subjects
are never published. A campaign's exclusion list passes over a group in the ranking and the
next one wins. A late metric for a settled month marks the settlement
`changed_after_settlement` and leaves its grants alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from engage.progress import wait_consumed, wait_keys_known, wait_outbox_empty
from engage.stack import ServiceProcess, Stack
from engage.topic_audit import read_topic
from shared.metric_fields import DAY_POINTS, GROUP_MONTH_COUNTERS, USER_DAY_COUNTERS
from shared.topics import GRANTS_TOPIC, METRICS_TOPIC
from tests.integration.conftest import Keys, issue_keys, own_stack
from tests.reference.scoring_model import TZ

pytestmark = pytest.mark.asyncio
PROBLEM = "application/problem+json"
SCHEMA = "rewards"


@pytest.fixture(scope="module")
def review_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from own_stack(tmp_path_factory, "review")


@dataclass
class Env:
    stack: Stack
    url: str
    keys: Keys

    def client(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    @property
    def database_url(self) -> str:
        assert self.stack.database_url
        return self.stack.database_url

    @property
    def bootstrap(self) -> str:
        assert self.stack.kafka_bootstrap
        return self.stack.kafka_bootstrap


@pytest.fixture(scope="module")
async def env(review_stack: Stack) -> AsyncIterator[Env]:
    keys = await issue_keys(review_stack)
    service: ServiceProcess = review_stack.start_service(
        "rewards", env={"REWARDS_SETTLE_INTERVAL_S": "0"}
    )
    try:
        await wait_keys_known(
            service.url,
            "/v1/templates",
            [keys.owner, keys.approver, keys.owner_approver, keys.viewer, keys.admin],
        )
        yield Env(review_stack, service.url, keys)
    finally:
        service.stop()


# -- a settled month: two months back, past its grace ---------------------------------------


def month_start(months_back: int) -> date:
    first = datetime.now(TZ).date().replace(day=1)
    for _ in range(months_back):
        first = (first - timedelta(days=1)).replace(day=1)
    return first


# Each test its own month: a rank rule ranks every group of its month.
MONTH = month_start(2)
LABEL = MONTH.isoformat()[:7]
EXCLUDING = month_start(3)
CHANGING = month_start(4)


def midnight(d: date) -> str:
    return datetime(d.year, d.month, d.day, tzinfo=TZ).isoformat()


def definition(
    name: str, province: str, *, top: int, review: bool, month: date = MONTH
) -> dict[str, Any]:
    end = (month + timedelta(days=32)).replace(day=1)
    return {
        "name": name,
        "starts_at": midnight(month),
        "ends_at": midnight(end),
        "review": review,
        "budgets": {"prize": 10},
        "rules": [
            {
                "id": f"top-{province.lower()}",
                "kind": "rank",
                "partition": "province",
                "top": top,
                "eligibility": {"metric": "group.month.members", "op": ">=", "value": 0},
                "owner_reward": {"kind": "prize", "amount": 1},
                "member_reward": {"kind": "ticket", "amount": 1},
            }
        ],
    }


def flag(name: str, reason: str, **values: float) -> dict[str, Any]:
    return {"name": name, "reason": reason, "values": values}


def group_month(
    gid: str,
    province: str,
    vitality: int,
    members: list[str],
    flags: Sequence[dict[str, Any]] = (),
    month: date = MONTH,
) -> bytes:
    counters = dict.fromkeys(GROUP_MONTH_COUNTERS, 0) | {
        "members": len(members),
        "active_members": len(members),
        "activity_points": vitality,
    }
    return orjson.dumps(
        {"entity": "group", "grain": "month", "id": gid, "period": month.isoformat()[:7],
         "vitality": float(vitality), "owner_id": f"owner-{gid}", "name": gid,
         "province": province, "created_at": "2026-01-01T00:00:00+00:00", "dissolved_at": None,
         "member_ids": members, "flags": list(flags), **counters}
    )  # fmt: skip


def user_day(user: str, day: date, flags: list[dict[str, Any]]) -> bytes:
    counters = dict.fromkeys((*USER_DAY_COUNTERS, *DAY_POINTS), 0) | {"messages": 900}
    return orjson.dumps(
        {"entity": "user", "grain": "day", "id": user, "period": day.isoformat(),
         "flags": flags, **counters}
    )  # fmt: skip


async def publish_metrics(e: Env, records: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=e.bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(METRICS_TOPIC, r, key=orjson.loads(r)["id"].encode())
    finally:
        await producer.stop()
    await wait_consumed(e.database_url, e.bootstrap, SCHEMA, METRICS_TOPIC, timeout_s=120)


async def create_active(e: Env, doc: dict[str, Any], author: str) -> str:
    async with e.client(author) as owner, e.client(e.keys.approver) as approver:
        created = await owner.post("/v1/campaigns", json={"definition": doc})
        assert created.status_code == 201, created.text
        cid: str = created.json()["campaign_id"]
        assert (await owner.post(f"/v1/campaigns/{cid}/versions/1:submit")).status_code == 200
        assert (await approver.post(f"/v1/campaigns/{cid}/versions/1:approve")).status_code == 200
        active = await owner.post(f"/v1/campaigns/{cid}:activate")
        assert active.status_code == 200, active.text
        return cid


async def run_settlements(e: Env) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 180
    async with e.client(e.keys.admin) as admin:
        while True:
            response = await admin.post("/v1/settlements:run")
            if response.status_code == 200:
                run: dict[str, Any] = response.json()
                return run
            assert response.status_code == 503, response.text
            assert asyncio.get_running_loop().time() < deadline, "settlement never ran"
            await asyncio.sleep(0.5)


async def grants_of(e: Env, cid: str) -> list[dict[str, Any]]:
    async with e.client(e.keys.viewer) as viewer:
        r = await viewer.get("/v1/grants", params={"campaign_id": cid, "limit": 500})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def published(e: Env, cid: str) -> list[dict[str, Any]]:
    """engage.grants.v1 records of this campaign, once the outbox has drained."""
    await wait_outbox_empty(e.database_url, SCHEMA, "grants_outbox", timeout_s=120)
    out: list[dict[str, Any]] = []

    def collect(r: ConsumerRecord[bytes, bytes]) -> None:
        doc = orjson.loads(r.value) if r.value else {}
        if doc.get("campaign_id") == cid:
            out.append(doc)

    await read_topic(e.bootstrap, GRANTS_TOPIC, collect, timeout_s=120)
    return out


async def metric(e: Env, name: str) -> float:
    async with httpx.AsyncClient(base_url=e.url, timeout=10) as c:
        exposition = (await c.get("/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == name
    )


async def audit_actions(e: Env, cid: str) -> list[str]:
    async with e.client(e.keys.viewer) as viewer:
        r = await viewer.get(f"/v1/campaigns/{cid}/audit", params={"limit": 500})
    return [i["action"] for i in r.json()["items"]]


async def budget_spent(e: Env, cid: str) -> int:
    conn = await asyncpg.connect(e.database_url.replace("+asyncpg", ""))
    try:
        return int(
            await conn.fetchval(
                f'SELECT spent FROM "{SCHEMA}".budgets WHERE campaign_id = $1 AND kind = $2',
                cid,
                "prize",
            )
        )
    finally:
        await conn.close()


# -- review hold ----------------------------------------------------------------------------


async def test_a_reviewed_month_is_held_until_another_approver_releases_it_once(
    env: Env,
) -> None:
    e = env
    await publish_metrics(
        e,
        [
            group_month("rv-a", "RV", 50, ["rv-a1"],
                        [flag("late_joins", "9 of 10 members joined on the 28th", share=0.9)]),
            group_month("rv-b", "RV", 40, ["rv-b1"]),
            group_month("rv-c", "RV", 30, ["rv-c1"]),
            group_month("rv-d", "RV", 20, ["rv-d1"]),
            user_day("rv-b1", MONTH + timedelta(days=3),
                     [flag("message_rate", "600 messages a minute", per_minute=600)]),
        ],
    )  # fmt: skip
    # Written (and submitted) by a key that is an approver too: it may not review its own.
    cid = await create_active(
        e, definition("Reviewed", "RV", top=3, review=True), e.keys.owner_approver
    )

    run = await run_settlements(e)
    assert [s["grants"] for s in run["settled"] if s["campaign_id"] == cid] == [6]
    grants = await grants_of(e, cid)
    assert sorted(g["status"] for g in grants) == ["held"] * 6
    assert all(g["fulfilment"] is None for g in grants)
    assert await budget_spent(e, cid) == 3  # held prizes reserve their budget
    assert await published(e, cid) == []  # nothing to notify either: notify reads only this

    async with e.client(e.keys.viewer) as viewer:
        listed: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            r = await viewer.get(f"/v1/campaigns/{cid}/periods/{LABEL}/held", params=params)
            assert r.status_code == 200, r.text
            listed += r.json()["items"]
            if not r.json()["next_cursor"]:
                break
            params["cursor"] = r.json()["next_cursor"]
        settlement = (await viewer.get(f"/v1/campaigns/{cid}/settlements")).json()["items"]
    assert [g["flagged"] for g in listed] == [True, True, True, False, False, False]
    flagged = {g["user_id"]: g["flags"] for g in listed if g["flagged"]}
    assert set(flagged) == {"owner-rv-a", "rv-a1", "rv-b1"}
    (late,) = flagged["owner-rv-a"]
    assert (late["subject"], late["subject_id"], late["name"], late["period"]) == (
        "group", "rv-a", "late_joins", LABEL)  # fmt: skip
    assert late["reason"] == "9 of 10 members joined on the 28th"
    assert late["values"] == {"share": 0.9}
    (rate,) = flagged["rv-b1"]
    assert (rate["subject"], rate["name"]) == ("user", "message_rate")
    assert settlement[0]["held"] == 6

    async with e.client(e.keys.owner_approver) as author:
        refused = await author.post(f"/v1/campaigns/{cid}/periods/{LABEL}:release")
        refused_exclusion = await author.post(
            f"/v1/campaigns/{cid}/periods/{LABEL}:exclude",
            json={"group_ids": ["rv-b"], "reason": "mine"},
        )
    for r in (refused, refused_exclusion):
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["code"] == "self_review"
        assert "neither authored nor submitted" in r.json()["detail"]

    async with e.client(e.keys.approver) as approver:
        excluded = await approver.post(
            f"/v1/campaigns/{cid}/periods/{LABEL}:exclude",
            json={"group_ids": ["rv-a"], "user_ids": ["nobody"], "reason": "bunched joins"},
        )
        assert excluded.status_code == 200, excluded.text
        assert len(excluded.json()["excluded"]) == 2
        assert excluded.json()["not_held"] == {"user_ids": ["nobody"], "group_ids": []}
        assert await budget_spent(e, cid) == 2  # the excluded prize's reservation is freed

        released = await approver.post(f"/v1/campaigns/{cid}/periods/{LABEL}:release")
        assert released.status_code == 200, released.text
        again = await approver.post(f"/v1/campaigns/{cid}/periods/{LABEL}:release")
        assert again.status_code == 200 and again.json()["released"] == []
    assert len(released.json()["released"]) == 4

    grants = await grants_of(e, cid)
    by_status = {g["user_id"]: g["status"] for g in grants}
    assert by_status == {
        "owner-rv-a": "excluded", "rv-a1": "excluded",
        "owner-rv-b": "granted", "rv-b1": "granted",
        "owner-rv-c": "granted", "rv-c1": "granted",
    }  # fmt: skip
    out = next(g for g in grants if g["user_id"] == "owner-rv-a")
    assert (out["review_reason"], out["fulfilment"]) == ("bunched joins", None)
    assert all(g["fulfilment_status"] == "pending" for g in grants if g["status"] == "granted")

    records = await published(e, cid)
    assert sorted(r["grant_id"] for r in records) == sorted(released.json()["released"])
    assert {(r["event"], r["status"]) for r in records} == {("recorded", "granted")}
    assert await budget_spent(e, cid) == 2
    actions = await audit_actions(e, cid)
    assert actions.count("period.release") == 2 and actions.count("period.exclude") == 1


# -- exclusion lists ------------------------------------------------------------------------


async def test_an_excluded_group_is_passed_over_and_an_excluded_member_gets_nothing(
    env: Env,
) -> None:
    e = env
    await publish_metrics(
        e,
        [
            group_month("ex-1", "EX", 50, ["ex-m1"], month=EXCLUDING),
            group_month("ex-2", "EX", 40, ["ex-m2", "ex-cheat"], month=EXCLUDING),
            group_month("ex-3", "EX", 30, ["ex-m3"], month=EXCLUDING),
        ],
    )
    doc = definition("Excluding", "EX", top=2, review=False, month=EXCLUDING)
    cid = await create_active(e, doc, e.keys.owner)
    lists = {"group_ids": ["ex-1"], "user_ids": ["ex-cheat"], "reason": "staff groups"}
    async with e.client(e.keys.owner_approver) as author:
        # An author who is also an approver still may not decide who is passed over.
        draft = await author.post("/v1/campaigns", json={"definition": {**doc, "name": "Mine"}})
        assert draft.status_code == 201, draft.text
        mine = draft.json()["campaign_id"]
        refused = await author.put(f"/v1/campaigns/{mine}/exclusions", json=lists)
        assert refused.status_code == 403 and refused.json()["code"] == "self_review", refused.text
    async with e.client(e.keys.approver) as reviewer, e.client(e.keys.viewer) as viewer:
        put = await reviewer.put(f"/v1/campaigns/{cid}/exclusions", json=lists)
        assert put.status_code == 200, put.text
        shown = (await viewer.get(f"/v1/campaigns/{cid}/exclusions")).json()
    assert (shown["group_ids"], shown["user_ids"]) == (["ex-1"], ["ex-cheat"])
    assert "exclusions.replace" in await audit_actions(e, cid)

    await run_settlements(e)
    grants = await grants_of(e, cid)
    assert sorted(g["user_id"] for g in grants) == ["ex-m2", "ex-m3", "owner-ex-2", "owner-ex-3"]
    assert all(g["status"] == "granted" for g in grants)
    owner2 = next(g for g in grants if g["user_id"] == "owner-ex-2")
    assert owner2["explanation"]["rank"] == 1
    assert owner2["explanation"]["passed_over_excluded"] == ["ex-1"]
    assert owner2["explanation"]["excluded_users"] == ["ex-cheat"]
    records = await published(e, cid)
    assert {r["user_id"] for r in records} == {"ex-m2", "ex-m3", "owner-ex-2", "owner-ex-3"}


# -- after settlement -----------------------------------------------------------------------


async def test_a_late_metric_marks_the_settled_month_and_changes_no_grant(env: Env) -> None:
    e = env
    await publish_metrics(
        e,
        [
            group_month("ch-1", "CH", 50, ["ch-m1"], month=CHANGING),
            group_month("ch-2", "CH", 40, ["ch-m2"], month=CHANGING),
        ],
    )
    doc = definition("Changing", "CH", top=1, review=False, month=CHANGING)
    cid = await create_active(e, doc, e.keys.owner)
    await run_settlements(e)
    before = await grants_of(e, cid)
    assert [g["user_id"] for g in before] == ["owner-ch-1", "ch-m1"]
    changes = await metric(e, "engage_settled_period_changes_total")

    # An importer backdates 100,000 points into the settled month: ch-2 would now rank first.
    await publish_metrics(e, [group_month("ch-2", "CH", 100_040, ["ch-m2"], month=CHANGING)])
    await run_settlements(e)  # refreshes the gauges

    async with e.client(e.keys.viewer) as viewer:
        (settled,) = (await viewer.get(f"/v1/campaigns/{cid}/settlements")).json()["items"]
    assert settled["changed_after_settlement"] is True
    assert (settled["changed_subjects"], settled["max_abs_delta"]) == (1, 100_000)
    assert settled["last_changed_at"] is not None
    assert await grants_of(e, cid) == before
    assert await metric(e, "engage_settled_period_changes_total") == changes + 1
    assert await metric(e, "engage_settlements_changed") >= 1

    # The same values again (a redelivery) change nothing more.
    await publish_metrics(e, [group_month("ch-2", "CH", 100_040, ["ch-m2"], month=CHANGING)])
    assert await metric(e, "engage_settled_period_changes_total") == changes + 1


# -- flags as inputs ------------------------------------------------------------------------


async def test_a_draw_whose_eligibility_refuses_flagged_days_never_draws_one(env: Env) -> None:
    e = env
    day = month_start(5) + timedelta(days=4)
    rate = flag("message_rate", "600 messages a minute", per_minute=600)
    await publish_metrics(e, [user_day("fl-person", day, []), user_day("fl-bot", day, [rate])])
    doc: dict[str, Any] = {
        "name": "Draw for people",
        "starts_at": midnight(day),
        "ends_at": midnight(day + timedelta(days=1)),
        "rules": [
            {
                "id": "people-draw",
                "kind": "lottery",
                "period": "day",
                "winners": 5,
                "eligibility": {
                    "all": [
                        {"metric": "user.day.messages", "op": ">=", "value": 1},
                        {"metric": "user.day.flags.message_rate", "op": "==", "value": 0},
                    ]
                },
                "rewards": [{"kind": "points", "amount": 1}],
            }
        ],
    }
    cid = await create_active(e, doc, e.keys.owner)
    await run_settlements(e)
    assert [g["user_id"] for g in await grants_of(e, cid)] == ["fl-person"]
    async with e.client(e.keys.viewer) as viewer:
        draw = (await viewer.get(f"/v1/campaigns/{cid}/draws/people-draw/{day}")).json()
    assert draw["entries"] == ["fl-person"]

    async with e.client(e.keys.owner) as owner:
        unknown = await owner.put(
            f"/v1/campaigns/{cid}/draft",
            json={**doc, "rules": [{**doc["rules"][0], "eligibility": {
                "metric": "user.day.flags.robot", "op": "==", "value": 0}}]},
        )  # fmt: skip
    assert unknown.status_code == 422 and unknown.headers["content-type"] == PROBLEM
    assert "user.day.flags.robot" in unknown.json()["detail"]
    assert "message_rate" in unknown.json()["detail"]
