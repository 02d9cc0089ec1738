"""Four eyes over every editor of a campaign version (SPEC §15, issue 18 item 2), through the
HTTP API of a real rewards service: re-saving someone else's edit does not make it approvable
by them, and a save while a version awaits approval withdraws that version."""

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
        rewards.url, "/v1/templates", [keys.owner, keys.approver, keys.admin, keys.viewer]
    )
    async with httpx.AsyncClient(base_url=rewards.url, timeout=30) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_id(secret: str) -> str:
    """The id a key is recorded by (`eng_<id>_<secret>`)."""
    return secret.split("_")[1]


async def create(api: httpx.AsyncClient, key: str) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(days=30)
    window = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(days=30)).isoformat()}
    r = await api.post(
        "/v1/campaigns", json={"template": "invite_friends", **window}, headers=auth(key)
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def with_amount(definition: dict[str, Any], amount: int) -> dict[str, Any]:
    rule = definition["rules"][0]
    paid = [{**rule["rewards"][0], "amount": amount}, *rule["rewards"][1:]]
    return {**definition, "rules": [{**rule, "rewards": paid}, *definition["rules"][1:]]}


async def call(
    api: httpx.AsyncClient, method: str, path: str, key: str, body: Any = None
) -> httpx.Response:
    return await api.request(method, path, json=body, headers=auth(key))


async def test_an_admin_who_raised_the_amount_cannot_approve_it_after_the_owner_re_saves(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    """The hostile test's finding: the owner submits, an admin changes the amount to
    1,000,000, the owner re-saves the same content and submits; the admin's approval is
    refused, a third principal's goes through."""
    owner, admin = key_id(keys.owner), key_id(keys.admin)
    c = await create(api, keys.owner)
    cid = c["campaign_id"]
    base = f"/v1/campaigns/{cid}"
    r = await call(api, "POST", f"{base}/versions/1:submit", keys.owner)
    assert r.status_code == 200 and r.json()["versions"][0]["status"] == "submitted"

    million = with_amount(c["versions"][0]["definition"], 1_000_000)
    r = await call(api, "PUT", f"{base}/draft", keys.admin, million)
    assert r.status_code == 200, r.text
    v1, v2 = r.json()["versions"]
    assert v1["status"] == "draft"  # the submitted version went back to draft
    assert r.json()["state"] == "draft"
    assert (v2["author"], v2["authors"]) == (admin, [owner, admin])
    r = await call(api, "POST", f"{base}/versions/1:approve", keys.approver)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"

    r = await call(api, "PUT", f"{base}/draft", keys.owner, v2["definition"])
    assert r.status_code == 200, r.text
    v3 = r.json()["versions"][-1]
    assert v3["version"] == 3 and v3["definition"] == v2["definition"]
    assert (v3["author"], v3["authors"]) == (owner, [owner, admin])
    r = await call(api, "POST", f"{base}/versions/3:submit", keys.owner)
    assert r.status_code == 200, r.text

    refused = await call(api, "POST", f"{base}/versions/3:approve", keys.admin)
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert problem["code"] == "self_approval"
    assert "wrote or submitted none" in problem["detail"]
    assert owner not in refused.text and admin not in refused.text  # names the rule, no one

    r = await call(api, "POST", f"{base}/versions/3:approve", keys.approver)
    assert r.status_code == 200, r.text
    v3 = r.json()["versions"][-1]
    assert (v3["status"], v3["approved_by"]) == ("approved", key_id(keys.approver))

    r = await call(api, "GET", f"{base}/audit", keys.viewer)
    entries = r.json()["items"]
    assert [e["action"] for e in entries] == [
        "campaign.create", "version.submit", "campaign.edit", "version.withdraw",
        "campaign.edit", "version.submit", "version.approve",
    ]  # fmt: skip
    withdraw = entries[3]
    assert withdraw["actor"] == admin
    assert (withdraw["before"]["status"], withdraw["after"]["status"]) == ("submitted", "draft")
    assert withdraw["after"]["version"] == 1


async def test_a_changed_copy_of_an_open_edit_is_still_its_writers(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    """The admin's draft is no longer the newest (the owner forked version 1), and the owner
    saves the admin's definition with one character changed: every open edit's authors are
    inherited, so the admin still may not approve it (the second reader's bypass)."""
    owner, admin = key_id(keys.owner), key_id(keys.admin)
    c = await create(api, keys.owner)
    base = f"/v1/campaigns/{c['campaign_id']}"
    million = with_amount(c["versions"][0]["definition"], 1_000_000)
    assert (await call(api, "PUT", f"{base}/draft", keys.admin, million)).status_code == 200
    r = await call(api, "POST", f"{base}/versions:fork", keys.owner, {"from_version": 1})
    assert r.status_code == 201 and r.json()["versions"][-1]["authors"] == [owner, admin]
    pasted = {**million, "name": million["name"] + "."}
    r = await call(api, "PUT", f"{base}/draft", keys.owner, pasted)
    assert r.status_code == 200 and r.json()["versions"][-1]["authors"] == [owner, admin]
    assert (await call(api, "POST", f"{base}/versions/4:submit", keys.owner)).status_code == 200

    refused = await call(api, "POST", f"{base}/versions/4:approve", keys.admin)
    assert refused.status_code == 403 and refused.json()["code"] == "self_approval"
    r = await call(api, "POST", f"{base}/versions/4:approve", keys.approver)
    assert r.status_code == 200, r.text


async def test_a_fork_carries_its_sources_authors(api: httpx.AsyncClient, keys: Keys) -> None:
    owner, admin = key_id(keys.owner), key_id(keys.admin)
    c = await create(api, keys.owner)
    base = f"/v1/campaigns/{c['campaign_id']}"
    million = with_amount(c["versions"][0]["definition"], 1_000_000)
    assert (await call(api, "PUT", f"{base}/draft", keys.admin, million)).status_code == 200
    r = await call(api, "POST", f"{base}/versions:fork", keys.owner, {"from_version": 2})
    assert r.status_code == 201 and r.json()["versions"][-1]["authors"] == [owner, admin]
    assert r.json()["versions"][0]["authors"] == [owner]
