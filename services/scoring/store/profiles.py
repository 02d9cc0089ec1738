"""Weight profiles: named vitality weights, changed by admins, every change audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.vitality import Weights
from shared.audit import audit


async def weights_of(session: AsyncSession, name: str) -> Weights | None:
    row = (await session.execute(
        text("SELECT w_growth, w_activity, w_bonus FROM weight_profiles WHERE name = :n"),
        {"n": name},
    )).first()  # fmt: skip
    return Weights(row.w_growth, row.w_activity, row.w_bonus) if row else None


async def profiles(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.execute(text(
        "SELECT name, w_growth, w_activity, w_bonus, updated_at, updated_by FROM weight_profiles "
        "ORDER BY name"))  # fmt: skip
    return [dict(r._mapping) for r in rows]


async def save_profile(
    session: AsyncSession, name: str, w: Weights, by: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Upsert a profile; return (before, after) for the audit trail."""
    before = (await session.execute(
        text("SELECT name, w_growth, w_activity, w_bonus FROM weight_profiles WHERE name = :n "
             "FOR UPDATE"), {"n": name})).first()  # fmt: skip
    after = (await session.execute(
        text("INSERT INTO weight_profiles (name, w_growth, w_activity, w_bonus, updated_by) "
             "VALUES (:n, :g, :a, :b, :by) ON CONFLICT (name) DO UPDATE SET w_growth = :g, "
             "w_activity = :a, w_bonus = :b, updated_at = now(), updated_by = :by "
             "RETURNING name, w_growth, w_activity, w_bonus, updated_at, updated_by"),
        {"n": name, "g": w.growth, "a": w.activity, "b": w.bonus, "by": by},
    )).one()  # fmt: skip
    before_d = dict(before._mapping) if before else None
    after_d = dict(after._mapping)
    await audit(session, by, "profile.save", name, before_d or None, after_d)
    return before_d, after_d
