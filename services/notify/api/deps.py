"""Notify's typed dependencies: the session factory its use cases open units of work from, and
the scoring client broadcasts resolve their segments through."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.segments import ScoringClient
from shared.pagination import PageQuery, single_int


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


def _scoring(request: Request) -> ScoringClient | None:
    scoring: ScoringClient | None = request.app.state.scoring
    return scoring


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
Scoring = Annotated[ScoringClient | None, Depends(_scoring)]


def after_id(page: PageQuery) -> int | None:
    """The row id a page continues after (lists ordered by id)."""
    key = page.after(single_int)
    return None if key is None else int(key[0])


def by_id(item: Any) -> list[Any]:
    """The sort key of a row in a list ordered by id."""
    return [item.id]
