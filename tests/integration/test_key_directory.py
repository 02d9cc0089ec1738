"""Services that do not own keys learn them from engage.keys.v1 — even keys issued after they
started, on a broker where the topic did not exist yet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engage.stack import Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.key_directory import KeyDirectory
from tests.cli import run_engage

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def bare_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(var_dir=Path(tmp_path_factory.mktemp("keys")), fixed_ports=False).start_infra()
    try:
        yield stack
    finally:
        stack.stop()


async def test_a_key_issued_after_start_is_accepted_within_seconds(bare_stack: Stack) -> None:
    scoring = bare_stack.start_service("scoring")  # no ingest: nobody has created the topic yet
    assert bare_stack.database_url and bare_stack.kafka_bootstrap
    async with httpx.AsyncClient(base_url=scoring.url) as client:
        key = (
            await issue_api_key(
                bare_stack.database_url, "late", [Role.VIEWER], 10, bare_stack.kafka_bootstrap
            )
        ).secret
        headers = {"Authorization": f"Bearer {key}"}
        deadline = asyncio.get_running_loop().time() + 15
        while (r := await client.get("/v1/profiles", headers=headers)).status_code == 401:
            assert asyncio.get_running_loop().time() < deadline, "key never reached scoring"
            await asyncio.sleep(0.2)
        assert r.status_code == 200
        wrong = {"Authorization": f"Bearer {key[:-4]}xxxx"}
        assert (await client.get("/v1/profiles", headers=wrong)).status_code == 401


async def _cli(stack: Stack, *args: str) -> tuple[int, str]:
    env = {
        "INGEST_DATABASE_URL": stack.database_url or "",
        "ENGAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap or "",
    }
    return await run_engage("keys", *args, env=env)


async def test_key_rotation_with_the_cli_new_key_works_revoked_key_is_refused(
    bare_stack: Stack,
) -> None:
    """docs/operations.md, "Rotating API keys": create the new key, then revoke the old."""
    rewards = bare_stack.start_service("rewards")
    code, out = await _cli(bare_stack, "create", "--name", "old", "--role", "viewer")
    assert code == 0, out
    old_id, old_secret = out.split()[2], out.split()[4]
    code, out = await _cli(bare_stack, "create", "--name", "new", "--role", "viewer")
    assert code == 0, out
    new_secret = out.split()[4]
    async with httpx.AsyncClient(base_url=rewards.url) as client:

        async def status(secret: str) -> int:
            r = await client.get("/v1/templates", headers={"Authorization": f"Bearer {secret}"})
            return r.status_code

        async def until(secret: str, expected: int) -> None:
            deadline = asyncio.get_running_loop().time() + 15
            while (got := await status(secret)) != expected:
                assert asyncio.get_running_loop().time() < deadline, (expected, got)
                await asyncio.sleep(0.2)

        await until(old_secret, 200)
        await until(new_secret, 200)
        code, out = await _cli(bare_stack, "revoke", old_id)
        assert code == 0 and f"revoked {old_id}" in out, out
        await until(old_secret, 401)
        assert await status(new_secret) == 200
    code, out = await _cli(bare_stack, "revoke", old_id)
    assert code == 1 and "no active key" in out
    code, out = await _cli(bare_stack, "list")
    assert code == 0
    listed = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert listed[old_id] == "revoked"
    assert old_secret not in out and new_secret not in out


async def test_a_key_created_for_a_team_carries_it_to_every_service(bare_stack: Stack) -> None:
    """`engage keys create --team` (issue 18): the team is listed, travels on engage.keys.v1,
    and a bad team name is refused with the rule in words."""
    code, out = await _cli(
        bare_stack, "create", "--name", "north", "--role", "campaign_owner", "--team", "north"
    )
    assert code == 0 and "team   north" in out, out
    key_id = out.split()[2]
    code, out = await _cli(bare_stack, "list")
    assert code == 0 and any(
        line.startswith(key_id) and line.endswith("team=north") for line in out.splitlines()
    ), out
    assert bare_stack.kafka_bootstrap
    directory = KeyDirectory(bare_stack.kafka_bootstrap)
    await directory.start()
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while not any(p.key_id == key_id for _, p in await directory.principals()):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
        (principal,) = [p for _, p in await directory.principals() if p.key_id == key_id]
        assert principal.team == "north"
    finally:
        await directory.stop()
    code, out = await _cli(
        bare_stack, "create", "--name", "x", "--role", "viewer", "--team", "north pole!"
    )
    assert code == 2 and "a team name is 1–64 letters" in out, out
