"""Who may call what (SPEC §7, §14, §15, README): every operation of every service's OpenAPI
document, called anonymously (401), with each role it does not admit (403) and with each it
admits (neither); every operation on an owned object, with each role it admits, from the
object's team (admitted), another team and no team (403 `other_team`) and admin (admitted);
every event type posted by every kind of caller (user tokens, relay, narrowed and platform
keys); and afterwards, no key secret, user token or phone number in any log."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from engage.progress import wait_keys_known
from engage.stack import ServiceProcess, Stack
from engage.tokens import LocalIssuer
from services.ingest.domain.authority import CLIENT_EVENT_TYPES, USER_TOKEN_EVENT_TYPES
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.templates import TEMPLATES
from shared.contract import EVENT_TYPES
from shared.db import make_engine
from tests.builders import make_event
from tests.integration.conftest import TEAMS, Keys, TeamKeys

READERS = frozenset({"viewer", "campaign_owner", "approver"})
OWNER = frozenset({"campaign_owner"})
APPROVER = frozenset({"approver"})
FULFILLER = frozenset({"fulfiller"})
PLATFORM = frozenset({"platform"})
ADMIN: frozenset[str] = frozenset()  # admin only (admin is admitted everywhere)
PUBLIC = {"/healthz", "/readyz"}

# The policy, written from the README's API sections — not read from the code.
POLICY: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    "ingest": {
        ("POST", "/v1/events"): frozenset({"ingest", "platform"}),
        ("POST", "/v1/events:import"): frozenset({"importer"}),
    },
    "scoring": {
        ("GET", "/v1/users/{user_id}/days/{day}"): frozenset({"viewer"}),
        ("GET", "/v1/users/{user_id}/months/{month}"): frozenset({"viewer"}),
        ("GET", "/v1/groups/{group_id}/months/{month}"): frozenset({"viewer"}),
        ("GET", "/v1/leaderboards/{month}/{province}"): frozenset({"viewer"}),
        ("GET", "/v1/groups/{group_id}/months/{month}/members"): frozenset({"viewer"}),
        ("GET", "/v1/months/{month}/active-users"): frozenset({"viewer"}),
        ("GET", "/v1/users/{user_id}/timeline"): frozenset({"viewer"}),
        ("GET", "/v1/stats/day/{day}"): frozenset({"viewer"}),
        ("GET", "/v1/stats/month/{month}"): frozenset({"viewer"}),
        ("GET", "/v1/profiles"): frozenset({"viewer"}),
        ("GET", "/v1/profiles/{name}"): frozenset({"viewer"}),
        ("PUT", "/v1/profiles/{name}"): ADMIN,
        ("POST", "/v1/profiles/{name}:approve"): APPROVER,
        ("POST", "/v1/profiles/{name}:reject"): APPROVER,
        ("DELETE", "/v1/profiles/{name}"): ADMIN,
    },
    "rewards": {
        ("GET", "/v1/templates"): READERS,
        ("POST", "/v1/campaigns"): OWNER,
        ("GET", "/v1/campaigns"): READERS,
        ("GET", "/v1/campaigns/{campaign_id}"): READERS,
        ("PUT", "/v1/campaigns/{campaign_id}/draft"): OWNER,
        ("POST", "/v1/campaigns/{campaign_id}/versions:fork"): OWNER,
        ("POST", "/v1/campaigns/{campaign_id}/versions/{version}:submit"): OWNER,
        ("POST", "/v1/campaigns/{campaign_id}/versions/{version}:approve"): APPROVER,
        ("POST", "/v1/campaigns/{campaign_id}/versions/{version}:reject"): APPROVER,
        ("POST", "/v1/campaigns/{campaign_id}:activate"): OWNER,
        ("POST", "/v1/campaigns/{campaign_id}:pause"): OWNER,
        ("POST", "/v1/campaigns/{campaign_id}:resume"): OWNER,
        ("POST", "/v1/campaigns/{campaign_id}:end"): OWNER,
        # The group's owner with their user token, or a platform key acting for them (§14).
        ("POST", "/v1/campaigns/{campaign_id}/enrollments"): PLATFORM,
        ("GET", "/v1/campaigns/{campaign_id}/enrollments"): READERS,
        ("GET", "/v1/campaigns/{campaign_id}/audit"): READERS,
        ("GET", "/v1/campaigns/{campaign_id}/draws"): READERS,
        ("GET", "/v1/campaigns/{campaign_id}/draws/{rule_id}/{period}"): READERS,
        ("GET", "/v1/campaigns/{campaign_id}/settlements"): READERS,
        ("GET", "/v1/campaigns/{campaign_id}/report"): READERS,
        ("GET", "/v1/campaigns/{campaign_id}/periods/{period}/held"): READERS,
        ("POST", "/v1/campaigns/{campaign_id}/periods/{period}:release"): APPROVER,
        ("POST", "/v1/campaigns/{campaign_id}/periods/{period}:exclude"): APPROVER,
        ("GET", "/v1/campaigns/{campaign_id}/exclusions"): READERS,
        ("PUT", "/v1/campaigns/{campaign_id}/exclusions"): APPROVER,
        ("POST", "/v1/campaigns/{campaign_id}/versions/{version}:simulate"): READERS,
        ("GET", "/v1/grants"): READERS,
        ("GET", "/v1/grants/{grant_id}"): READERS,
        ("POST", "/v1/grants/{grant_id}:revoke"): OWNER,
        ("POST", "/v1/grants/{grant_id}:fulfil"): FULFILLER,
        ("GET", "/v1/users/{user_id}/timeline"): READERS,
        ("POST", "/v1/settlements:run"): ADMIN,
    },
    "notify": {
        ("GET", "/v1/templates"): READERS,
        ("PUT", "/v1/templates/{name}/{channel}/{locale}"): OWNER,
        ("GET", "/v1/templates/{name}/{channel}/{locale}"): READERS,
        ("GET", "/v1/templates/{name}/{channel}/{locale}/versions"): READERS,
        ("POST", "/v1/templates/{name}/{channel}/{locale}/versions/{version}:approve"): APPROVER,
        ("POST", "/v1/templates/{name}/{channel}/{locale}/versions/{version}:reject"): APPROVER,
        ("GET", "/v1/policies"): READERS,
        ("PUT", "/v1/policies/{category}"): ADMIN,
        ("PUT", "/v1/users/{user_id}/opt-out"): ADMIN,
        ("DELETE", "/v1/users/{user_id}/opt-out"): ADMIN,
        ("GET", "/v1/users/{user_id}/notifications"): READERS,
        ("GET", "/v1/notifications/counts"): READERS,
        ("GET", "/v1/sandbox/messages"): READERS,
        ("POST", "/v1/broadcasts"): OWNER,
        ("GET", "/v1/broadcasts/{broadcast_id}"): READERS,
        ("GET", "/v1/broadcasts/{broadcast_id}/preview"): READERS,
        ("GET", "/v1/broadcasts/{broadcast_id}/recipients"): READERS,
        ("GET", "/v1/users/{user_id}/timeline"): READERS,
        ("POST", "/v1/notifications/{notification_id}:resend"): ADMIN,
        ("POST", "/v1/broadcasts/{broadcast_id}:approve"): APPROVER,
        ("POST", "/v1/broadcasts/{broadcast_id}:cancel"): OWNER,
    },
}
# A phone number in a path: it must reach no log in clear.
PHONE = "13812345678"


@pytest.fixture(scope="module")
async def services(
    stack: Stack, ingest: ServiceProcess, rewards: ServiceProcess, keys: Keys, team_keys: TeamKeys
) -> AsyncIterator[dict[str, ServiceProcess]]:
    scoring = stack.start_service("scoring", instance="-authz", env={"SCORING_CONSUME": "false"})
    notify = stack.start_service(
        "notify",
        instance="-authz",
        env={"NOTIFY_SCHEMA_NAME": "notify_authz", "NOTIFY_CONSUME": "false"},
    )
    running = {"ingest": ingest, "scoring": scoring, "rewards": rewards, "notify": notify}
    # Keys reach a service on engage.keys.v1 shortly after they are issued: wait for them all
    # (any key with any role answers something other than 401 once it is known).
    probe = {"ingest": "/v1/events", "scoring": "/v1/profiles", "rewards": "/v1/templates"}
    every_key = [*vars(keys).values(), *(k for t in team_keys.values() for k in t.values())]
    for name, process in running.items():
        path = probe.get(name, "/v1/policies")
        await wait_keys_known(process.url, path, every_key)
    try:
        yield running
    finally:
        scoring.stop()
        notify.stop()


def role_keys(keys: Keys) -> dict[str, str]:
    return {
        "ingest": keys.ingest,
        "importer": keys.importer,
        "viewer": keys.viewer,
        "campaign_owner": keys.owner,
        "approver": keys.approver,
        "fulfiller": keys.fulfiller,
        "platform": keys.platform,
        "admin": keys.admin,
    }


def concrete(path: str) -> str:
    """Fill every path parameter (the values do not matter: access is decided first)."""
    return re.sub(r"\{(\w+)\}", lambda m: PHONE if m[1] == "user_id" else "x1", path)


def call(client: httpx.Client, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: dict[str, object] | None = {} if method in {"POST", "PUT"} else None
    return client.request(method, concrete(path), json=body, headers=headers)


@pytest.mark.parametrize("service", list(POLICY))
def test_the_policy_covers_every_operation_in_the_document(
    services: dict[str, ServiceProcess], service: str
) -> None:
    doc = httpx.get(f"{services[service].url}/openapi.json", timeout=30).json()
    documented = {
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if path not in PUBLIC
    }
    assert documented == set(POLICY[service])


@pytest.mark.parametrize("service", list(POLICY))
def test_every_operation_admits_exactly_the_roles_it_should(
    services: dict[str, ServiceProcess], keys: Keys, service: str
) -> None:
    by_role = role_keys(keys)
    wrong: list[str] = []
    calls = 0
    with httpx.Client(base_url=services[service].url, timeout=30) as client:
        for (method, path), admitted in POLICY[service].items():
            anonymous = call(client, method, path, None)
            calls += 1
            if anonymous.status_code != 401 or not anonymous.headers["content-type"].startswith(
                "application/problem+json"
            ):
                wrong.append(f"{method} {path} anonymous → {anonymous.status_code}")
            for role, key in by_role.items():
                got = call(client, method, path, key).status_code
                calls += 1
                allowed = role in admitted or role == "admin"
                if allowed and got in (401, 403):
                    wrong.append(f"{method} {path} as {role} → {got} (should be admitted)")
                if not allowed and got != 403:
                    wrong.append(f"{method} {path} as {role} → {got} (should be 403)")
                if got >= 500:
                    wrong.append(f"{method} {path} as {role} → {got}")
    callers = len(by_role) + 1
    print(f"{service}: {calls} calls over {len(POLICY[service])} operations × {callers} callers")
    assert wrong == []


# The object dimension (SPEC §15): each operation that names an owned object in its path, with
# each role the POLICY admits for it, on an object of team north: a key of north passes (what
# follows — 200, 404, 409, 422 — is not a refusal), a key of south or of no team gets 403
# `other_team`, and admin passes. To add a service, list its kinds of object in OWNED.

PathParams = dict[str, str]


@dataclass(frozen=True)
class Owned:
    """One kind of owned object. `make` creates one for `team` through a client carrying the
    team's campaign-owner key (and the stack's database URL, for what no API makes on demand)
    and returns its path parameters; `operations` are every operation naming it in the path,
    with a valid body where one is taken (a body that fails validation is refused before the
    team is looked at)."""

    what: str
    make: Callable[[httpx.Client, str, str], PathParams]
    operations: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)


TEMPLATE_BODY = {"category": "marketing", "text": "Hi {name}", "placeholders": ["name"]}


def put_template(client: httpx.Client, name: str) -> httpx.Response:
    r = client.put(f"/v1/templates/{name}/im/en", json=TEMPLATE_BODY)
    assert r.status_code in (200, 202), r.text
    return r


def post_broadcast(client: httpx.Client, template: str) -> int:
    body = {"name": "authz", "template": template, "category": "marketing", "locale": "en",
            "params": {"name": "friend"},
            "segment": {"kind": "list", "user_ids": ["authz.u1"]}}  # fmt: skip
    r = client.post("/v1/broadcasts", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["team"] is not None
    return int(r.json()["broadcast_id"])


def make_broadcast(client: httpx.Client, team: str, _database_url: str) -> PathParams:
    """A pending broadcast of `team`, sending its own template."""
    put_template(client, f"authz_b_{team}")
    return {"broadcast_id": str(post_broadcast(client, f"authz_b_{team}"))}


def make_template(client: httpx.Client, team: str, _database_url: str) -> PathParams:
    """A template of `team` with a pending version: a broadcast still uses it."""
    name = f"authz_t_{team}"
    put_template(client, name)
    post_broadcast(client, name)
    pending = put_template(client, name)
    assert pending.json()["status"] == "pending", pending.text
    version = str(pending.json()["version"])
    return {"name": name, "channel": "im", "locale": "en", "version": version}


# A rewards campaign of January 2030: version 1 a draft, its one rule `chief-credit` monthly.
WINDOW = {"starts_at": "2030-01-01T00:00:00+08:00", "ends_at": "2030-02-01T00:00:00+08:00"}
DRAFT = CampaignDefinition.model_validate(
    TEMPLATES["tribe_chief"](*(datetime.fromisoformat(WINDOW[k]) for k in ("starts_at", "ends_at")))
).model_dump(mode="json")


def make_campaign(client: httpx.Client, team: str, _database_url: str) -> PathParams:
    """A draft campaign of `team`, with its first version, rule and period."""
    r = client.post("/v1/campaigns", json={"template": "tribe_chief", **WINDOW})
    assert r.status_code == 201, r.text
    assert r.json()["team"] == team
    return {"campaign_id": r.json()["campaign_id"], "version": "1", "rule_id": "chief-credit",
            "period": "2030-01"}  # fmt: skip


def make_grant(client: httpx.Client, team: str, database_url: str) -> PathParams:
    """A granted grant of a campaign of `team`, written straight into rewards' ledger: settling
    one needs a month of metrics, and what is tested here is only whose it is."""
    campaign_id = make_campaign(client, team, database_url)["campaign_id"]

    async def insert() -> int:
        engine = make_engine(database_url, "rewards", pool_size=1)
        try:
            async with engine.begin() as conn:
                return int(
                    await conn.scalar(
                        text(
                            "INSERT INTO grants (campaign_id, version, rule_id, role, user_id, "
                            "period, status, items, fulfil_by, explanation, fulfilment_status) "
                            "VALUES (:c, 1, 'chief-credit', 'owner', 'authz.u1', '2030-01', "
                            '\'granted\', \'[{"kind": "credit_fen", "amount": 100}]\', '
                            "'2030-02-15', '{}', 'pending') RETURNING grant_id"
                        ),
                        {"c": campaign_id},
                    )
                )
        finally:
            await engine.dispose()

    # This test is synchronous, its event loop idle: the insert runs on a loop of its own.
    with ThreadPoolExecutor(1) as pool:
        grant_id = pool.submit(asyncio.run, insert()).result()
    r = client.get(f"/v1/grants/{grant_id}")
    assert r.status_code == 200 and r.json()["campaign_id"] == campaign_id, r.text
    return {"grant_id": str(grant_id)}


TEMPLATE = "/v1/templates/{name}/{channel}/{locale}"
BROADCAST = "/v1/broadcasts/{broadcast_id}"
CAMPAIGN = "/v1/campaigns/{campaign_id}"
VERSION = f"{CAMPAIGN}/versions/{{version}}"
PERIOD = f"{CAMPAIGN}/periods/{{period}}"
LISTS = {"user_ids": ["authz.u9"], "group_ids": [], "reason": "matrix"}
OWNED: dict[str, list[Owned]] = {
    "rewards": [
        # In this order on one campaign: the team's keys and admin pass each in turn, so the
        # lists are set before admin authors a version (an author may not keep them), and each
        # step of the lifecycle finds the state the step before left.
        Owned("campaign", make_campaign, {
            ("GET", CAMPAIGN): None,
            ("GET", f"{CAMPAIGN}/exclusions"): None,
            ("PUT", f"{CAMPAIGN}/exclusions"): LISTS,
            ("GET", f"{CAMPAIGN}/enrollments"): None,
            ("GET", f"{CAMPAIGN}/audit"): None,
            ("GET", f"{CAMPAIGN}/draws"): None,
            ("GET", f"{CAMPAIGN}/draws/{{rule_id}}/{{period}}"): None,
            ("GET", f"{CAMPAIGN}/settlements"): None,
            ("GET", f"{CAMPAIGN}/report"): None,
            ("GET", f"{PERIOD}/held"): None,
            ("POST", f"{PERIOD}:release"): None,
            ("POST", f"{PERIOD}:exclude"): LISTS,
            ("POST", f"{VERSION}:simulate"): {"from": "2030-01-01", "to": "2030-01-31"},
            ("POST", f"{VERSION}:submit"): None,
            ("POST", f"{VERSION}:reject"): None,
            ("POST", f"{VERSION}:approve"): None,
            ("POST", f"{CAMPAIGN}:activate"): None,
            ("POST", f"{CAMPAIGN}:pause"): None,
            ("POST", f"{CAMPAIGN}:resume"): None,
            ("POST", f"{CAMPAIGN}:end"): None,
            ("PUT", f"{CAMPAIGN}/draft"): DRAFT,
            ("POST", f"{CAMPAIGN}/versions:fork"): {"from_version": 1},
        }),
        Owned("grant", make_grant, {
            ("GET", "/v1/grants/{grant_id}"): None,
            ("POST", "/v1/grants/{grant_id}:revoke"): {"reason": "matrix"},
        }),
    ],
    "notify": [
        Owned("broadcast", make_broadcast, {
            ("GET", BROADCAST): None,
            ("GET", f"{BROADCAST}/preview"): None,
            ("GET", f"{BROADCAST}/recipients"): None,
            ("POST", f"{BROADCAST}:approve"): None,
            ("POST", f"{BROADCAST}:cancel"): None,
        }),
        Owned("template", make_template, {
            ("GET", TEMPLATE): None,
            ("GET", f"{TEMPLATE}/versions"): None,
            ("PUT", TEMPLATE): TEMPLATE_BODY,
            ("POST", f"{TEMPLATE}/versions/{{version}}:approve"): None,
            ("POST", f"{TEMPLATE}/versions/{{version}}:reject"): None,
        }),
    ],
}  # fmt: skip
# Operations with a path id that name no team's object, and why.
UNOWNED: dict[str, dict[tuple[str, str], str]] = {
    "rewards": {
        ("POST", f"{CAMPAIGN}/enrollments"): "the group owner's token or a platform key, acting "
        "for a user: enrolling is the group's choice, not the campaign team's (SPEC §14)",
        ("POST", "/v1/grants/{grant_id}:fulfil"): "fulfilment systems credit every team's rewards",
        ("GET", "/v1/users/{user_id}/timeline"): "the care view: a user's grants, of every team",
    },
    "notify": {
        ("PUT", "/v1/policies/{category}"): "admin only: policies are global",
        ("PUT", "/v1/users/{user_id}/opt-out"): "admin only: a user, not a team's object",
        ("DELETE", "/v1/users/{user_id}/opt-out"): "admin only: a user, not a team's object",
        ("GET", "/v1/users/{user_id}/notifications"): "a user's notices, of every team",
        ("GET", "/v1/users/{user_id}/timeline"): "a user's notices, of every team",
        ("POST", "/v1/notifications/{notification_id}:resend"): "admin only",
    },
}


@pytest.mark.parametrize("service", list(OWNED))
def test_every_operation_with_a_path_id_is_owned_or_says_why_not(service: str) -> None:
    with_id = {op for op in POLICY[service] if "{" in op[1]}
    owned = [op for kind in OWNED[service] for op in kind.operations]
    assert len(owned) == len(set(owned))
    assert set(owned).isdisjoint(UNOWNED[service])
    assert with_id == set(owned) | set(UNOWNED[service])


def other_team(r: httpx.Response) -> bool:
    return (
        r.status_code == 403
        and r.headers["content-type"].startswith("application/problem+json")
        and r.json()["code"] == "other_team"
    )


@pytest.mark.parametrize("service", list(OWNED))
def test_every_operation_on_an_object_admits_its_team_and_admin_only(
    services: dict[str, ServiceProcess], stack: Stack, keys: Keys, team_keys: TeamKeys, service: str
) -> None:
    assert stack.database_url
    own, other = TEAMS
    no_team = role_keys(keys)  # the session's keys have no team
    wrong: list[str] = []
    calls = 0
    with httpx.Client(base_url=services[service].url, timeout=30) as client:
        for kind in OWNED[service]:
            owner = {"Authorization": f"Bearer {team_keys[own]['campaign_owner']}"}
            with httpx.Client(base_url=services[service].url, timeout=30, headers=owner) as c:
                params = kind.make(c, own, stack.database_url)
            for (method, path), body in kind.operations.items():
                url = path.format(**params)
                callers = [
                    (f"{team} {role}", keys_by_role[role], team == own)
                    for role in sorted(POLICY[service][(method, path)])
                    for team, keys_by_role in ((other, team_keys[other]), ("no team", no_team),
                                               (own, team_keys[own]))
                ] + [("admin", keys.admin, True)]  # fmt: skip
                for caller, key, admitted in callers:
                    r = client.request(
                        method, url, json=body, headers={"Authorization": f"Bearer {key}"}
                    )
                    calls += 1
                    if admitted and (r.status_code in (401, 403) or r.status_code >= 500):
                        wrong.append(f"{method} {url} as {caller} → {r.status_code} {r.text}")
                    if not admitted and not other_team(r):
                        wrong.append(f"{method} {url} as {caller} → {r.status_code}, not 403 "
                                     f"other_team")  # fmt: skip
    print(f"{service}: {calls} calls on owned objects")
    assert wrong == []


def test_an_unknown_or_malformed_key_is_401_everywhere(
    services: dict[str, ServiceProcess], keys: Keys
) -> None:
    forged = keys.admin[:-6] + "AAAAAA"
    for service, process in services.items():
        with httpx.Client(base_url=process.url, timeout=30) as client:
            (method, path) = next(iter(POLICY[service]))
            for key in (forged, "not-a-key", "eng_00000000_x", "Bearer"):
                assert call(client, method, path, key).status_code == 401, (service, key)


def test_no_key_secret_or_phone_number_reaches_any_log(
    services: dict[str, ServiceProcess], keys: Keys, stack: Stack
) -> None:
    """After every key has been used against every service above (and the session's other
    tests): the logs show key prefixes and masked numbers only."""
    secrets = {k: v for k, v in vars(keys).items() if v}
    secrets |= {f"token of {u}": stack.user_token(u) for u in ("matrix.u1", "matrix.u2")}
    logs = sorted(Path(stack.var_dir, "logs").glob("*.log"))
    assert len(logs) >= 5
    phone = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
    leaks = []
    for log in logs:
        text = log.read_text(errors="replace")
        leaks += [f"{log.name}: key {name}" for name, secret in secrets.items() if secret in text]
        leaks += [f"{log.name}: phone {m[0]}" for m in phone.finditer(text)]
    assert leaks == []


def writes(service: ServiceProcess) -> list[tuple[str, str, bool]]:
    """(method, path, whether it takes a body) of every POST and PUT in the document."""
    doc = httpx.get(f"{service.url}/openapi.json", timeout=30).json()
    return [
        (method.upper(), path, "requestBody" in op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in {"post", "put"}
    ]


@pytest.mark.parametrize("service", list(POLICY))
def test_hostile_bodies_get_a_4xx_problem_never_a_5xx(
    services: dict[str, ServiceProcess], keys: Keys, service: str
) -> None:
    """Oversized (413 everywhere, before any route reads it), deeply nested, not JSON, wrong
    content type: a 4xx problem from every write that takes a body; never a 5xx from those
    that take none (they ignore it)."""
    deep = "[" * 100_000 + "]" * 100_000
    bodies = {
        "oversized": (b'{"x": "' + b"a" * (6 * 1024 * 1024) + b'"}', "application/json", 413),
        "deeply nested": (deep.encode(), "application/json", None),
        "nested object": (('{"a":' * 5000 + "1" + "}" * 5000).encode(), "application/json", None),
        "not json": (b"{not json", "application/json", None),
        "wrong type": (b"<xml/>", "application/xml", None),
    }
    wrong = []
    headers = {"Authorization": f"Bearer {keys.admin}"}
    with httpx.Client(base_url=services[service].url, timeout=60) as client:
        for method, path, takes_body in writes(services[service]):
            for name, (body, content_type, expected) in bodies.items():
                r = client.request(
                    method,
                    concrete(path),
                    content=body,
                    headers={**headers, "Content-Type": content_type},
                )
                problem = 400 <= r.status_code < 500 and r.headers.get(
                    "content-type", ""
                ).startswith("application/problem+json")
                if expected and r.status_code != expected:
                    wrong.append(f"{method} {path} {name} → {r.status_code}, not {expected}")
                elif (takes_body and not problem) or r.status_code >= 500:
                    wrong.append(f"{method} {path} {name} → {r.status_code}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("service", ["scoring", "rewards", "notify"])
def test_a_streamed_body_without_length_is_cut_off_at_the_limit(
    services: dict[str, ServiceProcess], keys: Keys, service: str
) -> None:
    method, path, _ = next(w for w in writes(services[service]) if w[2])

    def chunks() -> Iterator[bytes]:
        yield b'{"x": "'
        for _ in range(64):  # 4 MiB in all, more than the 1 MiB limit
            yield b"a" * 65536
        yield b'"}'

    with httpx.Client(base_url=services[service].url, timeout=60) as client:
        r = client.request(
            method,
            concrete(path),
            content=chunks(),
            headers={"Authorization": f"Bearer {keys.admin}", "Content-Type": "application/json"},
        )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")


def post_event(client: httpx.Client, kind: str, credential: str) -> tuple[int, str | None]:
    """Post one `kind` event for user matrix.u1; (status, the rejection code if any)."""
    r = client.post(
        "/v1/events",
        json=make_event(kind, user_id="matrix.u1"),
        headers={"Authorization": f"Bearer {credential}"},
    )
    rejected = r.json()["rejected"] if r.status_code in (202, 422) else []
    return r.status_code, rejected[0]["code"] if rejected else None


def test_every_event_type_by_every_kind_of_caller(
    services: dict[str, ServiceProcess], keys: Keys, stack: Stack
) -> None:
    """SPEC §14: a user token posts its own user's client events (and dissolutions; scoring
    checks ownership), a relay key client types, a narrowed key its types, a platform key all."""
    own, other = stack.user_token("matrix.u1"), stack.user_token("matrix.u2")
    accepted: tuple[int, str | None] = (202, None)
    not_allowed: tuple[int, str | None] = (422, "type_not_allowed")
    expected: dict[str, tuple[str, dict[str, tuple[int, str | None]]]] = {
        kind: (
            kind,
            {
                "own user token": accepted if kind in USER_TOKEN_EVENT_TYPES else not_allowed,
                "other user's token": (422, "user_mismatch")
                if kind in USER_TOKEN_EVENT_TYPES
                else not_allowed,
                "relay key": accepted if kind in CLIENT_EVENT_TYPES else not_allowed,
                "narrowed key": accepted if kind in ("points", "message") else not_allowed,
                "platform key": accepted,
            },
        )
        for kind in EVENT_TYPES
    }
    credentials = {
        "own user token": own,
        "other user's token": other,
        "relay key": keys.ingest,
        "narrowed key": keys.narrowed,
        "platform key": keys.platform,
    }
    wrong = []
    with httpx.Client(base_url=services["ingest"].url, timeout=30) as client:
        for kind, (_, by_caller) in expected.items():
            for caller, want in by_caller.items():
                got = post_event(client, kind, credentials[caller])
                if got != want:
                    wrong.append(f"{kind} by {caller} → {got}, not {want}")
    print(f"{len(EVENT_TYPES)} types × {len(credentials)} callers")
    assert wrong == []


def test_expired_and_wrongly_signed_tokens_are_401_problems_everywhere(
    services: dict[str, ServiceProcess], stack: Stack, tmp_path: Path
) -> None:
    issuer = stack.user_token_issuer()
    stranger = LocalIssuer.open(tmp_path / "stranger")
    bad = {
        "expired": issuer.mint("matrix.u1", ttl_s=60, now=0),
        "wrongly signed": stranger.mint("matrix.u1"),
        "not a jwt": "abc.def.ghi",
    }
    for service, process in services.items():
        with httpx.Client(base_url=process.url, timeout=30) as client:
            for method, path in POLICY[service]:
                for name, token in bad.items():
                    r = call(client, method, path, token)
                    assert r.status_code == 401, (service, method, path, name, r.text)
                    assert r.headers["content-type"].startswith("application/problem+json")
                    assert token not in r.text


def test_a_valid_user_token_is_403_where_only_keys_are_admitted(
    services: dict[str, ServiceProcess], stack: Stack
) -> None:
    token = stack.user_token("matrix.u1")
    user_routes = {("POST", "/v1/events"), ("POST", "/v1/campaigns/{campaign_id}/enrollments")}
    wrong = []
    for service, process in services.items():
        with httpx.Client(base_url=process.url, timeout=30) as client:
            for method, path in POLICY[service]:
                got = call(client, method, path, token).status_code
                if (method, path) in user_routes and got in (401, 403):
                    wrong.append(f"{method} {path} → {got} (should be admitted)")
                if (method, path) not in user_routes and got != 403:
                    wrong.append(f"{method} {path} → {got} (should be 403)")
    assert wrong == []


async def test_only_the_groups_owner_enrolls_it(
    services: dict[str, ServiceProcess], keys: Keys, stack: Stack
) -> None:
    """SPEC §14: the owner's token (201) — not another user's (403), nor a campaign owner's
    key (403); a platform key acting for the owner names the right owner (else 422)."""
    assert stack.database_url
    engine = make_engine(stack.database_url, "rewards", pool_size=1)
    try:
        async with engine.begin() as conn:
            for group, owner in (("authz.g1", "owner.u1"), ("authz.g2", "owner.u1")):
                await conn.execute(
                    text(
                        "INSERT INTO group_month (group_id, month, metrics, owner_id) "
                        "VALUES (:g, date_trunc('month', now())::date, '{}', :o) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    {"g": group, "o": owner},
                )
    finally:
        await engine.dispose()
    rewards = services["rewards"]
    async with httpx.AsyncClient(base_url=rewards.url, timeout=30) as c:
        r = await c.post(
            "/v1/campaigns",
            json={
                "template": "tribe_chief",
                "starts_at": "2030-01-01T00:00:00+08:00",
                "ends_at": "2030-02-01T00:00:00+08:00",
            },
            headers={"Authorization": f"Bearer {keys.owner}"},
        )
        assert r.status_code == 201, r.text
        path = f"/v1/campaigns/{r.json()['campaign_id']}/enrollments"

        async def enroll(credential: str, group: str, owner: str = "owner.u1") -> httpx.Response:
            return await c.post(
                path,
                json={"group_id": group, "owner_id": owner},
                headers={"Authorization": f"Bearer {credential}"},
            )

        stranger = await enroll(stack.user_token("hijacker.u9"), "authz.g1")
        assert stranger.status_code == 403, stranger.text
        assert stranger.headers["content-type"].startswith("application/problem+json")
        assert stranger.json()["code"] == "not_group_owner"
        assert (await enroll(keys.owner, "authz.g1")).status_code == 403
        owned = await enroll(stack.user_token("owner.u1"), "authz.g1")
        assert owned.status_code == 201, owned.text
        assert owned.json()["enrolled_by"] == "user:owner.u1"
        assert (await enroll(keys.platform, "authz.g2", owner="hijacker.u9")).status_code == 422
        assert (await enroll(keys.platform, "authz.g2")).status_code == 201
