"""Scoring's read API on crafted events: tie-breaks, eligibility, filters, pages, profiles,
errors, and the changelog on engage.metrics.v1 (SPEC §4, §7)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from engage.progress import wait_keys_known
from engage.stack import Stack
from engage.topic_audit import latest_values
from services.ingest.admin import issue_api_key
from shared.auth import Role
from tests.builders import make_event
from tests.integration.test_scoring_reference import processed, wait_processed

pytestmark = pytest.mark.asyncio
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime.now(UTC)
THIS_MONTH = NOW.astimezone(TZ).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
LAST = (THIS_MONTH - timedelta(days=1)).replace(day=1)
MONTH = LAST.strftime("%Y-%m")
# A month no event of the crafted groups falls in, nor was processed in (no row was written)
NEXT = (THIS_MONTH + timedelta(days=32)).replace(day=1).strftime("%Y-%m")
AT = LAST + timedelta(days=9, hours=10)  # the 10th, 10:00 local


@dataclass
class Env:
    stack: Stack
    scoring: str
    viewer: str
    admin: str


def crafted_events() -> list[dict[str, Any]]:
    """Province BJ: E (bonus 50) > B (10, 3 active) > A (10, 2 active) > C (10, 2 active, id
    after A); D is dissolved; F was created in another province."""
    events: list[dict[str, Any]] = []

    def group(gid: str, bonus: int, active: int, members: int, province: str = "BJ") -> None:
        owner = f"{gid}-m0"
        events.append(
            make_event(
                "group_created", user_id=owner, group_id=gid, province=province, name=gid, at=AT
            )
        )
        for i in range(1, members):
            events.append(
                make_event(
                    "group_join", user_id=f"{gid}-m{i}", group_id=gid, at=AT + timedelta(minutes=1)
                )
            )
        for i in range(active):
            events.append(
                make_event(
                    "message",
                    user_id=f"{gid}-m{i}",
                    group_id=gid,
                    client="pc",
                    at=AT + timedelta(hours=1),
                )
            )
        events.append(
            make_event(
                "bonus_card", user_id=owner, group_id=gid, points=bonus, at=AT + timedelta(hours=2)
            )
        )

    group("t-e", 50, 1, 2)
    group("t-a", 10, 2, 4)
    group("t-b", 10, 3, 3)
    group("t-c", 10, 2, 6)
    group("t-d", 99, 2, 2)
    events.append(
        make_event("group_dissolved", user_id="t-d-m0", group_id="t-d", at=AT + timedelta(days=2))
    )
    group("t-f", 500, 1, 1, province="SH")
    return events


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(var_dir=Path(tmp_path_factory.mktemp("scoring-api")), fixed_ports=False)
    stack.start_infra()
    try:
        stack.start_service("ingest")
        stack.start_service("scoring")
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
async def env(api_stack: Stack) -> Env:
    url, bootstrap = api_stack.database_url, api_stack.kafka_bootstrap
    assert url and bootstrap
    importer = (await issue_api_key(url, "imp", [Role.IMPORTER], 1e6, bootstrap)).secret
    viewer = (await issue_api_key(url, "view", [Role.VIEWER], 1e6, bootstrap)).secret
    admin = (await issue_api_key(url, "ops", [Role.ADMIN], 1e6, bootstrap)).secret
    events = crafted_events()
    async with httpx.AsyncClient(base_url=api_stack.services["ingest"].url) as c:
        r = await c.post(
            "/v1/events:import",
            json={"events": events},
            headers={"Authorization": f"Bearer {importer}"},
        )
        assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text
    await wait_processed(api_stack, "scoring", len(events), timeout_s=60)
    return Env(api_stack, api_stack.services["scoring"].url, viewer, admin)


@pytest.fixture
async def viewer(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=env.scoring, timeout=10, headers={"Authorization": f"Bearer {env.viewer}"}
    ) as c:
        yield c


BONUS_ONLY = {"w_growth": 0, "w_activity": 0, "w_bonus": 1}


async def test_ties_break_on_active_members_then_group_id_and_dissolved_groups_are_out(
    viewer: httpx.AsyncClient,
) -> None:
    r = await viewer.get(f"/v1/leaderboards/{MONTH}/BJ", params=BONUS_ONLY)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["rank"], i["group_id"], i["vitality"]) for i in items] == [
        (1, "t-e", 50),
        (2, "t-b", 10),
        (3, "t-a", 10),
        (4, "t-c", 10),
    ]


async def test_filters_on_members_and_active_ratio(viewer: httpx.AsyncClient) -> None:
    r = await viewer.get(f"/v1/leaderboards/{MONTH}/BJ", params={**BONUS_ONLY, "min_members": 4})
    assert [i["group_id"] for i in r.json()["items"]] == ["t-a", "t-c"]
    r = await viewer.get(
        f"/v1/leaderboards/{MONTH}/BJ", params={**BONUS_ONLY, "min_active_ratio": 0.5}
    )
    assert [i["group_id"] for i in r.json()["items"]] == ["t-e", "t-b", "t-a"]


async def test_pages_follow_the_cursor_with_continuing_ranks(viewer: httpx.AsyncClient) -> None:
    first = (
        await viewer.get(f"/v1/leaderboards/{MONTH}/BJ", params={**BONUS_ONLY, "limit": 3})
    ).json()
    second = (
        await viewer.get(
            f"/v1/leaderboards/{MONTH}/BJ",
            params={**BONUS_ONLY, "limit": 3, "cursor": first["next_cursor"]},
        )
    ).json()
    assert [(i["rank"], i["group_id"]) for i in first["items"] + second["items"]] == [
        (1, "t-e"),
        (2, "t-b"),
        (3, "t-a"),
        (4, "t-c"),
    ]
    assert second["next_cursor"] is None


async def test_group_month_reports_components_rank_and_top_members(
    viewer: httpx.AsyncClient,
) -> None:
    r = (await viewer.get(f"/v1/groups/t-a/months/{MONTH}", params=BONUS_ONLY)).json()
    assert (r["members"], r["active_members"], r["bonus_points"], r["group_messages"]) == (
        4,
        2,
        10,
        2,
    )
    assert r["rank"] == 3 and r["province"] == "BJ" and not r["dissolved"]
    assert [m["user_id"] for m in r["top_members"]][:2] == ["t-a-m0", "t-a-m1"]
    d = (await viewer.get(f"/v1/groups/t-d/months/{MONTH}")).json()
    assert d["dissolved"] and d["rank"] is None


async def test_user_month_reports_activity(viewer: httpx.AsyncClient) -> None:
    r = (await viewer.get(f"/v1/users/t-b-m2/months/{MONTH}")).json()
    assert (r["messages"], r["active"], r["active_days"], r["activity_points"]) == (1, True, 1, 1)
    r = (await viewer.get(f"/v1/users/t-b-m2/days/{AT.date().isoformat()}")).json()
    assert (r["messages"], r["message_points"]) == (1, 1)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/v1/groups/nope/months/{MONTH}", 404),
        (f"/v1/groups/nope/months/{MONTH}/members", 404),
        (f"/v1/users/nobody/days/{AT.date().isoformat()}", 404),
        (f"/v1/users/nobody/months/{MONTH}", 404),
        ("/v1/users/nobody/timeline", 404),
        ("/v1/groups/t-a/months/2026-13", 422),
        ("/v1/groups/t-a/months/november", 422),
        (f"/v1/leaderboards/{MONTH}/XX", 422),
        (f"/v1/leaderboards/{MONTH}/BJ?cursor=garbage", 400),
        (f"/v1/leaderboards/{MONTH}/BJ?w_growth=1", 422),
        (f"/v1/leaderboards/{MONTH}/BJ?profile=unknown", 404),
        (f"/v1/leaderboards/{MONTH}/BJ?limit=0", 422),
        ("/v1/users/bad%20id/days/2026-11-01", 422),
        (f"/v1/leaderboards/{MONTH}/BJ?min_member=4", 422),  # a typo is refused, not ignored
        ("/v1/stats/month/2026-13", 422),
        ("/v1/stats/day/2026-02-30", 422),
        ("/v1/stats/month/2099-12", 404),
        (f"/v1/stats/month/{MONTH}?by=city", 422),
    ],
)
async def test_bad_requests_are_problems(viewer: httpx.AsyncClient, path: str, status: int) -> None:
    r = await viewer.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_profiles_are_read_by_viewers_changed_by_admins_and_audited(env: Env) -> None:
    body = {"w_growth": 0.5, "w_activity": 2, "w_bonus": 1}
    async with httpx.AsyncClient(base_url=env.scoring) as c:
        anon = await c.get("/v1/profiles")
        assert anon.status_code == 401
        as_viewer = {"Authorization": f"Bearer {env.viewer}"}
        assert (await c.put("/v1/profiles/summer", json=body, headers=as_viewer)).status_code == 403
        as_admin = {"Authorization": f"Bearer {env.admin}"}
        r = await c.put("/v1/profiles/summer", json=body, headers=as_admin)
        assert r.status_code == 200 and r.json()["w_activity"] == 2
        assert (
            await c.put("/v1/profiles/summer", json={"w_growth": "x"}, headers=as_admin)
        ).status_code == 422
        names = [p["name"] for p in (await c.get("/v1/profiles", headers=as_viewer)).json()]
        assert names == ["default", "summer"]
        board = (
            await c.get(
                f"/v1/leaderboards/{MONTH}/BJ", params={"profile": "summer"}, headers=as_viewer
            )
        ).json()
        assert board["weights"] == body
    assert env.stack.database_url
    import asyncpg

    conn = await asyncpg.connect(env.stack.database_url.replace("+asyncpg", ""))
    try:
        row = await conn.fetchrow(
            "SELECT actor, before, after FROM scoring.audit_log "
            "WHERE subject = 'summer' ORDER BY id DESC LIMIT 1"
        )
    finally:
        await conn.close()
    assert row["before"] is None and orjson.loads(row["after"])["w_activity"] == 2


async def test_the_live_profile_changes_only_with_a_second_principal(env: Env) -> None:
    """Issue 18: a change of `default` (every leaderboard's weights) is pending until another
    principal approves it; the proposer cannot; `default` cannot be deleted, others can."""
    assert env.stack.database_url
    approver = (
        await issue_api_key(
            env.stack.database_url, "weights-review", [Role.APPROVER], 1e6,
            env.stack.kafka_bootstrap,
        )
    ).secret  # fmt: skip
    await wait_keys_known(env.scoring, "/v1/profiles", [approver])
    as_admin = {"Authorization": f"Bearer {env.admin}"}
    as_approver = {"Authorization": f"Bearer {approver}"}
    async with httpx.AsyncClient(base_url=env.scoring, timeout=10) as c:
        live = (await c.get("/v1/profiles/default", headers=as_admin)).json()
        weights = {k: live[k] for k in ("w_growth", "w_activity", "w_bonus")}
        changed = {**weights, "w_bonus": weights["w_bonus"] + 7}
        r = await c.put("/v1/profiles/default", json=changed, headers=as_admin)
        assert r.status_code == 202, r.text
        assert r.json()["w_bonus"] == weights["w_bonus"]  # still the live weights
        assert r.json()["pending"]["w_bonus"] == changed["w_bonus"]
        board = await c.get(f"/v1/leaderboards/{MONTH}/BJ", headers=as_admin)
        assert board.json()["weights"] == weights
        mine = await c.post("/v1/profiles/default:approve", headers=as_admin)
        assert mine.status_code == 403 and mine.json()["code"] == "self_approval"
        ok = await c.post("/v1/profiles/default:approve", headers=as_approver)
        assert ok.status_code == 200 and ok.json()["pending"] is None, ok.text
        board = await c.get(f"/v1/leaderboards/{MONTH}/BJ", headers=as_admin)
        assert board.json()["weights"] == changed
        again = await c.post("/v1/profiles/default:approve", headers=as_approver)
        assert again.status_code == 409 and again.json()["code"] == "nothing_pending"
        # Back to what it was, the same way (other tests read the default leaderboard).
        assert (
            await c.put("/v1/profiles/default", json=weights, headers=as_admin)
        ).status_code == 202
        assert (
            await c.post("/v1/profiles/default:approve", headers=as_approver)
        ).status_code == 200
        gone = await c.delete("/v1/profiles/default", headers=as_admin)
        assert gone.status_code == 409 and gone.json()["code"] == "live_profile"
        await c.put("/v1/profiles/autumn", json=weights, headers=as_admin)
        assert (await c.delete("/v1/profiles/autumn", headers=as_admin)).status_code == 204
        assert (await c.get("/v1/profiles/autumn", headers=as_admin)).status_code == 404
        assert (await c.delete("/v1/profiles/autumn", headers=as_admin)).status_code == 404


async def test_changelog_carries_full_current_values(env: Env) -> None:
    assert env.stack.kafka_bootstrap
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        table = await latest_values(env.stack.kafka_bootstrap, "engage.metrics.v1")
        latest = table.get(f"group:t-a:{MONTH}")
        if latest is not None or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert latest is not None
    assert (latest["members"], latest["active_members"], latest["bonus_points"]) == (4, 2, 10)
    assert f"user:t-a-m1:{MONTH}" in table and f"user:t-a-m1:{AT.date().isoformat()}" in table
    assert await processed(env.stack, "scoring") == len(crafted_events())


async def test_fractional_weights_are_not_truncated(viewer: httpx.AsyncClient) -> None:
    params = {"w_growth": 0, "w_activity": 0, "w_bonus": 0.5}
    r = (await viewer.get(f"/v1/leaderboards/{MONTH}/BJ", params=params)).json()
    assert [(i["group_id"], i["vitality"]) for i in r["items"][:2]] == [("t-e", 25.0), ("t-b", 5.0)]
    g = (await viewer.get(f"/v1/groups/t-a/months/{MONTH}", params=params)).json()
    assert g["vitality"] == 5.0 and g["rank"] == 3


async def test_a_group_never_seen_is_404_group_not_found(viewer: httpx.AsyncClient) -> None:
    for path in (f"/v1/groups/nope/months/{MONTH}", f"/v1/groups/nope/months/{MONTH}/members"):
        r = await viewer.get(path)
        assert (r.status_code, r.json()["code"]) == (404, "group_not_found"), path


async def test_a_user_never_seen_is_404_and_a_known_users_quiet_day_is_zeros(
    viewer: httpx.AsyncClient,
) -> None:
    for path in (
        f"/v1/users/nobody/days/{AT.date().isoformat()}",
        f"/v1/users/nobody/months/{MONTH}",
    ):
        r = await viewer.get(path)
        assert (r.status_code, r.json()["code"]) == (404, "user_not_found"), path
    quiet = (await viewer.get(f"/v1/users/t-b-m2/days/{(AT - timedelta(days=3)).date()}")).json()
    assert (quiet["messages"], quiet["activity_points"]) == (0, 0)
    assert quiet["first_seen"] == AT.date().isoformat()


async def test_a_created_group_with_members_has_a_month_where_nothing_happened(
    viewer: httpx.AsyncClient,
) -> None:
    """SPEC §9: zeros but its members, and ranked (no event falls in NEXT month)."""
    r = (await viewer.get(f"/v1/groups/t-c/months/{NEXT}")).json()
    assert (r["members"], r["active_members"], r["activity_points"], r["bonus_points"]) == (
        6,
        0,
        0,
        0,
    )
    assert r["vitality"] == 0 and r["rank"] == 3  # ties on 0 and 0 active: by group id
    board = (await viewer.get(f"/v1/leaderboards/{NEXT}/BJ")).json()["items"]
    assert [(i["group_id"], i["members"], i["vitality"]) for i in board] == [
        ("t-a", 4, 0),
        ("t-b", 3, 0),
        ("t-c", 6, 0),
        ("t-e", 2, 0),
    ]
    filtered = (await viewer.get(f"/v1/leaderboards/{NEXT}/BJ", params={"min_members": 4})).json()
    assert [i["group_id"] for i in filtered["items"]] == ["t-a", "t-c"]
    members = (await viewer.get(f"/v1/groups/t-b/months/{NEXT}/members")).json()["items"]
    assert members == ["t-b-m0", "t-b-m1", "t-b-m2"]


async def test_user_month_carries_its_lifecycle_stage(viewer: httpx.AsyncClient) -> None:
    r = (await viewer.get(f"/v1/users/t-b-m2/months/{MONTH}")).json()
    assert (r["lifecycle"], r["loyal"]) == ("new", False)


async def test_stats_count_users_by_province_and_client(viewer: httpx.AsyncClient) -> None:
    total = (await viewer.get(f"/v1/stats/month/{MONTH}")).json()["items"]
    assert len(total) == 1 and total[0]["province"] is None and total[0]["client"] is None
    by_province = (await viewer.get(f"/v1/stats/month/{MONTH}", params={"by": "province"})).json()
    items = {i["province"]: i for i in by_province["items"]}
    # Every user messaged only their own group: SH is t-f's province, the others BJ's.
    assert items["SH"]["active_users"] == 1
    assert sum(i["active_users"] for i in items.values()) == total[0]["active_users"]
    assert sum(i["new_users"] for i in items.values()) == total[0]["new_users"]
    by_client = (await viewer.get(f"/v1/stats/day/{AT.date().isoformat()}?by=client")).json()
    clients = {i["client"]: i for i in by_client["items"]}
    assert clients["pc"]["messages"] == clients["all"]["messages"]
    assert clients["pc"]["new_users"] is None
