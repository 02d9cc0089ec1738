"""A real stack for integration tests: embedded broker + PostgreSQL + services as processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engage.stack import ServiceProcess, Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.db import make_engine, make_sessionmaker, migrate


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from own_stack(tmp_path_factory, "var")


@asynccontextmanager
async def migrated_sessions(
    stack: Stack, migrations: Path, schema: str, pool_size: int = 10
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a service's schema of the stack's database, migrated first (a use case run
    in-process, no service started); the engine is disposed after."""
    assert stack.database_url
    engine = make_engine(stack.database_url, schema, pool_size=pool_size)
    try:
        await migrate(engine, migrations, schema, MetaData())
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


def own_stack(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Stack]:
    """Broker and PostgreSQL of their own: for tests whose records must stay off the shared
    topics, which other tests' deployments read from the start."""
    stack = Stack(var_dir=Path(tmp_path_factory.mktemp(name)), fixed_ports=False).start_infra()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def ingest(stack: Stack) -> ServiceProcess:
    return stack.start_service("ingest", env={"INGEST_BROKER_ACK_TIMEOUT_S": "2"})


@dataclass(frozen=True)
class Keys:
    ingest: str
    importer: str
    viewer: str
    admin: str
    slow: str  # ingest role, 1 event/s
    owner: str  # campaign_owner
    approver: str
    owner_approver: str  # both roles: may write drafts and approve others' versions
    fulfiller: str = ""  # reports grants fulfilled (SPEC §11)
    platform: str = ""  # the IM platform's servers: every event type (SPEC §14)
    narrowed: str = ""  # platform role narrowed to `points` and `message` only


@pytest.fixture(scope="session")
async def keys(stack: Stack) -> Keys:
    return await issue_keys(stack)


async def issue_keys(stack: Stack) -> Keys:
    """One key per role (and a throttled one) on `stack`."""
    url = stack.database_url
    assert url is not None

    async def issue(
        name: str, roles: list[Role], rate: float = 1e6, types: list[str] | None = None
    ) -> str:
        return (await issue_api_key(url, name, roles, rate, stack.kafka_bootstrap, types)).secret

    return Keys(
        ingest=await issue("client-app", [Role.INGEST]),
        importer=await issue("backfill", [Role.IMPORTER]),
        viewer=await issue("dashboard", [Role.VIEWER]),
        admin=await issue("ops", [Role.ADMIN]),
        slow=await issue("throttled", [Role.INGEST], rate=1),
        owner=await issue("marketing", [Role.CAMPAIGN_OWNER]),
        approver=await issue("manager", [Role.APPROVER]),
        owner_approver=await issue("lead", [Role.CAMPAIGN_OWNER, Role.APPROVER]),
        fulfiller=await issue("crediting", [Role.FULFILLER]),
        platform=await issue("im-platform", [Role.PLATFORM]),
        narrowed=await issue("points-feed", [Role.PLATFORM], types=["points", "message"]),
    )


# Two teams, each with a key per role that works on objects (SPEC §15, issue 18).
TEAMS = ("north", "south")
TEAM_ROLES = (Role.VIEWER, Role.CAMPAIGN_OWNER, Role.APPROVER)
TeamKeys = dict[str, dict[str, str]]  # team → role → secret


@pytest.fixture(scope="session")
async def team_keys(stack: Stack) -> TeamKeys:
    """A key per role of `TEAM_ROLES` for each of `TEAMS`."""
    url = stack.database_url
    assert url is not None
    found: TeamKeys = {}
    for team in TEAMS:
        for role in TEAM_ROLES:
            issued = await issue_api_key(
                url, f"{team}-{role}", [role], 1e6, stack.kafka_bootstrap, team=team
            )
            found.setdefault(team, {})[str(role)] = issued.secret
    return found


@pytest.fixture(scope="session")
def rewards(stack: Stack) -> ServiceProcess:
    """Rewards with settlement only on demand (POST /v1/settlements:run)."""
    return stack.start_service("rewards", env={"REWARDS_SETTLE_INTERVAL_S": "0"})


@pytest.fixture
async def client(ingest: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as c:
        yield c
