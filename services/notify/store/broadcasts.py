"""Broadcasts as stored: created by a campaign owner, approved by someone else, then their
recipients are queued in the approving transaction with paced due times."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.domain.broadcast import paced_schedule
from services.notify.domain.policy import Policy
from services.notify.store import notifications as store
from shared.audit import audit
from shared.db import jsonb
from shared.errors import Conflict, Forbidden, NotFound

COLUMNS = (
    "broadcast_id, name, template, category, channel, locale, params, segment, rate_per_s, "
    "status, created_by, created_at, approved_by, approved_at, recipients"
)


def _doc(row: Any) -> dict[str, Any]:
    doc = dict(row._mapping)
    doc["params"], doc["segment"] = jsonb(doc["params"]), jsonb(doc["segment"])
    return doc


async def get(session: AsyncSession, broadcast_id: int, lock: bool = False) -> dict[str, Any]:
    row = (
        await session.execute(
            text(
                f"SELECT {COLUMNS} FROM broadcasts WHERE broadcast_id = :b"
                f"{' FOR UPDATE' if lock else ''}"
            ),
            {"b": broadcast_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"no broadcast {broadcast_id}", code="broadcast_not_found")
    doc = _doc(row)
    doc["counts"] = await store.status_counts(session, source=f"broadcast:{broadcast_id}")
    return doc


async def create(session: AsyncSession, fields: dict[str, Any], actor: str) -> dict[str, Any]:
    row = (
        await session.execute(
            text(
                "INSERT INTO broadcasts (name, template, category, channel, locale, params, "
                "segment, rate_per_s, status, created_by) VALUES (:name, :template, :category, "
                ":channel, :locale, CAST(:params AS jsonb), CAST(:segment AS jsonb), :rate, "
                "'pending_approval', :by) RETURNING broadcast_id"
            ),
            {
                **{k: fields[k] for k in ("name", "template", "category", "channel", "locale")},
                "params": orjson.dumps(fields["params"]).decode(),
                "segment": orjson.dumps(fields["segment"]).decode(),
                "rate": fields["rate_per_s"],
                "by": actor,
            },
        )
    ).one()
    doc = await get(session, int(row.broadcast_id))
    await audit(session, actor, "broadcast.create", f"broadcast:{row.broadcast_id}", None, doc)
    return doc


async def approve(
    session: AsyncSession,
    broadcast_id: int,
    actor: str,
    users: list[str],
    policy: Policy,
    policies: dict[str, Policy],
    now: datetime,
    tz: ZoneInfo,
) -> dict[str, Any]:
    """Approve (not by its creator) and queue every recipient (the segment, resolved) at its
    paced time."""
    before = await get(session, broadcast_id, lock=True)
    if before["status"] != "pending_approval":
        raise Conflict(f"broadcast {broadcast_id} is {before['status']}", code="invalid_transition")
    if actor == before["created_by"]:
        raise Forbidden("a broadcast cannot be approved by its creator", code="self_approval")
    due = paced_schedule(len(users), now, before["rate_per_s"], policy, tz)
    await store.enqueue(
        session,
        [
            store.NewNotification(
                f"broadcast:{broadcast_id}",
                user,
                before["template"],
                before["category"],
                before["channel"],
                before["locale"],
                before["params"],
                at,
            )
            for user, at in zip(users, due, strict=True)
        ],
        policies,
        now,
    )
    await session.execute(
        text(
            "UPDATE broadcasts SET status = 'approved', approved_by = :by, approved_at = :now, "
            "recipients = :n WHERE broadcast_id = :b"
        ),
        {"by": actor, "now": now, "n": len(users), "b": broadcast_id},
    )
    after = await get(session, broadcast_id)
    await audit(session, actor, "broadcast.approve", f"broadcast:{broadcast_id}", before, after)
    return after


async def cancel(session: AsyncSession, broadcast_id: int, actor: str) -> dict[str, Any]:
    """Before approval: cancelled. After: what has not been sent yet is suppressed."""
    before = await get(session, broadcast_id, lock=True)
    if before["status"] == "cancelled":
        raise Conflict(f"broadcast {broadcast_id} is already cancelled", code="invalid_transition")
    await session.execute(
        text(
            "UPDATE notifications SET status = 'suppressed', reason = 'broadcast_cancelled', "
            "updated_at = now() WHERE source = :s AND status IN ('queued', 'deferred')"
        ),
        {"s": f"broadcast:{broadcast_id}"},
    )
    await session.execute(
        text("UPDATE broadcasts SET status = 'cancelled' WHERE broadcast_id = :b"),
        {"b": broadcast_id},
    )
    after = await get(session, broadcast_id)
    await audit(session, actor, "broadcast.cancel", f"broadcast:{broadcast_id}", before, after)
    return after
