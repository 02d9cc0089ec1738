"""The rule language the seeds need, end to end (SPEC §9, §10): "weekend chat boost" written,
backtested and compared in three requests; a backtest up to Saturday never counts Sunday; the
live run grants what the backtest of the same version says, on the same days with the same
values; first come under a cap on winners; a range outside the window is a 422; saved drafts
are versions, never overwritten.

A rewards service, broker and PostgreSQL of their own; metric records are published the way
scoring's changelog publishes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engage.progress import wait_consumed, wait_keys_known
from engage.stack import ServiceProcess, Stack
from services.rewards.domain.templates import weekend_chat_boost
from shared.metric_fields import DAY_POINTS, USER_DAY_COUNTERS
from shared.topics import METRICS_TOPIC
from tests.integration.conftest import Keys, issue_keys, own_stack
from tests.reference.scoring_model import TZ

pytestmark = pytest.mark.asyncio
SCHEMA = "rewards"

# A weekend three weeks back, its week the campaign's window.
_TODAY = datetime.now(TZ).date()
MONDAY = _TODAY - timedelta(days=_TODAY.isoweekday() - 1) - timedelta(weeks=3)
FRIDAY, SATURDAY, SUNDAY = (MONDAY + timedelta(days=n) for n in (4, 5, 6))
NEXT_MONDAY = MONDAY + timedelta(days=7)
WEEK = f"{MONDAY.isocalendar()[0]}-W{MONDAY.isocalendar()[1]:02d}"

# Mobile messages per user and day: a fires on Sunday (20 + 15), b on Saturday (31), c never
# (Friday does not count), d never (29).
MESSAGES = {
    ("a", SATURDAY): 20, ("a", SUNDAY): 15, ("b", SATURDAY): 31,
    ("c", FRIDAY): 100, ("c", SATURDAY): 10, ("d", SUNDAY): 29,
}  # fmt: skip


@pytest.fixture(scope="module")
def language_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from own_stack(tmp_path_factory, "language")


@dataclass
class Env:
    stack: Stack
    url: str
    keys: Keys

    def client(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )


@pytest.fixture(scope="module")
async def env(language_stack: Stack) -> AsyncIterator[Env]:
    keys = await issue_keys(language_stack)
    service: ServiceProcess = language_stack.start_service(
        "rewards", env={"REWARDS_SETTLE_INTERVAL_S": "0"}
    )
    try:
        await wait_keys_known(
            service.url, "/v1/templates", [keys.owner, keys.approver, keys.viewer, keys.admin]
        )
        yield Env(language_stack, service.url, keys)
    finally:
        service.stop()


def midnight(d: date) -> str:
    return datetime(d.year, d.month, d.day, tzinfo=TZ).isoformat()


def weekend_definition(**rule: Any) -> dict[str, Any]:
    doc = weekend_chat_boost(
        datetime.fromisoformat(midnight(MONDAY)), datetime.fromisoformat(midnight(NEXT_MONDAY))
    )
    doc = orjson.loads(orjson.dumps(doc))
    doc["rules"][0] |= rule
    return dict(doc)


def user_day(user: str, day: date, messages_mobile: int) -> bytes:
    counters = dict.fromkeys((*USER_DAY_COUNTERS, *DAY_POINTS), 0) | {
        "messages": messages_mobile, "messages_mobile": messages_mobile,
    }  # fmt: skip
    return orjson.dumps(
        {"entity": "user", "grain": "day", "id": user, "period": day.isoformat(), "flags": [],
         **counters}
    )  # fmt: skip


async def publish(env: Env, days: list[date]) -> None:
    """The records of these days, in day order, each day applied before the next arrives."""
    assert env.stack.kafka_bootstrap and env.stack.database_url
    producer = AIOKafkaProducer(bootstrap_servers=env.stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for day in days:
            for (user, d), n in sorted(MESSAGES.items()):
                if d == day:
                    await producer.send_and_wait(
                        METRICS_TOPIC, user_day(user, d, n), key=user.encode()
                    )
            await wait_consumed(
                env.stack.database_url, env.stack.kafka_bootstrap, SCHEMA, METRICS_TOPIC, 120
            )
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def published(env: Env) -> dict[str, str]:
    """Two live versions of the weekend rule (uncapped, and capped at one winner a week),
    activated before the weekend's records arrive day by day."""
    ids: dict[str, str] = {}
    async with env.client(env.keys.owner) as owner, env.client(env.keys.approver) as approver:
        for name, rule in (
            ("open", {"max_grants": None}),
            ("capped", {"max_grants": {"per_period": 1}}),
        ):
            r = await owner.post("/v1/campaigns", json={"definition": weekend_definition(**rule)})
            assert r.status_code == 201, r.text
            cid = r.json()["campaign_id"]
            assert (await owner.post(f"/v1/campaigns/{cid}/versions/1:submit")).status_code == 200
            assert (await approver.post(f"/v1/campaigns/{cid}/versions/1:approve")).is_success
            assert (await owner.post(f"/v1/campaigns/{cid}:activate")).status_code == 200
            ids[name] = cid
    await publish(env, [FRIDAY, SATURDAY, SUNDAY])
    return ids


async def simulate(env: Env, cid: str, version: int, first: date, last: date,
                   **extra: Any) -> httpx.Response:  # fmt: skip
    async with env.client(env.keys.owner) as owner:
        return await owner.post(
            f"/v1/campaigns/{cid}/versions/{version}:simulate",
            json={"from": first.isoformat(), "to": last.isoformat(), "sample": 100, **extra},
        )


def fired(grants: list[dict[str, Any]]) -> list[tuple[str, str, str, float]]:
    return sorted(
        (g["user_id"], g["period"], g["explanation"]["fired_on"],
         g["explanation"]["conditions"][0]["actual"])
        for g in grants
    )  # fmt: skip


async def live_grants(env: Env, cid: str) -> list[dict[str, Any]]:
    async with env.client(env.keys.viewer) as viewer:
        r = await viewer.get("/v1/grants", params={"campaign_id": cid, "limit": 500})
        items: list[dict[str, Any]] = r.json()["items"]
        return items


async def test_a_backtest_up_to_saturday_never_counts_sunday(
    env: Env, published: dict[str, str]
) -> None:
    r = await simulate(env, published["open"], 1, SATURDAY, SATURDAY)
    assert r.status_code == 200, r.text
    assert fired(r.json()["sample"]) == [("b", WEEK, SATURDAY.isoformat(), 31.0)]


async def test_live_grants_equal_the_backtest_on_the_same_days_and_values(
    env: Env, published: dict[str, str]
) -> None:
    r = await simulate(env, published["open"], 1, MONDAY, SUNDAY)
    assert r.status_code == 200, r.text
    want = [("a", WEEK, SUNDAY.isoformat(), 35.0), ("b", WEEK, SATURDAY.isoformat(), 31.0)]
    assert fired(r.json()["sample"]) == want
    assert fired(await live_grants(env, published["open"])) == want


async def test_a_cap_on_winners_goes_first_come_live_and_in_the_backtest(
    env: Env, published: dict[str, str]
) -> None:
    (live,) = await live_grants(env, published["capped"])
    assert (live["user_id"], live["explanation"]["max_grants"]["place_in_period"]) == ("b", 1)
    r = await simulate(env, published["capped"], 1, MONDAY, SUNDAY)
    assert fired(r.json()["sample"]) == fired([live])


async def test_write_backtest_and_compare_the_weekend_rule_in_three_requests(
    env: Env, published: dict[str, str]
) -> None:
    async with env.client(env.keys.owner) as owner:
        r = await owner.post("/v1/campaigns", json={"definition": weekend_definition()})  # 1
        cid = r.json()["campaign_id"]
        stricter = weekend_definition(condition={
            "metric": "user.period.messages_mobile", "op": ">=", "value": 32})  # fmt: skip
        r = await owner.put(f"/v1/campaigns/{cid}/draft", json=stricter)  # 2
        assert [v["version"] for v in r.json()["versions"]] == [1, 2]
        assert r.json()["versions"][0]["definition"]["rules"][0]["condition"]["value"] == 30
    r = await simulate(env, cid, 2, MONDAY, SUNDAY, against=1)  # 3
    body = r.json()
    assert r.status_code == 200, body
    assert (body["grants"], body["against"]["version"], body["against"]["grants"]) == (1, 1, 2)
    assert body["diff"]["against_version"] == 1
    assert (body["diff"]["added"], body["diff"]["removed"]) == (0, 1)
    assert body["diff"]["removed_sample"][0]["user_id"] == "b"


async def test_a_range_outside_the_window_is_a_422_that_says_so(
    env: Env, published: dict[str, str]
) -> None:
    r = await simulate(env, published["open"], 1, NEXT_MONDAY, NEXT_MONDAY + timedelta(days=6))
    assert r.status_code == 422
    assert r.json()["code"] == "range_outside_window"
    assert "does not overlap" in r.json()["detail"]


async def test_a_fork_copies_any_version_into_a_new_draft(
    env: Env, published: dict[str, str]
) -> None:
    cid = published["open"]
    async with env.client(env.keys.owner) as owner:
        r = await owner.post(f"/v1/campaigns/{cid}/versions:fork", json={"from_version": 1})
        assert r.status_code == 201, r.text
        newest = r.json()["versions"][-1]
        assert (newest["version"], newest["status"]) == (2, "draft")
        assert newest["definition"] == r.json()["versions"][0]["definition"]


async def test_bad_rules_are_refused_with_the_field_path_and_the_nearest_metric(env: Env) -> None:
    doc = weekend_definition(
        condition={"metric": "user.period.messages_mobil", "op": ">=", "value": 30}
    )
    async with env.client(env.keys.owner) as owner:
        r = await owner.post("/v1/campaigns", json={"definition": doc})
        assert r.status_code == 422
        assert "did you mean user.period.messages_mobile?" in r.text
        assert "rules" in r.text and "condition" in r.text
        bad_id = weekend_definition(id="Weekend Boost")
        r = await owner.post("/v1/campaigns", json={"definition": bad_id})
        assert r.status_code == 422
        assert "lowercase letters, digits" in r.text
