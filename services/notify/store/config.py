"""Templates, policies and opt-outs, every change audited."""

from __future__ import annotations

from datetime import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.audit import audit

TEMPLATE_COLUMNS = "name, channel, locale, category, text, placeholders, updated_by, updated_at"


async def templates(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(f"SELECT {TEMPLATE_COLUMNS} FROM templates ORDER BY name, channel, locale")
    )
    return [dict(r._mapping) for r in rows]


async def template(
    session: AsyncSession, name: str, channel: str, locale: str
) -> dict[str, Any] | None:
    row = (
        await session.execute(
            text(
                f"SELECT {TEMPLATE_COLUMNS} FROM templates "
                "WHERE name = :n AND channel = :c AND locale = :l"
            ),
            {"n": name, "c": channel, "l": locale},
        )
    ).first()
    return dict(row._mapping) if row else None


async def save_template(
    session: AsyncSession,
    name: str,
    channel: str,
    locale: str,
    category: str,
    body: str,
    placeholders: list[str],
    actor: str,
) -> dict[str, Any]:
    before = await template(session, name, channel, locale)
    await session.execute(
        text(
            "INSERT INTO templates (name, channel, locale, category, text, placeholders, "
            "updated_by) VALUES (:n, :c, :l, :cat, :t, :p, :by) "
            "ON CONFLICT (name, channel, locale) DO UPDATE SET category = excluded.category, "
            "text = excluded.text, placeholders = excluded.placeholders, "
            "updated_by = excluded.updated_by, updated_at = now()"
        ),
        {"n": name, "c": channel, "l": locale, "cat": category, "t": body,
         "p": placeholders, "by": actor},
    )  # fmt: skip
    after = await template(session, name, channel, locale)
    assert after is not None
    await audit(
        session, actor, "template.save", f"template:{name}/{channel}/{locale}", before, after
    )
    return after


POLICY_COLUMNS = (
    "category, daily_cap, window_start, window_end, ttl_seconds, marketing, updated_by, updated_at"
)


async def policy_rows(session: AsyncSession) -> list[dict[str, Any]]:
    """Policies with their window as local HH:MM."""
    rows = await session.execute(text(f"SELECT {POLICY_COLUMNS} FROM policies ORDER BY category"))
    return [
        {
            **dict(r._mapping),
            "window_start": r.window_start.strftime("%H:%M"),
            "window_end": r.window_end.strftime("%H:%M"),
        }
        for r in rows
    ]


async def save_policy(
    session: AsyncSession,
    category: str,
    daily_cap: int,
    window_start: time,
    window_end: time,
    ttl_seconds: int,
    marketing: bool,
    actor: str,
) -> dict[str, Any]:
    before = next((p for p in await policy_rows(session) if p["category"] == category), None)
    await session.execute(
        text(
            "INSERT INTO policies (category, daily_cap, window_start, window_end, ttl_seconds, "
            "marketing, updated_by) VALUES (:c, :cap, :ws, :we, :ttl, :m, :by) "
            "ON CONFLICT (category) DO UPDATE SET daily_cap = excluded.daily_cap, "
            "window_start = excluded.window_start, window_end = excluded.window_end, "
            "ttl_seconds = excluded.ttl_seconds, marketing = excluded.marketing, "
            "updated_by = excluded.updated_by, updated_at = now()"
        ),
        {"c": category, "cap": daily_cap, "ws": window_start, "we": window_end,
         "ttl": ttl_seconds, "m": marketing, "by": actor},
    )  # fmt: skip
    after = next(p for p in await policy_rows(session) if p["category"] == category)
    await audit(session, actor, "policy.save", f"policy:{category}", before, after)
    return after


async def set_opt_out(session: AsyncSession, user_id: str, out: bool, via: str, actor: str) -> bool:
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
    done = changed.first() is not None
    if done:
        await audit(session, actor, "opt_out" if out else "opt_in", f"user:{user_id}",
                    None, {"via": via})  # fmt: skip
    return done


async def is_opted_out(session: AsyncSession, user_id: str) -> bool:
    row = await session.execute(text("SELECT 1 FROM opt_outs WHERE user_id = :u"), {"u": user_id})
    return row.first() is not None


async def sandbox_messages(
    session: AsyncSession, user_id: str | None, limit: int, after: int | None
) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT id, notification_id, channel, user_id, body, at FROM sandbox_messages "
            "WHERE (CAST(:u AS text) IS NULL OR user_id = :u) "
            "AND (CAST(:after AS bigint) IS NULL OR id > :after) ORDER BY id LIMIT :n"
        ),
        {"u": user_id, "after": after, "n": limit},
    )
    return [dict(r._mapping) for r in rows]
