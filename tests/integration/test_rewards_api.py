"""The campaign admin API against a real rewards service (real broker, real PostgreSQL):
lifecycle, approvals by a different principal, roles, validation and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from engage.progress import wait_keys_known
from engage.stack import ServiceProcess
from tests.integration.conftest import Keys

pytestmark = pytest.mark.asyncio
PROBLEM = "application/problem+json"


@pytest.fixture
async def api(rewards: ServiceProcess, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    await wait_keys_known(
        rewards.url,
        "/v1/templates",
        [keys.owner, keys.approver, keys.owner_approver, keys.viewer, keys.admin],
    )
    async with httpx.AsyncClient(base_url=rewards.url, timeout=30) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def window() -> dict[str, str]:
    start = datetime.now(UTC) + timedelta(days=30)
    return {"starts_at": start.isoformat(), "ends_at": (start + timedelta(days=30)).isoformat()}


async def create(
    api: httpx.AsyncClient, key: str, template: str = "invite_friends"
) -> dict[str, Any]:
    r = await api.post("/v1/campaigns", json={"template": template, **window()}, headers=auth(key))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_template_creates_a_draft_version_one(api: httpx.AsyncClient, keys: Keys) -> None:
    c = await create(api, keys.owner, "tribe_chief")
    assert c["state"] == "draft" and c["live_version"] is None
    (v,) = c["versions"]
    assert v["version"] == 1 and v["status"] == "draft"
    assert v["definition"]["rules"][0]["kind"] == "scaled"
    assert v["definition"]["enrollment_required"] is True


async def test_author_cannot_approve_their_own_version(api: httpx.AsyncClient, keys: Keys) -> None:
    c = await create(api, keys.owner_approver)
    cid = c["campaign_id"]
    r = await api.post(f"/v1/campaigns/{cid}/versions/1:submit", headers=auth(keys.owner_approver))
    assert r.status_code == 200 and r.json()["state"] == "submitted"
    r = await api.post(f"/v1/campaigns/{cid}/versions/1:approve", headers=auth(keys.owner_approver))
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "self_approval"
    r = await api.post(f"/v1/campaigns/{cid}/versions/1:approve", headers=auth(keys.approver))
    assert r.status_code == 200 and r.json()["versions"][0]["approved_by"] != ""


async def test_viewer_reads_but_cannot_write(api: httpx.AsyncClient, keys: Keys) -> None:
    c = await create(api, keys.owner)
    cid = c["campaign_id"]
    assert (await api.get(f"/v1/campaigns/{cid}", headers=auth(keys.viewer))).status_code == 200
    for method, path in (
        ("POST", "/v1/campaigns"),
        ("PUT", f"/v1/campaigns/{cid}/draft"),
        ("POST", f"/v1/campaigns/{cid}/versions/1:submit"),
        ("POST", f"/v1/campaigns/{cid}:activate"),
        ("POST", f"/v1/campaigns/{cid}/enrollments"),
        ("POST", "/v1/settlements:run"),
    ):
        r = await api.request(method, path, json={}, headers=auth(keys.viewer))
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["code"] == "missing_role"
    r = await api.get(f"/v1/campaigns/{cid}")
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
    r = await api.post(f"/v1/campaigns/{cid}/versions/1:approve", headers=auth(keys.owner))
    assert r.status_code == 403  # an owner is not an approver


async def test_lifecycle_versions_and_every_change_audited(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    c = await create(api, keys.owner)
    cid = c["campaign_id"]
    own, approve = auth(keys.owner), auth(keys.approver)

    async def step(path: str, headers: dict[str, str], want: str) -> dict[str, Any]:
        r = await api.post(f"/v1/campaigns/{cid}{path}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == want, r.json()
        body: dict[str, Any] = r.json()
        return body

    r = await api.post(f"/v1/campaigns/{cid}:activate", headers=own)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    await step("/versions/1:submit", own, "submitted")
    await step("/versions/1:approve", approve, "approved")
    live = await step(":activate", own, "active")
    assert live["live_version"] == 1

    # Every save is a new numbered version, never an overwrite (SPEC §10 Versions).
    edited = dict(c["versions"][0]["definition"], name="Invite friends, v2")
    r = await api.put(f"/v1/campaigns/{cid}/draft", json=edited, headers=own)
    assert r.status_code == 200
    r = await api.put(f"/v1/campaigns/{cid}/draft", json=edited | {"name": "v3"}, headers=own)
    body = r.json()
    assert [v["status"] for v in body["versions"]] == ["active", "draft", "draft"]
    assert body["versions"][1]["definition"]["name"] == "Invite friends, v2"
    assert body["state"] == "active" and body["live_version"] == 1
    r = await api.post(f"/v1/campaigns/{cid}/versions:fork", json={"from_version": 1}, headers=own)
    assert r.status_code == 201 and r.json()["versions"][-1]["version"] == 4
    assert r.json()["versions"][-1]["definition"] == body["versions"][0]["definition"]
    await step("/versions/2:submit", own, "active")
    await step("/versions/2:approve", approve, "active")
    v2 = await step(":activate", own, "active")
    assert v2["live_version"] == 2
    assert [v["status"] for v in v2["versions"]] == ["superseded", "active", "draft", "draft"]
    await step(":pause", own, "paused")
    await step(":resume", own, "active")
    await step(":end", own, "ended")
    r = await api.put(f"/v1/campaigns/{cid}/draft", json=edited, headers=own)
    assert r.status_code == 409 and r.json()["code"] == "campaign_ended"

    r = await api.get(f"/v1/campaigns/{cid}/audit", headers=auth(keys.viewer))
    entries = r.json()["items"]
    assert [e["action"] for e in entries] == [
        "campaign.create", "version.submit", "version.approve", "campaign.activate",
        "campaign.edit", "campaign.edit", "version.fork", "version.submit", "version.approve",
        "campaign.activate",
        "campaign.pause", "campaign.resume", "campaign.end",
    ]  # fmt: skip
    assert all(e["after"] is not None and e["actor"] for e in entries)
    assert entries[4]["before"]["versions"][-1]["definition"]["name"] == "Invite friends"
    assert entries[4]["after"]["versions"][-1]["definition"]["name"] == "Invite friends, v2"
    assert {e["actor"] for e in entries if e["action"] == "version.approve"} != {
        e["actor"] for e in entries if e["action"] == "version.submit"
    }


async def test_invalid_rule_is_refused_naming_the_field(api: httpx.AsyncClient, keys: Keys) -> None:
    definition = {
        "name": "bad",
        **window(),
        "rules": [
            {
                "id": "t",
                "kind": "threshold",
                "condition": {"all": [{"metric": "user.day.checkins", "op": "=>", "value": 1}]},
                "rewards": [{"kind": "points", "amount": 1}],
            }
        ],
    }
    r = await api.post("/v1/campaigns", json={"definition": definition}, headers=auth(keys.owner))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    (error,) = r.json()["errors"]
    assert error["field"] == "definition.rules.0.threshold.condition"
    assert "all[0].op: '=>' is not one of" in error["message"]


async def test_bad_inputs_get_problem_json_not_500(api: httpx.AsyncClient, keys: Keys) -> None:
    own = auth(keys.owner)
    cases = [
        ("POST", "/v1/campaigns", b"{not json", 422),
        ("POST", "/v1/campaigns", b'{"template": "nope", "starts_at": "x"}', 422),
        ("GET", "/v1/campaigns/not-an-id", None, 422),
        ("GET", "/v1/campaigns/cmp_000000000000", None, 404),
        ("GET", "/v1/campaigns?cursor=garbage!", None, 400),
        ("GET", "/v1/campaigns?limt=5", None, 422),
        ("GET", "/v1/grants/0", None, 422),
        ("GET", "/v1/grants/999999", None, 404),
    ]
    for method, path, body, status in cases:
        r = await api.request(
            method, path, content=body, headers={**own, "Content-Type": "application/json"}
        )
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == PROBLEM


async def test_lists_page_with_an_opaque_cursor(api: httpx.AsyncClient, keys: Keys) -> None:
    for _ in range(3):
        await create(api, keys.owner)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/v1/campaigns", params=params, headers=auth(keys.viewer))).json()
        seen += [c["campaign_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 3 and seen == sorted(seen)
