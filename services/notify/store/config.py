"""Policies, opt-outs and what the sandbox provider stored (templates: store/templates.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.domain.policy import Policy

# The send window as local HH:MM, the way it is set.
POLICY_COLUMNS = (
    "category, daily_cap, to_char(window_start, 'HH24:MI') AS window_start, "
    "to_char(window_end, 'HH24:MI') AS window_end, ttl_seconds, marketing, updated_by, updated_at"
)


@dataclass(frozen=True, slots=True)
class PolicyRow:
    category: str
    daily_cap: int
    window_start: str  # local HH:MM
    window_end: str
    ttl_seconds: int
    marketing: bool
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SandboxMessageRow:
    id: int
    notification_id: int
    channel: str
    user_id: str
    body: str
    at: datetime


async def policy_rows(session: AsyncSession) -> list[PolicyRow]:
    rows = await session.execute(text(f"SELECT {POLICY_COLUMNS} FROM policies ORDER BY category"))
    return [PolicyRow(**r._mapping) for r in rows]


async def policy_row(session: AsyncSession, category: str) -> PolicyRow | None:
    row = (
        await session.execute(
            text(f"SELECT {POLICY_COLUMNS} FROM policies WHERE category = :c"), {"c": category}
        )
    ).first()
    return PolicyRow(**row._mapping) if row else None


async def save_policy(session: AsyncSession, policy: Policy, actor: str) -> None:
    await session.execute(
        text(
            "INSERT INTO policies (category, daily_cap, window_start, window_end, ttl_seconds, "
            "marketing, updated_by) VALUES (:c, :cap, :ws, :we, :ttl, :m, :by) "
            "ON CONFLICT (category) DO UPDATE SET daily_cap = excluded.daily_cap, "
            "window_start = excluded.window_start, window_end = excluded.window_end, "
            "ttl_seconds = excluded.ttl_seconds, marketing = excluded.marketing, "
            "updated_by = excluded.updated_by, updated_at = now()"
        ),
        {"c": policy.category, "cap": policy.daily_cap, "ws": policy.window_start,
         "we": policy.window_end, "ttl": int(policy.ttl.total_seconds()),
         "m": policy.marketing, "by": actor},
    )  # fmt: skip


async def set_opt_out(session: AsyncSession, user_id: str, out: bool, via: str) -> bool:
    """Opt a user out of (or back into) marketing messages; True if anything changed."""
    if out:
        changed = await session.execute(
            text(
                "INSERT INTO opt_outs (user_id, via) VALUES (:u, :v) "
                "ON CONFLICT (user_id) DO NOTHING RETURNING user_id"
            ),
            {"u": user_id, "v": via},
        )
    else:
        changed = await session.execute(
            text("DELETE FROM opt_outs WHERE user_id = :u RETURNING user_id"), {"u": user_id}
        )
    return changed.first() is not None


async def is_opted_out(session: AsyncSession, user_id: str) -> bool:
    row = await session.execute(text("SELECT 1 FROM opt_outs WHERE user_id = :u"), {"u": user_id})
    return row.first() is not None


async def sandbox_messages(
    session: AsyncSession, user_id: str | None, limit: int, after: int | None
) -> list[SandboxMessageRow]:
    rows = await session.execute(
        text(
            "SELECT id, notification_id, channel, user_id, body, at FROM sandbox_messages "
            "WHERE (CAST(:u AS text) IS NULL OR user_id = :u) "
            "AND (CAST(:after AS bigint) IS NULL OR id > :after) ORDER BY id LIMIT :n"
        ),
        {"u": user_id, "after": after, "n": limit},
    )
    return [SandboxMessageRow(**r._mapping) for r in rows]
