"""The one transaction boundary of a write request (shared/api_deps.py): it commits before the
response leaves, so a commit that fails is the client's error, never a 2xx for lost work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from engage.stack import Stack
from shared.api_deps import UnitOfWork
from shared.db import make_engine, make_sessionmaker
from shared.http import create_service_app

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def app(stack: Stack) -> AsyncIterator[FastAPI]:
    assert stack.database_url
    engine = make_engine(stack.database_url, "public", pool_size=1)
    app = create_service_app(
        service="uow-test", title="t", description="t", version="1", lifespan=None, readiness=[]
    )
    app.state.sessions = make_sessionmaker(engine)

    @app.post("/fails-at-commit")
    async def fails_at_commit(session: UnitOfWork) -> dict[str, str]:
        # A deferred unique constraint is checked only at COMMIT: the route itself succeeds.
        await session.execute(
            text(
                "CREATE TEMP TABLE uow (x int UNIQUE DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP"
            )
        )
        await session.execute(text("INSERT INTO uow VALUES (1), (1)"))
        return {"status": "written"}

    yield app
    await engine.dispose()


async def test_a_commit_that_fails_is_an_error_response_not_a_2xx(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.post("/fails-at-commit")
    assert r.status_code == 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
