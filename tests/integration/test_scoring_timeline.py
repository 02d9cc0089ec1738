"""Scoring's care view (SPEC §11): a user's timeline of days, their `first_seen` (SPEC §10), and
a user never seen being a 404 (SPEC §9) — on a stack of its own, since it posts in two rounds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from engage.stack import Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from tests.builders import make_event
from tests.integration.test_scoring_reference import wait_processed

pytestmark = pytest.mark.asyncio
TZ = ZoneInfo("Asia/Shanghai")
TODAY = datetime.now(UTC).astimezone(TZ).date()
SEEN = TODAY - timedelta(days=3)  # 12 mobile messages; a session starts the next evening
LATE = TODAY - timedelta(days=50)  # outside the default range; arrives in a second round


def at(day: date, hh: int, mm: int, ss: float = 0.0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=TZ) + timedelta(seconds=ss)


def first_round() -> list[dict[str, Any]]:
    """care-u: 12 messages on SEEN; a mobile session from 23:40:00.5 the next day to 00:25:00.7
    after it (45 min and 0.2 s: 2,700 whole seconds, split 1,199 + 1,501)."""
    night = SEEN + timedelta(days=1)
    return [
        *[
            make_event("message", user_id="care-u", client="mobile", at=at(SEEN, 10, i))
            for i in range(12)
        ],
        make_event(
            "login", user_id="care-u", client="mobile", session_id="n1", at=at(night, 23, 40, 0.5)
        ),
        make_event(
            "logout",
            user_id="care-u",
            client="mobile",
            session_id="n1",
            at=at(night + timedelta(days=1), 0, 25, 0.7),
        ),
    ]


LATE_EVENT = make_event("points", user_id="care-u", delta=7, at=at(LATE, 9, 0))


@dataclass
class Env:
    stack: Stack
    importer: str
    viewer: str


@pytest.fixture(scope="module")
def care_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(var_dir=Path(tmp_path_factory.mktemp("scoring-care")), fixed_ports=False)
    stack.start_infra()
    try:
        stack.start_service("ingest")
        stack.start_service("scoring")
        yield stack
    finally:
        stack.stop()


async def post(env: Env, events: list[dict[str, Any]], total: int) -> None:
    async with httpx.AsyncClient(base_url=env.stack.services["ingest"].url, timeout=30) as c:
        r = await c.post(
            "/v1/events:import",
            json={"events": events},
            headers={"Authorization": f"Bearer {env.importer}"},
        )
        assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text
    await wait_processed(env.stack, "scoring", total, timeout_s=60)


@pytest.fixture(scope="module")
async def env(care_stack: Stack) -> Env:
    url, bootstrap = care_stack.database_url, care_stack.kafka_bootstrap
    assert url and bootstrap
    importer = (await issue_api_key(url, "imp", [Role.IMPORTER], 1e6, bootstrap)).secret
    viewer = (await issue_api_key(url, "view", [Role.VIEWER], 1e6, bootstrap)).secret
    env = Env(care_stack, importer, viewer)
    await post(env, first_round(), len(first_round()))
    return env


@pytest.fixture
async def viewer(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=env.stack.services["scoring"].url,
        timeout=10,
        headers={"Authorization": f"Bearer {env.viewer}"},
    ) as c:
        yield c


def by_day(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["day"]: i for i in items}


async def test_timeline_shows_each_day_newest_first_with_counters_and_points(
    viewer: httpx.AsyncClient,
) -> None:
    r = await viewer.get("/v1/users/care-u/timeline")
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["user_id"] == "care-u" and page["first_seen"] == SEEN.isoformat()
    assert (page["from"], page["to"]) == (
        (TODAY - timedelta(days=34)).isoformat(),
        TODAY.isoformat(),
    )
    days = [SEEN + timedelta(days=n) for n in (2, 1, 0)]
    assert [i["day"] for i in page["items"]] == [d.isoformat() for d in days]
    items = by_day(page["items"])
    chat = items[SEEN.isoformat()]
    assert (chat["messages"], chat["messages_mobile"], chat["message_points"]) == (12, 12, 12)
    assert chat["month_active"] is True
    evening, after_midnight = items[days[1].isoformat()], items[days[0].isoformat()]
    assert (evening["online_seconds_mobile"], evening["online_points"]) == (1199, 3)
    assert (after_midnight["online_seconds_mobile"], after_midnight["online_points"]) == (1501, 4)
    assert (evening["logins"], after_midnight["logins"]) == (1, 0)


async def test_online_seconds_of_a_split_session_add_up_to_its_whole_length(
    viewer: httpx.AsyncClient,
) -> None:
    items = (await viewer.get("/v1/users/care-u/timeline")).json()["items"]
    assert sum(i["online_seconds_mobile"] for i in items) == 45 * 60  # 2,700.2 s, floored once


async def test_timeline_pages_by_day_and_keeps_to_its_range(viewer: httpx.AsyncClient) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await viewer.get("/v1/users/care-u/timeline", params=params)).json()
        seen += [i["day"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 3
    one_day = {"from": SEEN.isoformat(), "to": SEEN.isoformat()}
    only = (await viewer.get("/v1/users/care-u/timeline", params=one_day)).json()["items"]
    assert [i["day"] for i in only] == [SEEN.isoformat()]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"from": "2026-11-05", "to": "2026-11-04"}, 422, "validation_failed"),
        ({"from": "2026-02-30"}, 422, "validation_failed"),
        ({"to": "9999-12-31"}, 422, "validation_failed"),
        ({"cursor": "garbage"}, 400, "invalid_cursor"),
        ({"since": "2026-11-01"}, 422, "unknown_parameter"),
    ],
)
async def test_bad_timeline_requests_are_problems(
    viewer: httpx.AsyncClient, params: dict[str, str], status: int, code: str
) -> None:
    r = await viewer.get("/v1/users/care-u/timeline", params=params)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text


async def test_a_user_never_seen_is_404_on_every_user_read(viewer: httpx.AsyncClient) -> None:
    for path in (
        "/v1/users/stranger/timeline",
        f"/v1/users/stranger/days/{SEEN.isoformat()}",
        f"/v1/users/stranger/months/{SEEN.strftime('%Y-%m')}",
    ):
        r = await viewer.get(path)
        assert (r.status_code, r.json()["code"]) == (404, "user_not_found"), path


async def test_a_late_earlier_event_moves_first_seen_back(
    env: Env, viewer: httpx.AsyncClient
) -> None:
    await post(env, [LATE_EVENT], len(first_round()) + 1)
    day = (await viewer.get(f"/v1/users/care-u/days/{TODAY.isoformat()}")).json()
    assert day["first_seen"] == LATE.isoformat() and day["messages"] == 0  # quiet day: zeros
    month = (await viewer.get(f"/v1/users/care-u/months/{LATE.strftime('%Y-%m')}")).json()
    assert (month["first_seen"], month["points_delta"], month["active"]) == (
        LATE.isoformat(),
        7,
        False,
    )
    r = await viewer.get(
        "/v1/users/care-u/timeline", params={"from": LATE.isoformat(), "to": LATE.isoformat()}
    )
    page = r.json()
    assert page["first_seen"] == LATE.isoformat()
    [item] = page["items"]
    assert (item["points_delta"], item["month_active"]) == (7, False)
