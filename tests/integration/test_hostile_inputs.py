"""Reads and admin writes never 500 on input (SPEC §7, §16): a forged cursor is a 400
`invalid_cursor`, a day or month outside 2000–2099 (or not on the calendar) is a 422 naming the
field, and so is a campaign window or a simulation range outside the span — on every list and
every period path of scoring, rewards and notify, as problem+json."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from engage.progress import wait_keys_known
from engage.stack import ServiceProcess, Stack
from tests.integration.conftest import Keys

pytestmark = pytest.mark.asyncio
PROBLEM = "application/problem+json"
SPAN = "must lie between 2000-01-02 and 2099-12-30 (UTC)"
DAY_SPAN = "must lie in the years 2000–2099"


@dataclass(frozen=True)
class Env:
    urls: dict[str, str]
    keys: Keys
    campaign: dict[str, Any]

    def client(self, service: str, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.urls[service], timeout=30, headers={"Authorization": f"Bearer {key}"}
        )

    def path(self, template: str, **values: str) -> str:
        return template.format(cid=self.campaign["campaign_id"], **values)


@pytest.fixture(scope="module")
async def env(stack: Stack, rewards: ServiceProcess, keys: Keys) -> AsyncIterator[Env]:
    scoring = stack.start_service("scoring", instance="-hostile", env={"SCORING_CONSUME": "false"})
    notify = stack.start_service(
        "notify",
        instance="-hostile",
        env={"NOTIFY_SCHEMA_NAME": "notify_hostile", "NOTIFY_CONSUME": "false"},
    )
    running = {"scoring": scoring, "rewards": rewards, "notify": notify}
    probe = {"scoring": "/v1/profiles", "rewards": "/v1/templates", "notify": "/v1/policies"}
    try:
        for name, process in running.items():
            await wait_keys_known(process.url, probe[name], [keys.viewer, keys.owner])
        start = datetime.now(UTC) + timedelta(days=30)
        window = {
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(days=30)).isoformat(),
        }
        async with httpx.AsyncClient(base_url=rewards.url, timeout=30) as c:
            r = await c.post(
                "/v1/campaigns",
                json={"template": "invite_friends", **window},
                headers={"Authorization": f"Bearer {keys.owner}"},
            )
            assert r.status_code == 201, r.text
        yield Env({n: p.url for n, p in running.items()}, keys, r.json())
    finally:
        scoring.stop()
        notify.stop()


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.request.url, r.text)
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def assert_names(body: dict[str, Any], *fields: str, message: str | None = None) -> None:
    """A 422 whose `errors` name exactly these fields (and whose detail says which)."""
    assert sorted(e["field"] for e in body["errors"]) == sorted(fields), body
    for field in fields:
        assert f"{field}: " in body["detail"], body
    if message is not None:
        assert all(message in e["message"] for e in body["errors"]), body


# ----------------------------------------------------------------------------------- cursors


def cursor_of(json_text: str) -> str:
    """A cursor made by hand: any JSON text, base64url'd as the API does (orjson cannot even
    encode 2**70, so every forgery is written as JSON text)."""
    return base64.urlsafe_b64encode(json_text.encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Lister:
    service: str
    path: str
    key: str  # the shape of a key this list issues, with BAD where a forgery goes
    text_key: str | None = None  # where a text forgery goes, when the key has both kinds

    def forged(self, bad: str) -> str:
        shape = self.text_key if self.text_key and bad.startswith('"') else self.key
        return cursor_of(shape.replace("BAD", bad))


LISTS = [
    Lister("scoring", "/v1/leaderboards/2026-01/BJ", '[0.5, BAD, "g1", 1]', "[0.5, 1, BAD, 1]"),
    Lister("scoring", "/v1/groups/g1/months/2026-01/members", "[BAD]"),
    Lister("scoring", "/v1/months/2026-01/active-users", "[BAD]"),
    Lister("scoring", "/v1/users/u1/timeline", "[BAD]"),
    Lister("rewards", "/v1/grants", "[BAD]"),
    Lister("rewards", "/v1/campaigns", "[BAD]"),
    Lister("rewards", "/v1/campaigns/{cid}/audit", "[BAD]"),
    Lister("rewards", "/v1/campaigns/{cid}/enrollments", "[BAD]"),
    Lister("rewards", "/v1/campaigns/{cid}/settlements", "[BAD]"),
    Lister("rewards", "/v1/campaigns/{cid}/periods/2026-01/held", "[BAD, 1]", "[0, BAD]"),
    Lister("rewards", "/v1/users/u1/timeline", "[BAD]"),
    Lister("notify", "/v1/users/u1/notifications", "[BAD]"),
    Lister("notify", "/v1/users/u1/timeline", "[BAD]"),
    Lister("notify", "/v1/broadcasts/1/recipients", "[BAD]"),
    Lister("notify", "/v1/sandbox/messages", "[BAD]"),
    Lister("notify", "/v1/templates/reward_granted/im/zh-CN/versions", "[BAD]"),
]
# What each list issues: a cursor of that shape must still page.
GENUINE = {
    "/v1/leaderboards/2026-01/BJ": '[0.5, 1, "g1", 1]',
    "scoring /v1/users/u1/timeline": '["2026-01-05"]',
    "rewards /v1/users/u1/timeline": "[1]",
    "notify /v1/users/u1/timeline": "[1]",
    "/v1/grants": "[1]",
    "/v1/campaigns/{cid}/audit": "[1]",
    "/v1/campaigns/{cid}/periods/2026-01/held": "[0, 1]",
    "/v1/users/u1/notifications": "[1]",
    "/v1/sandbox/messages": "[1]",
    "/v1/templates/reward_granted/im/zh-CN/versions": "[1]",
}
FORGERIES = {
    "int-2**63": str(2**63),
    "int-2**70": str(2**70),
    "int-below-int64": str(-(2**63) - 1),
    "nul": '"a\\u0000b"',
    "long-text": '"' + "x" * 300 + '"',
    "bool": "true",
    "nested-list": "[1]",
    "nested-object": '{"a": 1}',
    "nan": "NaN",
}


@pytest.mark.parametrize("lister", LISTS, ids=lambda x: f"{x.service}{x.path}")
async def test_a_cursor_the_list_issued_still_pages(env: Env, lister: Lister) -> None:
    key = GENUINE.get(f"{lister.service} {lister.path}", GENUINE.get(lister.path, '["a"]'))
    async with env.client(lister.service, env.keys.viewer) as c:
        r = await c.get(env.path(lister.path), params={"cursor": cursor_of(key)})
    # These services consume nothing here: a list of a user, group or broadcast they never saw
    # says so (SPEC §9) — after taking the cursor.
    if r.status_code == 404:
        assert r.json()["code"] in ("user_not_found", "group_not_found", "broadcast_not_found"), (
            r.text
        )
        return
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("forgery", list(FORGERIES))
@pytest.mark.parametrize("lister", LISTS, ids=lambda x: f"{x.service}{x.path}")
async def test_a_forged_cursor_is_a_400_not_a_500(env: Env, lister: Lister, forgery: str) -> None:
    async with env.client(lister.service, env.keys.viewer) as c:
        r = await c.get(env.path(lister.path), params={"cursor": lister.forged(FORGERIES[forgery])})
    assert_problem(r, 400, "invalid_cursor")


@pytest.mark.parametrize("service", ["scoring", "rewards", "notify"])
async def test_every_list_with_a_cursor_is_covered_here(env: Env, service: str) -> None:
    async with env.client(service, env.keys.viewer) as c:
        doc = (await c.get("/openapi.json")).json()
    paged = {
        path.replace("{campaign_id}", "{cid}")
        for path, ops in doc["paths"].items()
        for op in ops.values()
        if any(p["name"] == "cursor" for p in op.get("parameters", []))
    }
    covered = {
        lister.path.replace("2026-01", "{month}").replace("/BJ", "/{province}")
        for lister in LISTS
        if lister.service == service
    }
    covered = {
        p.replace("/g1/", "/{group_id}/")
        .replace("/u1/", "/{user_id}/")
        .replace("/broadcasts/1/", "/broadcasts/{broadcast_id}/")
        .replace("/periods/{month}/", "/periods/{period}/")
        .replace("/reward_granted/im/zh-CN/", "/{name}/{channel}/{locale}/")
        for p in covered
    }
    assert paged == covered


# ------------------------------------------------------------------------------ days, months

MONTH_PATHS = [
    ("scoring", "/v1/users/u1/months/{label}", "month"),
    ("scoring", "/v1/groups/g1/months/{label}", "month"),
    ("scoring", "/v1/groups/g1/months/{label}/members", "month"),
    ("scoring", "/v1/leaderboards/{label}/BJ", "month"),
    ("scoring", "/v1/months/{label}/active-users", "month"),
    ("rewards", "/v1/campaigns/{cid}/draws/r1/{label}", "period"),
    ("rewards", "/v1/grants?period={label}", "period"),
]
DAY_PATHS = [
    ("scoring", "/v1/users/u1/days/{label}", "day"),
    ("rewards", "/v1/campaigns/{cid}/draws/r1/{label}", "period"),
    ("rewards", "/v1/grants?period={label}", "period"),
    ("rewards", "/v1/campaigns/{cid}/report?from={label}", "from"),
    ("rewards", "/v1/campaigns/{cid}/report?to={label}", "to"),
]
OUT_OF_SPAN = {"9999-12": True, "1999-12": True, "2100-01": True, "2026-13": False}
DAYS_OUT = {"9999-12-31": True, "1999-12-31": True, "2026-02-30": False, "0": False}


@pytest.mark.parametrize("label", list(OUT_OF_SPAN))
@pytest.mark.parametrize(("service", "path", "field"), MONTH_PATHS)
async def test_a_month_outside_the_span_is_a_422_naming_it(
    env: Env, service: str, path: str, field: str, label: str
) -> None:
    async with env.client(service, env.keys.viewer) as c:
        r = await c.get(env.path(path, label=label))
    body = assert_problem(r, 422, "validation_failed")
    assert_names(body, field, message=DAY_SPAN if OUT_OF_SPAN[label] else None)


@pytest.mark.parametrize("label", list(DAYS_OUT))
@pytest.mark.parametrize(("service", "path", "field"), DAY_PATHS)
async def test_a_day_outside_the_span_or_calendar_is_a_422_naming_it(
    env: Env, service: str, path: str, field: str, label: str
) -> None:
    async with env.client(service, env.keys.viewer) as c:
        r = await c.get(env.path(path, label=label))
    body = assert_problem(r, 422, "validation_failed")
    assert_names(body, field, message=DAY_SPAN if DAYS_OUT[label] else None)


@pytest.mark.parametrize(
    ("service", "path", "ok"),
    [
        ("scoring", "/v1/users/u1/days/2026-01-05", 404),  # u1 never seen (SPEC §9)
        ("scoring", "/v1/users/u1/months/2099-12", 404),
        ("scoring", "/v1/months/2000-01/active-users", 200),
        ("scoring", "/v1/groups/g-never-seen/months/2026-01", 404),  # no event names it
        ("rewards", "/v1/campaigns/{cid}/draws/r1/2026-01", 404),
        ("rewards", "/v1/grants?period=2026-01-05", 200),
        ("rewards", "/v1/campaigns/{cid}/report?from=2000-01-01&to=2099-12-31", 200),
    ],
)
async def test_a_period_inside_the_span_is_read(env: Env, service: str, path: str, ok: int) -> None:
    async with env.client(service, env.keys.viewer) as c:
        r = await c.get(env.path(path))
    assert r.status_code == ok, r.text


# ---------------------------------------------------------------------- admin time inputs

FAR = "9999-06-01T00:00:00Z"
WINDOWS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "ends-in-9999": ({"ends_at": FAR}, ["ends_at"]),
    "both-in-9999": (
        {"starts_at": "9999-01-01T00:00:00Z", "ends_at": FAR},
        ["starts_at", "ends_at"],
    ),
    "starts-in-1999": ({"starts_at": "1999-12-01T00:00:00Z"}, ["starts_at"]),
    "ends-at-the-exclusive-edge": ({"ends_at": "2099-12-31T00:00:00Z"}, ["ends_at"]),
    "local-2000-but-utc-1999": ({"starts_at": "2000-01-01T08:00:00+14:00"}, ["starts_at"]),
    "unix-timestamp-zero": ({"starts_at": 0}, ["starts_at"]),
}


@pytest.mark.parametrize("case", list(WINDOWS))
async def test_a_template_window_outside_the_span_is_a_422_naming_it(env: Env, case: str) -> None:
    change, fields = WINDOWS[case]
    start = datetime.now(UTC) + timedelta(days=1)
    body = {
        "template": "invite_friends",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=10)).isoformat(),
        **change,
    }
    async with env.client("rewards", env.keys.owner) as c:
        r = await c.post("/v1/campaigns", json=body)
    assert_names(assert_problem(r, 422, "validation_failed"), *fields, message=SPAN)


@pytest.mark.parametrize("case", list(WINDOWS))
async def test_a_definition_window_outside_the_span_is_a_422_naming_it(env: Env, case: str) -> None:
    change, fields = WINDOWS[case]
    definition = {**env.campaign["versions"][0]["definition"], **change}
    async with env.client("rewards", env.keys.owner) as c:
        created = await c.post("/v1/campaigns", json={"definition": definition})
        edited = await c.put(env.path("/v1/campaigns/{cid}/draft"), json=definition)
    named = [f"definition.{f}" for f in fields]
    assert_names(assert_problem(created, 422, "validation_failed"), *named, message=SPAN)
    assert_names(assert_problem(edited, 422, "validation_failed"), *fields, message=SPAN)


@pytest.mark.parametrize(
    ("simulation", "fields"),
    [
        ({"from": "1999-12-01", "to": "1999-12-31"}, ["from", "to"]),
        ({"from": "1999-12-31", "to": "2000-01-02"}, ["from"]),
        ({"from": "2099-12-01", "to": "2100-01-02"}, ["to"]),
        ({"from": "9999-12-01", "to": "9999-12-31"}, ["from", "to"]),
        ({"from": 0, "to": 0}, ["from", "to"]),
    ],
)
async def test_a_simulation_range_outside_the_span_is_a_422_naming_it(
    env: Env, simulation: dict[str, Any], fields: list[str]
) -> None:
    async with env.client("rewards", env.keys.viewer) as c:
        r = await c.post(env.path("/v1/campaigns/{cid}/versions/1:simulate"), json=simulation)
    assert_names(assert_problem(r, 422, "validation_failed"), *fields, message=DAY_SPAN)


@pytest.mark.parametrize(
    "segment",
    [
        {"kind": "top_groups", "month": "9999-12", "province": "BJ", "top": 3},
        {"kind": "active_users", "month": "1999-12", "min_activity_points": 1},
    ],
    ids=lambda s: s["kind"],
)
async def test_a_broadcast_segment_month_outside_the_span_is_a_422_naming_it(
    env: Env, segment: dict[str, Any]
) -> None:
    body = {"name": "far", "template": "notice", "category": "service", "segment": segment}
    async with env.client("notify", env.keys.owner) as c:
        r = await c.post("/v1/broadcasts", json=body)
    field = f"segment.{segment['kind']}.month"
    assert_names(assert_problem(r, 422, "validation_failed"), field, message=DAY_SPAN)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"name": "a" * 900_000}, "params.name"),  # the red team's 900,000 characters
        ({"n" * 65: "x"}, "params." + "n" * 65),
        ({f"p{i}": "x" for i in range(51)}, "params"),
    ],
    ids=["long text", "long name", "too many"],
)
async def test_broadcast_params_have_the_limits_of_a_send_request(
    env: Env, params: dict[str, str], field: str
) -> None:
    body = {"name": "big", "template": "notice", "category": "service", "params": params,
            "segment": {"kind": "list", "user_ids": ["u1"]}}  # fmt: skip
    async with env.client("notify", env.keys.owner) as c:
        r = await c.post("/v1/broadcasts", json=body)
    problem = assert_problem(r, 422, "validation_failed")
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem


# ------------------------------------------------------------------------------ methods


@pytest.mark.parametrize("service", ["scoring", "rewards", "notify"])
async def test_a_wrong_method_is_a_405_whose_allow_lists_every_method_of_the_path(
    env: Env, service: str
) -> None:
    """The OpenAPI document says which methods each path has; a method it lacks is a 405
    problem whose `Allow` names every method the path answers — all of the documented ones,
    whichever route of the path comes first (Starlette named only the first route's)."""
    async with env.client(service, env.keys.viewer) as c:
        doc = (await c.get("/openapi.json")).json()
        checked = 0
        for template, ops in doc["paths"].items():
            methods = {m.upper() for m in ops if m in ("get", "put", "post", "patch", "delete")}
            missing = sorted({"GET", "PUT", "POST", "PATCH", "DELETE"} - methods)
            if not missing:
                continue
            path = template
            for name in ("campaign_id", "broadcast_id", "grant_id", "version", "rule_id"):
                path = path.replace("{" + name + "}", "1")
            path = (
                path.replace("{period}", "2026-01")
                .replace("{month}", "2026-01")
                .replace("{day}", "2026-01-05")
                .replace("{province}", "BJ")
            )
            path = re.sub(r"\{[a-z_]+\}", "x1", path)
            # A method another template serves at this path (DELETE /profiles/{name} for
            # /profiles/x1:approve) is not a 405; the first one no route serves is.
            for method in missing:
                r = await c.request(method, path)
                if r.status_code == 405:
                    break
            body = assert_problem(r, 405, "method_not_allowed")
            allowed = {m.strip() for m in r.headers["allow"].split(",")}
            # Every documented method is allowed, and each allowed one is answered (not 405).
            assert methods <= allowed, (template, method, allowed, methods, body)
            for method in allowed - methods:  # another route's template also matches the path
                assert (await c.request(method, path)).status_code != 405, (template, method)
            checked += 1
    assert checked >= 5
