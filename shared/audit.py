"""The audit log every service keeps in its own schema (SPEC §5: who, when, before, after)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def audit(
    session: AsyncSession, actor: str, action: str, subject: str, before: Any, after: Any
) -> None:
    """One row in the service's `audit_log`, in the caller's transaction."""
    await session.execute(
        text(
            "INSERT INTO audit_log (actor, action, subject, before, after) "
            "VALUES (:by, :a, :s, CAST(:b AS jsonb), CAST(:f AS jsonb))"
        ),
        {
            "by": actor,
            "a": action,
            "s": subject,
            "b": None if before is None else orjson.dumps(before, default=str).decode(),
            "f": None if after is None else orjson.dumps(after, default=str).decode(),
        },
    )
