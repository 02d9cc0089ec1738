"""Dependencies of rewards' routes beyond shared/api_deps.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.settler import Settler
from shared.api_auth import require
from shared.auth import Principal, Role


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


def _settler(request: Request) -> Settler:
    settler: Settler = request.app.state.settler
    return settler


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
"""For use cases that open their own unit of work (usecases/)."""
SettlerDep = Annotated[Settler, Depends(_settler)]
RequireFulfiller = Annotated[Principal, Depends(require(Role.FULFILLER))]
"""The systems that credit rewards (or admin): they report fulfilment (SPEC §11)."""
