"""Notify's owning teams, against real PostgreSQL and Kafka (SPEC §15, issue 18): a broadcast is
its creator's team's, a template its first author's; a key sees and changes only its team's
(admin every team's); `reward_*` templates are global, changed only by admin keys and keys
without a team. Every operation by id is covered by the authorization matrix; these are the
rules around it."""

from __future__ import annotations

from typing import Any

import pytest

from engage.progress import wait_keys_known
from engage.stack import Stack
from services.notify.domain.notices import REWARD_TEMPLATE
from tests.integration.conftest import Keys, TeamKeys
from tests.integration.notify_support import Deployment

pytestmark = pytest.mark.asyncio

SCHEMA = "notify_teams"
REWARD = f"/v1/templates/{REWARD_TEMPLATE}/im/zh-CN"
REWARD_BODY = {"category": "reward", "text": "{campaign}: {rewards}",
               "placeholders": ["campaign", "rewards"]}  # fmt: skip


@pytest.fixture(scope="module")
async def teams(stack: Stack, keys: Keys, team_keys: TeamKeys) -> Deployment:
    d = Deployment(stack, keys, SCHEMA, replicas=1, NOTIFY_CONSUME="false")
    await d.ready()
    every = [k for by_role in team_keys.values() for k in by_role.values()]
    await wait_keys_known(d.replicas[0].url, "/v1/policies", every)
    return d


def _template(text: str = "Hi {name}") -> dict[str, Any]:
    return {"category": "marketing", "text": text, "placeholders": ["name"]}


def _broadcast(template: str) -> dict[str, Any]:
    return {"name": "teams", "template": template, "category": "marketing", "locale": "en",
            "params": {"name": "friend"},
            "segment": {"kind": "list", "user_ids": ["teams.u1"]}}  # fmt: skip


async def test_a_template_and_a_broadcast_belong_to_their_creators_team(
    teams: Deployment, team_keys: TeamKeys
) -> None:
    north, south = team_keys["north"], team_keys["south"]
    async with teams.client(north["campaign_owner"]) as owner:
        assert (await owner.put("/v1/templates/north_news/im/en", json=_template())).is_success
        r = await owner.post("/v1/broadcasts", json=_broadcast("north_news"))
        assert r.status_code == 201, r.text
        assert r.json()["team"] == "north"
        assert (await owner.get("/v1/templates/north_news/im/en")).json()["team"] == "north"
        # Its other channels and locales are the same template: north's too.
        assert (await owner.put("/v1/templates/north_news/sms/en", json=_template())).is_success
    async with teams.client(south["campaign_owner"]) as other:
        r = await other.put("/v1/templates/north_news/im/zh-CN", json=_template("抢 {name}"))
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "other_team"
        assert r.json()["detail"] == (
            "template north_news belongs to team north; this key works for team south"
        )
        # Nor may south broadcast north's text.
        r = await other.post("/v1/broadcasts", json=_broadcast("north_news"))
        assert r.status_code == 403 and r.json()["code"] == "other_team", r.text


async def test_lists_show_the_keys_team_and_the_global_templates(
    teams: Deployment, keys: Keys, team_keys: TeamKeys
) -> None:
    for team in ("north", "south"):
        async with teams.client(team_keys[team]["campaign_owner"]) as owner:
            r = await owner.put(f"/v1/templates/{team}_only/im/en", json=_template())
            assert r.is_success, r.text

    async def names(key: str) -> set[str]:
        async with teams.client(key) as c:
            r = await c.get("/v1/templates")
            assert r.status_code == 200, r.text
            return {t["name"] for t in r.json()}

    seen_by_north = await names(team_keys["north"]["viewer"])
    assert "north_only" in seen_by_north and "south_only" not in seen_by_north
    assert REWARD_TEMPLATE in seen_by_north  # global: every key reads it
    seen_by_no_team = await names(keys.viewer)
    assert {"north_only", "south_only"}.isdisjoint(seen_by_no_team)
    assert {"north_only", "south_only", REWARD_TEMPLATE} <= await names(keys.admin)


async def test_a_reward_template_is_changed_by_admin_or_a_key_without_a_team_only(
    teams: Deployment, keys: Keys, team_keys: TeamKeys
) -> None:
    async with teams.client(team_keys["north"]["campaign_owner"]) as owner:
        assert (await owner.get(REWARD)).json()["team"] is None
        r = await owner.put(REWARD, json=REWARD_BODY)
        assert r.status_code == 403 and r.json()["code"] == "other_team", r.text
        assert "belongs to no team" in r.json()["detail"]
        # A new reward_* name is global too, whoever writes it first.
        r = await owner.put("/v1/templates/reward_north/im/en", json=REWARD_BODY)
        assert r.status_code == 403 and r.json()["code"] == "other_team", r.text
    async with teams.client(keys.owner) as no_team:
        r = await no_team.put(REWARD, json=REWARD_BODY)
        assert r.status_code == 202, r.text  # still four eyes
        pending = r.json()["version"]
    path = f"{REWARD}/versions/{pending}:approve"
    async with teams.client(team_keys["north"]["approver"]) as approver:
        r = await approver.post(path)
        assert r.status_code == 403 and r.json()["code"] == "other_team", r.text
    async with teams.client(keys.approver) as approver:
        r = await approver.post(path)
        assert r.status_code == 200 and r.json()["status"] == "live", r.text


async def test_only_an_approver_of_the_broadcasts_team_approves_it(
    teams: Deployment, keys: Keys, team_keys: TeamKeys
) -> None:
    async with teams.client(team_keys["south"]["campaign_owner"]) as owner:
        assert (await owner.put("/v1/templates/south_sale/im/en", json=_template())).is_success
        r = await owner.post("/v1/broadcasts", json=_broadcast("south_sale"))
        assert r.status_code == 201, r.text
        bid = r.json()["broadcast_id"]
    for stranger in (team_keys["north"]["approver"], keys.approver):
        async with teams.client(stranger) as approver:
            r = await approver.post(f"/v1/broadcasts/{bid}:approve")
            assert r.status_code == 403 and r.json()["code"] == "other_team", r.text
    async with teams.client(team_keys["south"]["approver"]) as approver:
        r = await approver.post(f"/v1/broadcasts/{bid}:approve")
        assert r.status_code == 200, r.text
        assert r.json()["team"] == "south"
    async with teams.client(team_keys["north"]["campaign_owner"]) as other:
        r = await other.post(f"/v1/broadcasts/{bid}:cancel")
        assert r.status_code == 403 and r.json()["code"] == "other_team", r.text
