"""Typed dependencies every service API shares: sessions, the unit of work, the time zone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, Path, Query, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def _bounded(request: Request, session: AsyncSession) -> None:
    """No statement of this request's transaction runs longer than the service allows (a
    request must not keep a connection busy after its client gave up)."""
    ms = getattr(request.app.state, "statement_timeout_ms", None)
    if ms:
        await session.execute(text(f"SET LOCAL statement_timeout = {int(ms)}"))


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        await _bounded(request, session)
        yield session


async def _session_in_transaction(request: Request) -> AsyncIterator[AsyncSession]:
    """The one place a write request commits (or rolls back, on any error)."""
    async with request.app.state.sessions() as session, session.begin():
        await _bounded(request, session)
        yield session


def _tz(request: Request) -> ZoneInfo:
    tz: ZoneInfo = request.app.state.tz
    return tz


# scope="function": the session closes, and the unit of work commits, before the response is
# sent — with FastAPI's default for `yield` dependencies the commit ran after the client already
# had its 2xx, so a failed commit was never reported and a client's next read could miss the row.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
UnitOfWork = Annotated[AsyncSession, Depends(_session_in_transaction, scope="function")]
TimeZone = Annotated[ZoneInfo, Depends(_tz)]


# Ids in paths and queries: the event contract's charset (SPEC §3), one definition for every API.
ID_PATTERN = r"^[A-Za-z0-9_.:@+\-]{1,64}$"
UserIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="The user's id")]
GroupIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="The group's id")]
UserIdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, description="Only this user")]
