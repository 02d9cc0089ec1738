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
