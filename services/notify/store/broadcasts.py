"""Broadcasts as stored, with the counts of their notifications by status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.domain.broadcast import APPROVED, CANCELLED, PENDING, BroadcastDraft, source_of
from services.notify.store import notifications
from shared.db import jsonb

COLUMNS = (
    "broadcast_id, name, template, category, channel, locale, params, segment, rate_per_s, "
    "status, created_by, created_at, approved_by, approved_at, recipients, team"
)


@dataclass(frozen=True, slots=True)
class BroadcastRow:
    broadcast_id: int
    name: str
    template: str
    category: str
    channel: str
    locale: str
    params: dict[str, Any]
    segment: dict[str, Any]
    rate_per_s: float
    status: str
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    recipients: int | None
    team: str | None  # the creator key's team (None: no team, SPEC §15)
    counts: dict[str, int]  # its notifications by status

    @property
    def draft(self) -> BroadcastDraft:
        return BroadcastDraft(
            self.name, self.template, self.category, self.channel, self.locale, self.params,
            self.segment, self.rate_per_s,
        )  # fmt: skip


async def get(session: AsyncSession, broadcast_id: int, lock: bool = False) -> BroadcastRow | None:
    """The broadcast (locked for this transaction with `lock`), or None."""
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
        return None
    counts = await notifications.status_counts(session, source=source_of(broadcast_id))
    return BroadcastRow(
        **{**row._mapping, "params": jsonb(row.params), "segment": jsonb(row.segment)},
        counts=counts,
    )


async def insert(session: AsyncSession, draft: BroadcastDraft, actor: str, team: str | None) -> int:
    """A new broadcast pending approval, owned by `team`; returns its id."""
    row = (
        await session.execute(
            text(
                "INSERT INTO broadcasts (name, template, category, channel, locale, params, "
                "segment, rate_per_s, status, created_by, team) VALUES (:name, :template, "
                ":category, :channel, :locale, CAST(:params AS jsonb), CAST(:segment AS jsonb), "
                ":rate, :status, :by, :team) RETURNING broadcast_id"
            ),
            {
                "name": draft.name,
                "template": draft.template,
                "category": draft.category,
                "channel": draft.channel,
                "locale": draft.locale,
                "params": orjson.dumps(draft.params).decode(),
                "segment": orjson.dumps(draft.segment).decode(),
                "rate": draft.rate_per_s,
                "status": PENDING,
                "by": actor,
                "team": team,
            },
        )
    ).one()
    return int(row.broadcast_id)


async def mark_approved(
    session: AsyncSession, broadcast_id: int, actor: str, at: datetime, recipients: int
) -> None:
    await session.execute(
        text(
            "UPDATE broadcasts SET status = :s, approved_by = :by, approved_at = :at, "
            "recipients = :n WHERE broadcast_id = :b"
        ),
        {"s": APPROVED, "by": actor, "at": at, "n": recipients, "b": broadcast_id},
    )


async def mark_cancelled(session: AsyncSession, broadcast_id: int) -> None:
    await session.execute(
        text("UPDATE broadcasts SET status = :s WHERE broadcast_id = :b"),
        {"s": CANCELLED, "b": broadcast_id},
    )
