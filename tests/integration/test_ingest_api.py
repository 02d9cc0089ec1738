"""Ingest end to end against a real broker and PostgreSQL (SPEC §3, §7, §14)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from engage.stack import Stack
from engage.topic_audit import tally_topic
from shared.auth import key_id_of
from shared.topics import EVENTS_TOPIC
from tests.builders import make_event
from tests.integration.conftest import Keys

pytestmark = pytest.mark.asyncio


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def on_topic(stack: Stack, event_ids: set[str]) -> dict[str, dict[str, Any]]:
    assert stack.kafka_bootstrap
    tally = await tally_topic(stack.kafka_bootstrap, EVENTS_TOPIC, keep_payloads=True)
    return {i: tally.payloads[i] for i in event_ids if i in tally.payloads}


async def test_posted_events_arrive_exactly_as_sent_plus_received_at_and_source(
    client: httpx.AsyncClient, keys: Keys, stack: Stack
) -> None:
    events = [make_event(t) for t in ("message", "login", "points", "group_created")]
    events[0]["properties"] = {"app_version": "7.1", "nested": {"a": [1, 2]}}
    before = datetime.now(UTC)
    r = await client.post("/v1/events", json={"events": events}, headers=auth(keys.platform))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 4, "rejected": []}

    found = await on_topic(stack, {e["event_id"] for e in events})
    for sent in events:
        got = dict(found[sent["event_id"]])
        received_at = datetime.fromisoformat(got.pop("received_at"))
        assert got.pop("source") == key_id_of(keys.platform)
        assert got.pop("authority") == "platform"
        assert got == sent
        assert before <= received_at <= datetime.now(UTC)


async def test_each_event_carries_who_vouched_for_it(
    client: httpx.AsyncClient, keys: Keys, stack: Stack
) -> None:
    """A user token's events are the user's (`user:<sub>`), a relay's are `relay`, an import
    is `import` (SPEC §14) — never what the client claims."""
    own = make_event("checkin", user_id="vouched.user")
    relayed, imported = make_event("login"), make_event("message")
    token = stack.user_token("vouched.user")
    for key, event, path in (
        (token, own, "/v1/events"),
        (keys.ingest, relayed, "/v1/events"),
        (keys.importer, imported, "/v1/events:import"),
    ):
        r = await client.post(path, json=event, headers=auth(key))
        assert r.status_code == 202, r.text
    found = await on_topic(stack, {e["event_id"] for e in (own, relayed, imported)})
    assert (found[own["event_id"]]["source"], found[own["event_id"]]["authority"]) == (
        "user:vouched.user",
        "user",
    )
    assert found[relayed["event_id"]]["authority"] == "relay"
    assert found[imported["event_id"]]["authority"] == "import"


async def test_a_client_cannot_claim_an_authority(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post(
        "/v1/events", json=make_event(authority="platform"), headers=auth(keys.platform)
    )
    assert r.status_code == 422 and r.json()["rejected"][0]["code"] == "unknown_field"


async def test_events_are_keyed_by_user_id(
    client: httpx.AsyncClient, keys: Keys, stack: Stack
) -> None:
    r = await client.post(
        "/v1/events", json=make_event(user_id="keyed.user"), headers=auth(keys.ingest)
    )
    assert r.status_code == 202
    assert stack.kafka_bootstrap
    tally = await tally_topic(stack.kafka_bootstrap, EVENTS_TOPIC)
    assert tally.keyed_by_user


async def test_single_event_is_accepted(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post("/v1/events", json=make_event("checkin"), headers=auth(keys.ingest))
    assert (r.status_code, r.json()) == (202, {"accepted": 1, "rejected": []})


async def test_mixed_batch_accepts_the_valid_and_reports_the_rest(
    client: httpx.AsyncClient, keys: Keys, stack: Stack
) -> None:
    good = make_event("message")
    stale = make_event("message", at=datetime.now(UTC) - timedelta(days=36))
    future = make_event("message", at=datetime.now(UTC) + timedelta(minutes=10))
    unknown = make_event("message", colour="red")
    r = await client.post(
        "/v1/events", json={"events": [stale, good, future, unknown]}, headers=auth(keys.ingest)
    )
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["index"], x["event_id"], x["code"]) for x in body["rejected"]] == [
        (0, stale["event_id"], "out_of_window"),
        (2, future["event_id"], "out_of_window"),
        (3, unknown["event_id"], "unknown_field"),
    ]
    found = await on_topic(stack, {e["event_id"] for e in (good, stale, future, unknown)})
    assert set(found) == {good["event_id"]}


async def test_batch_with_no_valid_event_is_422_with_the_same_body(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    r = await client.post(
        "/v1/events", json={"events": [make_event("points", delta=0)]}, headers=auth(keys.ingest)
    )
    assert r.status_code == 422
    assert r.json()["accepted"] == 0 and r.json()["rejected"][0]["message"].startswith("delta:")


async def test_import_accepts_old_events_for_importers_only(
    client: httpx.AsyncClient, keys: Keys, stack: Stack
) -> None:
    old = make_event("message", at=datetime.now(UTC) - timedelta(days=90))
    live = await client.post("/v1/events", json=old, headers=auth(keys.ingest))
    assert live.status_code == 422 and live.json()["rejected"][0]["code"] == "out_of_window"
    assert (
        await client.post("/v1/events:import", json=old, headers=auth(keys.ingest))
    ).status_code == 403
    r = await client.post("/v1/events:import", json=old, headers=auth(keys.importer))
    assert r.status_code == 202
    assert old["event_id"] in await on_topic(stack, {old["event_id"]})


async def test_import_refuses_a_time_no_service_can_store_per_item(
    client: httpx.AsyncClient, keys: Keys, stack: Stack
) -> None:
    """The import that stopped scoring for good (issue 13) is refused; its batch-mate is not."""
    bad = make_event("message", occurred_at="0001-01-01T00:00:00+14:00", user_id="rtu1")
    good = make_event("message", at=datetime.now(UTC) - timedelta(days=90), user_id="rtu1")
    r = await client.post(
        "/v1/events:import", json={"events": [bad, good]}, headers=auth(keys.importer)
    )
    assert r.status_code == 202
    assert r.json()["accepted"] == 1
    [rejection] = r.json()["rejected"]
    assert (rejection["index"], rejection["code"]) == (0, "out_of_range")
    assert "2000-01-02 and 2099-12-30" in rejection["message"]
    assert set(await on_topic(stack, {bad["event_id"], good["event_id"]})) == {good["event_id"]}


async def test_import_still_refuses_the_future(client: httpx.AsyncClient, keys: Keys) -> None:
    ahead = make_event(at=datetime.now(UTC) + timedelta(hours=1))
    r = await client.post("/v1/events:import", json=ahead, headers=auth(keys.importer))
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        (None, "/v1/events", 401),
        ("eng_00000000_not-a-real-key", "/v1/events", 401),
        ("garbage", "/v1/events", 401),
        ("viewer", "/v1/events", 403),
        ("importer", "/v1/events", 403),
        ("ingest", "/v1/events", 202),
        ("platform", "/v1/events", 202),
        ("narrowed", "/v1/events", 202),
        ("admin", "/v1/events", 202),
        ("platform", "/v1/events:import", 403),
        (None, "/v1/events:import", 401),
        ("viewer", "/v1/events:import", 403),
        ("importer", "/v1/events:import", 202),
    ],
)
async def test_auth_matrix(
    client: httpx.AsyncClient, keys: Keys, who: str | None, path: str, status: int
) -> None:
    key = getattr(keys, who) if who in Keys.__dataclass_fields__ else who
    headers = auth(key) if key else {}
    r = await client.post(path, json=make_event(), headers=headers)
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == status
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_non_json_is_415(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post(
        "/v1/events",
        content=b"event_id=1",
        headers={**auth(keys.ingest), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415 and r.headers["content-type"] == "application/problem+json"


async def test_malformed_json_is_400_problem(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post(
        "/v1/events",
        content=b'{"events": [',
        headers={**auth(keys.ingest), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"


async def test_deeply_nested_json_is_a_clear_error_not_a_crash(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    deep = b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    r = await client.post(
        "/v1/events",
        content=deep,
        headers={**auth(keys.ingest), "Content-Type": "application/json"},
    )
    assert r.status_code in (400, 422) and r.headers["content-type"].startswith("application/")
    assert r.json()["status"] == r.status_code


async def test_body_over_1_mib_is_413(client: httpx.AsyncClient, keys: Keys) -> None:
    big = orjson.dumps({"events": [make_event(properties={"x": "y" * 3000}) for _ in range(400)]})
    assert len(big) > 1024 * 1024
    r = await client.post(
        "/v1/events", content=big, headers={**auth(keys.ingest), "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


async def test_more_than_500_events_is_413(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post(
        "/v1/events", json={"events": [make_event() for _ in range(501)]}, headers=auth(keys.ingest)
    )
    assert r.status_code == 413 and r.json()["code"] == "too_many_events"


async def test_gzip_body_is_accepted(client: httpx.AsyncClient, keys: Keys, stack: Stack) -> None:
    events = [make_event() for _ in range(50)]
    body = gzip.compress(orjson.dumps({"events": events}))
    r = await client.post(
        "/v1/events",
        content=body,
        headers={
            **auth(keys.ingest),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert (r.status_code, r.json()["accepted"]) == (202, 50)
    assert len(await on_topic(stack, {e["event_id"] for e in events})) == 50


async def test_gzip_bomb_is_refused_after_1_mib_of_output(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    payload = b'{"events": [' + b" " * (64 * 1024 * 1024) + b"]}"
    bomb = gzip.compress(payload, compresslevel=9)
    assert len(bomb) < 200_000
    r = await client.post(
        "/v1/events",
        content=bomb,
        headers={
            **auth(keys.ingest),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert r.status_code == 413


async def test_corrupt_gzip_is_400(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post(
        "/v1/events",
        content=b"\x1f\x8bnot gzip at all",
        headers={
            **auth(keys.ingest),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_gzip"


async def test_over_the_key_rate_is_429_with_retry_after(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    # The "slow" key allows 1 event/s with a burst of 500 events.
    batch = {"events": [make_event() for _ in range(500)]}
    first = await client.post("/v1/events", json=batch, headers=auth(keys.slow))
    assert first.status_code == 202
    second = await client.post(
        "/v1/events", json={"events": [make_event() for _ in range(10)]}, headers=auth(keys.slow)
    )
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert second.json()["code"] == "rate_limited"


async def test_health_readiness_metrics_and_openapi(client: httpx.AsyncClient, keys: Keys) -> None:
    await client.post("/v1/events", json=make_event("login"), headers=auth(keys.ingest))
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    metrics = (await client.get("/metrics")).text
    assert 'engage_ingest_events_total{result="accepted",type="login"}' in metrics
    assert (
        'engage_http_requests_total{method="POST",route="/v1/events",service="ingest",status="202"}'
        in metrics
    )
    spec = (await client.get("/openapi.json")).json()
    assert "Event" in spec["components"]["schemas"]
    assert set(spec["paths"]) >= {"/v1/events", "/v1/events:import", "/healthz", "/readyz"}
    assert (await client.get("/docs")).status_code == 200


async def test_unknown_route_is_a_problem_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
