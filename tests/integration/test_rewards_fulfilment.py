"""Every promise is true (SPEC §11) against a real rewards service, broker and PostgreSQL:
grants fulfilled through the API and through engage.fulfilment.v1 (idempotent, contradictions
refused), overdue grants seen, filtered and counted, and a user's timeline.

Grants are recorded straight into rewards' ledger (store/ledger.py, as settlement would) for
campaigns created through the API, so each test controls its grants' fulfil-by days."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engage.dlq import dead_letters
from engage.progress import wait_consumed, wait_keys_known, wait_outbox_empty
from engage.stack import ServiceProcess, Stack
from engage.topic_audit import read_topic
from services.rewards.domain.decisions import GrantDecision
from services.rewards.store.ledger import record_grants
from shared.db import make_engine, make_sessionmaker
from shared.topics import FULFILMENT_DLQ, FULFILMENT_TOPIC, GRANTS_TOPIC
from tests.integration.conftest import Keys

pytestmark = pytest.mark.asyncio
PROBLEM = "application/problem+json"
TZ = ZoneInfo("Asia/Shanghai")  # the stack's default ENGAGE_TIMEZONE


def today() -> date:
    return datetime.now(TZ).date()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
async def ledger_sessions(
    stack: Stack, rewards: ServiceProcess
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the running rewards service's own schema (it migrated it on start)."""
    assert stack.database_url
    engine = make_engine(stack.database_url, "rewards")
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def api(rewards: ServiceProcess, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    await wait_keys_known(
        rewards.url, "/v1/templates", [keys.owner, keys.viewer, keys.admin, keys.fulfiller]
    )
    async with httpx.AsyncClient(base_url=rewards.url, timeout=30) as c:
        yield c


def decision(user: str, fulfil_by: date, items: tuple[tuple[str, int], ...] = (("points", 1),),
             rule: str = "rule") -> GrantDecision:  # fmt: skip
    return GrantDecision(rule, "user", user, "2026-10", items, fulfil_by, explanation={"why": 1})


async def grants(
    api: httpx.AsyncClient,
    keys: Keys,
    sessions: async_sessionmaker[AsyncSession],
    decisions: list[GrantDecision],
) -> list[dict[str, Any]]:
    """A new draft campaign with a prize budget of 10, and these grants in it."""
    start = datetime.now(UTC) + timedelta(days=30)
    r = await api.post(
        "/v1/campaigns",
        json={"template": "invite_friends", "starts_at": start.isoformat(),
              "ends_at": (start + timedelta(days=30)).isoformat()},
        headers=auth(keys.owner),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    cid = r.json()["campaign_id"]
    async with sessions() as s, s.begin():
        await s.execute(
            text("INSERT INTO budgets (campaign_id, kind, total) VALUES (:c, 'prize', 10)"),
            {"c": cid},
        )
        recorded = await record_grants(s, cid, 1, decisions, "Invite")
    return recorded.rows


def user() -> str:
    return f"f{uuid.uuid4().hex[:10]}"


async def fulfil(
    api: httpx.AsyncClient, key: str, grant_id: int, status: str = "fulfilled", **body: str
) -> httpx.Response:
    return await api.post(
        f"/v1/grants/{grant_id}:fulfil",
        json={"status": status, "reference": "tx-1", **body},
        headers=auth(key),
    )


# -- through the API ------------------------------------------------------------------------


async def test_a_fulfiller_fulfils_a_grant_and_the_same_report_again_changes_nothing(
    api: httpx.AsyncClient, keys: Keys, ledger_sessions: async_sessionmaker[AsyncSession]
) -> None:
    (g,) = await grants(api, keys, ledger_sessions, [decision(user(), today())])
    assert (g["status"], g["fulfilment_status"]) == ("granted", "pending")
    first = await fulfil(api, keys.fulfiller, g["grant_id"], reference="cr-42")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["fulfilment"], body["fulfilment_status"]) == ("fulfilled", "fulfilled")
    assert body["fulfilment_reference"] == "cr-42" and body["fulfilment_at"] is not None
    again = await fulfil(api, keys.fulfiller, g["grant_id"], reference="cr-42")
    assert again.status_code == 200 and again.json() == body
    read = await api.get(f"/v1/grants/{g['grant_id']}", headers=auth(keys.viewer))
    assert read.json() == body


async def test_a_different_report_after_a_final_one_is_409_naming_the_current_status(
    api: httpx.AsyncClient, keys: Keys, ledger_sessions: async_sessionmaker[AsyncSession]
) -> None:
    done, failed = await grants(
        api, keys, ledger_sessions, [decision(user(), today()), decision(user(), today())]
    )
    assert (await fulfil(api, keys.fulfiller, done["grant_id"])).status_code == 200
    r = await fulfil(api, keys.fulfiller, done["grant_id"], "failed", reason="no account")
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "fulfilment_conflict" and "fulfilled" in r.json()["detail"]
    assert r.json()["fulfilment_status"] == "fulfilled"
    r = await fulfil(api, keys.fulfiller, done["grant_id"], reference="another-credit")
    assert r.status_code == 409 and r.json()["code"] == "fulfilment_conflict"

    r = await fulfil(api, keys.admin, failed["grant_id"], "failed", reason="no account")
    assert r.status_code == 200 and r.json()["fulfilment_reason"] == "no account"
    r = await fulfil(api, keys.fulfiller, failed["grant_id"])
    assert r.status_code == 409 and "failed" in r.json()["detail"]


async def test_a_revoked_or_budget_exhausted_grant_cannot_be_fulfilled(
    api: httpx.AsyncClient, keys: Keys, ledger_sessions: async_sessionmaker[AsyncSession]
) -> None:
    revoked, exhausted = await grants(
        api,
        keys,
        ledger_sessions,
        [decision(user(), today()), decision(user(), today(), (("prize", 11),))],
    )
    assert exhausted["status"] == "budget_exhausted" and exhausted["fulfilment_status"] is None
    r = await api.post(
        f"/v1/grants/{revoked['grant_id']}:revoke", json={"reason": "fraud"},
        headers=auth(keys.owner),
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["fulfilment"] is None
    for g, status in ((revoked, "revoked"), (exhausted, "budget_exhausted")):
        r = await fulfil(api, keys.fulfiller, g["grant_id"])
        assert r.status_code == 409 and r.json()["code"] == "not_fulfillable", r.text
        assert status in r.json()["detail"]


async def test_a_fulfilled_grant_cannot_be_revoked(
    api: httpx.AsyncClient, keys: Keys, ledger_sessions: async_sessionmaker[AsyncSession]
) -> None:
    (g,) = await grants(api, keys, ledger_sessions, [decision(user(), today())])
    assert (await fulfil(api, keys.fulfiller, g["grant_id"])).status_code == 200
    r = await api.post(
        f"/v1/grants/{g['grant_id']}:revoke", json={"reason": "fraud"}, headers=auth(keys.owner)
    )
    assert r.status_code == 409 and r.json()["code"] == "not_revocable"
    assert "fulfilled" in r.json()["detail"]


async def test_only_fulfillers_report_and_reports_are_validated(
    api: httpx.AsyncClient, keys: Keys, ledger_sessions: async_sessionmaker[AsyncSession]
) -> None:
    (g,) = await grants(api, keys, ledger_sessions, [decision(user(), today())])
    for key in (keys.viewer, keys.owner, keys.approver, keys.ingest):
        r = await fulfil(api, key, g["grant_id"])
        assert r.status_code == 403 and r.json()["code"] == "missing_role"
    assert (await api.post(f"/v1/grants/{g['grant_id']}:fulfil", json={})).status_code == 401
    r = await fulfil(api, keys.fulfiller, 2**61)
    assert r.status_code == 404 and r.json()["code"] == "grant_not_found"
    r = await fulfil(api, keys.fulfiller, g["grant_id"], "failed")
    assert r.status_code == 422 and "reason" in r.text
    r = await fulfil(api, keys.fulfiller, g["grant_id"], "pending")
    assert r.status_code == 422 and "status" in r.text
    r = await api.post(f"/v1/grants/{g['grant_id']}:fulfil", json={"status": "fulfilled"},
                       headers=auth(keys.fulfiller))  # fmt: skip
    assert r.status_code == 422 and "reference" in r.text
    still = await api.get(f"/v1/grants/{g['grant_id']}", headers=auth(keys.viewer))
    assert still.json()["fulfilment"] == "pending"


# -- through engage.fulfilment.v1 -----------------------------------------------------------


async def produce(bootstrap: str, records: list[bytes]) -> list[int]:
    """In order to partition 0 (so they share batches); the offsets they got."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(FULFILMENT_TOPIC, r, key=b"k", partition=0) for r in records]
        return [(await f).offset for f in futures]
    finally:
        await producer.stop()


def record(grant_id: int, status: str = "fulfilled", reference: str = "tx-1", **more: Any) -> bytes:
    return orjson.dumps(
        {"grant_id": grant_id, "status": status, "reference": reference,
         "at": datetime.now(UTC).isoformat(), **more}
    )  # fmt: skip


async def test_fulfilment_records_apply_once_and_the_bad_ones_go_to_the_dlq_with_a_reason(
    api: httpx.AsyncClient,
    keys: Keys,
    ledger_sessions: async_sessionmaker[AsyncSession],
    stack: Stack,
) -> None:
    assert stack.kafka_bootstrap and stack.database_url
    done, failed, conflicted = await grants(
        api, keys, ledger_sessions, [decision(user(), today()) for _ in range(3)]
    )
    offsets = await produce(
        stack.kafka_bootstrap,
        [
            record(done["grant_id"], reference="cr-1"),
            b'{"grant_id": 1, "status": "fulfilled"}',  # malformed: no reference, no time
            record(failed["grant_id"], "failed", reason="account closed"),
            record(done["grant_id"], reference="cr-1"),  # a repeat: changes nothing
            record(conflicted["grant_id"], reference="cr-3"),
            record(conflicted["grant_id"], "failed", reason="late"),  # contradicts the last
            record(2**61),  # no such grant
        ],
    )
    await wait_consumed(stack.database_url, stack.kafka_bootstrap, "rewards", FULFILMENT_TOPIC, 120)

    async def read(g: dict[str, Any]) -> dict[str, Any]:
        r = await api.get(f"/v1/grants/{g['grant_id']}", headers=auth(keys.viewer))
        body: dict[str, Any] = r.json()
        return body

    d, f, c = await read(done), await read(failed), await read(conflicted)
    assert (d["fulfilment"], d["fulfilment_reference"]) == ("fulfilled", "cr-1")
    assert (f["fulfilment"], f["fulfilment_reason"]) == ("failed", "account closed")
    assert (c["fulfilment"], c["fulfilment_reference"]) == ("fulfilled", "cr-3")

    letters = {
        d.source_offset: d.reason
        for d in await dead_letters(stack.kafka_bootstrap, (FULFILMENT_DLQ,))
        if d.source_topic == FULFILMENT_TOPIC and d.source_partition == 0
    }
    bad = {offsets[1], offsets[5], offsets[6]}
    assert {o: letters.get(o) for o in offsets if o in letters} == {o: letters[o] for o in bad}
    assert letters[offsets[1]].startswith("undecodable:") and "reference" in letters[offsets[1]]
    assert "fulfilment_conflict" in letters[offsets[5]]
    assert f"no grant {2**61}" in letters[offsets[6]]

    # Each change, once, on engage.grants.v1 for notify and anyone else listening.
    events: list[tuple[int, str]] = []
    ours = {done["grant_id"], failed["grant_id"], conflicted["grant_id"]}

    def collect(r: ConsumerRecord[bytes, bytes]) -> None:
        doc = orjson.loads(r.value) if r.value else {}
        if doc.get("grant_id") in ours and doc["event"] != "recorded":
            events.append((doc["grant_id"], doc["event"]))

    await wait_outbox_empty(stack.database_url, "rewards", "grants_outbox")
    await read_topic(stack.kafka_bootstrap, GRANTS_TOPIC, collect, timeout_s=120)
    assert sorted(events) == sorted(
        [(done["grant_id"], "fulfilled"), (failed["grant_id"], "fulfilment_failed"),
         (conflicted["grant_id"], "fulfilled")]
    )  # fmt: skip


# -- overdue --------------------------------------------------------------------------------


async def overdue_gauge(api: httpx.AsyncClient, campaign_id: str) -> float | None:
    text_ = (await api.get("/metrics")).text
    m = re.search(rf'^engage_grants_overdue\{{campaign="{campaign_id}"\}} (\S+)$', text_, re.M)
    return None if m is None else float(m[1])


async def test_overdue_grants_are_seen_filtered_and_counted(
    api: httpx.AsyncClient, keys: Keys, ledger_sessions: async_sessionmaker[AsyncSession]
) -> None:
    past, future = today() - timedelta(days=3), today() + timedelta(days=30)
    late, paid, waiting, refused = await grants(
        api,
        keys,
        ledger_sessions,
        [decision(user(), past), decision(user(), past), decision(user(), future),
         decision(user(), past)],
    )  # fmt: skip
    cid = late["campaign_id"]
    assert (await fulfil(api, keys.fulfiller, paid["grant_id"])).status_code == 200
    r = await fulfil(api, keys.fulfiller, refused["grant_id"], "failed", reason="closed")
    assert r.json()["fulfilment"] == "overdue" and r.json()["fulfilment_status"] == "failed"

    g = (await api.get(f"/v1/grants/{late['grant_id']}", headers=auth(keys.viewer))).json()
    assert (g["fulfilment"], g["fulfilment_status"]) == ("overdue", "pending")

    async def listed(fulfilment: str) -> set[int]:
        r = await api.get(
            "/v1/grants", params={"campaign_id": cid, "fulfilment": fulfilment},
            headers=auth(keys.viewer),
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert all(i["fulfilment"] == fulfilment for i in r.json()["items"])
        return {i["grant_id"] for i in r.json()["items"]}

    assert await listed("overdue") == {late["grant_id"], refused["grant_id"]}
    assert await listed("fulfilled") == {paid["grant_id"]}
    assert await listed("pending") == {waiting["grant_id"]}
    assert await listed("failed") == set()
    r = await api.get("/v1/grants", params={"fulfilment": "late"}, headers=auth(keys.viewer))
    assert r.status_code == 422

    # The gauge is refreshed with the budget gauges, after every settlement pass.
    deadline = datetime.now(UTC) + timedelta(seconds=120)
    while await overdue_gauge(api, cid) != 2.0:
        assert datetime.now(UTC) < deadline, await overdue_gauge(api, cid)
        await api.post("/v1/settlements:run", headers=auth(keys.admin))


# -- a user's timeline ----------------------------------------------------------------------


async def test_a_users_timeline_lists_their_grants_newest_first_with_fulfilment(
    api: httpx.AsyncClient, keys: Keys, ledger_sessions: async_sessionmaker[AsyncSession]
) -> None:
    u = user()
    past = today() - timedelta(days=1)
    older, newer = await grants(
        api, keys, ledger_sessions, [decision(u, past, rule="a"), decision(u, past, rule="b")]
    )
    (other,) = await grants(api, keys, ledger_sessions, [decision(u, today(), rule="c")])
    assert (await fulfil(api, keys.fulfiller, newer["grant_id"])).status_code == 200

    r = await api.get(f"/v1/users/{u}/timeline", headers=auth(keys.viewer))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["grant_id"] for i in items] == [other["grant_id"], newer["grant_id"],
                                              older["grant_id"]]  # fmt: skip
    assert [i["fulfilment"] for i in items] == ["pending", "fulfilled", "overdue"]
    assert all(i["campaign_name"] and i["explanation"] == {"why": 1} for i in items)
    assert r.json()["next_cursor"] is None

    first = await api.get(f"/v1/users/{u}/timeline", params={"limit": 2}, headers=auth(keys.viewer))
    cursor = first.json()["next_cursor"]
    rest = await api.get(
        f"/v1/users/{u}/timeline", params={"limit": 2, "cursor": cursor}, headers=auth(keys.viewer)
    )
    assert [i["grant_id"] for i in first.json()["items"] + rest.json()["items"]] == [
        i["grant_id"] for i in items
    ]


async def test_a_timeline_is_404_when_rewards_knows_nothing_of_the_user(
    api: httpx.AsyncClient, keys: Keys, ledger_sessions: async_sessionmaker[AsyncSession]
) -> None:
    r = await api.get(f"/v1/users/{user()}/timeline", headers=auth(keys.viewer))
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "user_not_found"

    known = user()  # metric values only: known, and nothing granted yet
    async with ledger_sessions() as s, s.begin():
        await s.execute(
            text("INSERT INTO user_day (user_id, day, metrics) VALUES (:u, :d, '{}')"),
            {"u": known, "d": today()},
        )
    r = await api.get(f"/v1/users/{known}/timeline", headers=auth(keys.viewer))
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
