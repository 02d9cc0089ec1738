"""Rewards' owning teams, against real PostgreSQL and Kafka (SPEC §15, issue 18): a campaign is
its creator's team's and a grant its campaign's; a key sees and changes only its team's (admin
every team's). The red team's findings, each refused: an owner of another team edited,
submitted, activated, paused, resumed and ended a campaign and revoked one of its grants. Every
operation by id is covered by the authorization matrix; these are the rules around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from engage.progress import wait_keys_known
from engage.stack import ServiceProcess, Stack
from shared.db import make_engine
from tests.integration.conftest import Keys, TeamKeys

pytestmark = pytest.mark.asyncio

WINDOW = {"starts_at": "2030-03-01T00:00:00+08:00", "ends_at": "2030-04-01T00:00:00+08:00"}


@pytest.fixture(scope="module")
async def rewards_url(rewards: ServiceProcess, keys: Keys, team_keys: TeamKeys) -> str:
    every = [k for by_role in team_keys.values() for k in by_role.values()]
    await wait_keys_known(rewards.url, "/v1/templates", [*every, keys.admin, keys.viewer])
    return rewards.url


@pytest.fixture
async def as_key(rewards_url: str) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def client(key: str) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            base_url=rewards_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        )
        clients.append(c)
        return c

    yield client
    for c in clients:
        await c.aclose()


def refused(r: httpx.Response, what: str, owner: str, caller: str) -> None:
    """403 problem+json `other_team` naming the object and both teams."""
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "other_team"
    assert r.json()["detail"] == f"{what} belongs to team {owner}; this key works for team {caller}"


async def create(c: httpx.AsyncClient) -> dict[str, Any]:
    r = await c.post("/v1/campaigns", json={"template": "tribe_chief", **WINDOW})
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def insert_grant(stack: Stack, campaign_id: str) -> int:
    """A granted grant of the campaign, written into the ledger (settling needs metrics)."""
    assert stack.database_url
    engine = make_engine(stack.database_url, "rewards", pool_size=1)
    try:
        async with engine.begin() as conn:
            grant_id = await conn.scalar(
                text(
                    "INSERT INTO grants (campaign_id, version, rule_id, role, user_id, period, "
                    "status, items, fulfil_by, explanation, fulfilment_status) VALUES (:c, 1, "
                    "'chief-credit', 'owner', 'teams.u1', '2030-03', 'granted', "
                    "'[{\"kind\": \"credit_fen\", \"amount\": 100}]', '2030-04-15', '{}', "
                    "'pending') RETURNING grant_id"
                ),
                {"c": campaign_id},
            )
    finally:
        await engine.dispose()
    return int(grant_id)


async def campaign_ids(c: httpx.AsyncClient) -> set[str]:
    """Every campaign the key's list shows, page by page."""
    found: set[str] = set()
    cursor: str | None = None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        r = await c.get("/v1/campaigns", params=params)
        assert r.status_code == 200, r.text
        found |= {i["campaign_id"] for i in r.json()["items"]}
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return found


async def test_an_owner_of_another_team_changes_nothing_of_a_campaign(
    as_key: Any, team_keys: TeamKeys, keys: Keys
) -> None:
    north, south = team_keys["north"], team_keys["south"]
    owner, approver = as_key(north["campaign_owner"]), as_key(north["approver"])
    rival, rival_approver = as_key(south["campaign_owner"]), as_key(south["approver"])
    doc = await create(owner)
    assert doc["team"] == "north"
    cid = doc["campaign_id"]
    what = f"campaign {cid}"
    draft = doc["versions"][0]["definition"]

    refused(await rival.put(f"/v1/campaigns/{cid}/draft", json=draft), what, "north", "south")
    refused(
        await rival.post(f"/v1/campaigns/{cid}/versions:fork", json={"from_version": 1}),
        what, "north", "south",
    )  # fmt: skip
    refused(await rival.post(f"/v1/campaigns/{cid}/versions/1:submit"), what, "north", "south")
    assert (await owner.post(f"/v1/campaigns/{cid}/versions/1:submit")).status_code == 200
    # Approvals stay within the team, and the team is checked before the four-eyes rule.
    refused(
        await rival_approver.post(f"/v1/campaigns/{cid}/versions/1:approve"),
        what, "north", "south",
    )  # fmt: skip
    assert (await approver.post(f"/v1/campaigns/{cid}/versions/1:approve")).status_code == 200
    refused(await rival.post(f"/v1/campaigns/{cid}:activate"), what, "north", "south")
    assert (await owner.post(f"/v1/campaigns/{cid}:activate")).status_code == 200
    refused(await rival.post(f"/v1/campaigns/{cid}:pause"), what, "north", "south")
    assert (await owner.post(f"/v1/campaigns/{cid}:pause")).status_code == 200
    refused(await rival.post(f"/v1/campaigns/{cid}:resume"), what, "north", "south")
    assert (await owner.post(f"/v1/campaigns/{cid}:resume")).status_code == 200
    refused(await rival.post(f"/v1/campaigns/{cid}:end"), what, "north", "south")

    after = (await owner.get(f"/v1/campaigns/{cid}")).json()
    assert after["state"] == "active" and len(after["versions"]) == 1
    actors = {e["actor"] for e in (await owner.get(f"/v1/campaigns/{cid}/audit")).json()["items"]}
    assert len(actors) == 2  # north's owner and approver: south left no trace
    # An admin acts on every team's campaign.
    ended = await as_key(keys.admin).post(f"/v1/campaigns/{cid}:end")
    assert ended.status_code == 200 and ended.json()["state"] == "ended", ended.text


async def test_only_the_campaigns_team_or_admin_reads_and_revokes_its_grant(
    as_key: Any, team_keys: TeamKeys, keys: Keys, stack: Stack
) -> None:
    north, south = team_keys["north"], team_keys["south"]
    cid = (await create(as_key(north["campaign_owner"])))["campaign_id"]
    grant_id = await insert_grant(stack, cid)
    what = f"grant {grant_id} (campaign {cid})"
    rival = as_key(south["campaign_owner"])
    refused(await rival.get(f"/v1/grants/{grant_id}"), what, "north", "south")
    r = await rival.post(f"/v1/grants/{grant_id}:revoke", json={"reason": "rival"})
    refused(r, what, "north", "south")
    r = await as_key(keys.owner).post(f"/v1/grants/{grant_id}:revoke", json={"reason": "x"})
    assert r.status_code == 403 and r.json()["detail"].endswith("this key has no team"), r.text
    assert (await as_key(north["viewer"]).get(f"/v1/grants/{grant_id}")).json()["status"] == (
        "granted"
    )
    r = await as_key(keys.admin).post(f"/v1/grants/{grant_id}:revoke", json={"reason": "fraud"})
    assert r.status_code == 200 and r.json()["status"] == "revoked", r.text


async def test_lists_show_the_keys_team_only_and_admin_every_team(
    as_key: Any, team_keys: TeamKeys, keys: Keys, stack: Stack
) -> None:
    made = {}
    for team in ("north", "south"):
        made[team] = (await create(as_key(team_keys[team]["campaign_owner"])))["campaign_id"]
        await insert_grant(stack, made[team])
    seen_by_south = await campaign_ids(as_key(team_keys["south"]["viewer"]))
    assert made["south"] in seen_by_south and made["north"] not in seen_by_south
    assert {made["north"], made["south"]}.isdisjoint(await campaign_ids(as_key(keys.viewer)))
    assert {made["north"], made["south"]} <= await campaign_ids(as_key(keys.admin))

    async def grant_campaigns(key: str, campaign_id: str) -> list[str]:
        r = await as_key(key).get("/v1/grants", params={"campaign_id": campaign_id})
        assert r.status_code == 200, r.text
        return [g["campaign_id"] for g in r.json()["items"]]

    assert await grant_campaigns(team_keys["south"]["viewer"], made["north"]) == []
    assert await grant_campaigns(team_keys["south"]["viewer"], made["south"]) == [made["south"]]
    assert await grant_campaigns(keys.viewer, made["south"]) == []
    assert await grant_campaigns(keys.admin, made["north"]) == [made["north"]]
    r = await as_key(team_keys["south"]["viewer"]).get("/v1/grants", params={"limit": 500})
    assert {g["campaign_id"] for g in r.json()["items"]} <= await campaign_ids(
        as_key(team_keys["south"]["viewer"])
    )
