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


async def delete_profile(session: AsyncSession, name: str, by: str) -> dict[str, Any] | None:
    """Delete a profile (never the live `default`: the caller checks); audited. None if absent."""
    row = (await session.execute(
        text("DELETE FROM weight_profiles WHERE name = :n "
             "RETURNING name, w_growth, w_activity, w_bonus, updated_at, updated_by"),
        {"n": name},
    )).first()  # fmt: skip
    if row is None:
        return None
    before = dict(row._mapping)
    await session.execute(text("DELETE FROM profile_proposals WHERE name = :n"), {"n": name})
    await audit(session, by, "profile.delete", name, before, None)
    return before


async def proposal(session: AsyncSession, name: str, lock: bool = False) -> dict[str, Any] | None:
    row = (await session.execute(
        text("SELECT name, w_growth, w_activity, w_bonus, proposed_by, proposed_at "
             "FROM profile_proposals WHERE name = :n" + (" FOR UPDATE" if lock else "")),
        {"n": name},
    )).first()  # fmt: skip
    return dict(row._mapping) if row else None


async def propose(session: AsyncSession, name: str, w: Weights, by: str) -> dict[str, Any]:
    """Record (or replace) the pending change of `name`; audited."""
    row = (await session.execute(
        text("INSERT INTO profile_proposals (name, w_growth, w_activity, w_bonus, proposed_by) "
             "VALUES (:n, :g, :a, :b, :by) ON CONFLICT (name) DO UPDATE SET w_growth = :g, "
             "w_activity = :a, w_bonus = :b, proposed_by = :by, proposed_at = now() "
             "RETURNING name, w_growth, w_activity, w_bonus, proposed_by, proposed_at"),
        {"n": name, "g": w.growth, "a": w.activity, "b": w.bonus, "by": by},
    )).one()  # fmt: skip
    pending = dict(row._mapping)
    await audit(session, by, "profile.propose", name, None, pending)
    return pending


async def drop_proposal(session: AsyncSession, name: str, by: str, action: str) -> None:
    await session.execute(text("DELETE FROM profile_proposals WHERE name = :n"), {"n": name})
    await audit(session, by, action, name, None, None)
