"""Broadcasts (SPEC §6, §15): create, approve (resolving the segment first), cancel, read."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.broadcast import (
    BroadcastDraft,
    check_approval,
    check_cancel,
    fan_out,
    source_of,
)
from services.notify.domain.notices import schedule
from services.notify.domain.policy import policy_for
from services.notify.domain.templates import TemplateError, in_locale, locales_to_try, render
from services.notify.segments import ScoringClient, check_resolvable, recipients
from services.notify.store import broadcasts, notifications
from services.notify.store.broadcasts import BroadcastRow
from shared.audit import audit
from shared.db import unit_of_work
from shared.errors import NotFound, ValidationFailed


async def _get(session: AsyncSession, broadcast_id: int, lock: bool = False) -> BroadcastRow:
    found = await broadcasts.get(session, broadcast_id, lock=lock)
    if found is None:
        raise NotFound(f"no broadcast {broadcast_id}", code="broadcast_not_found")
    return found


async def get_broadcast(
    sessions: async_sessionmaker[AsyncSession], broadcast_id: int
) -> BroadcastRow:
    async with sessions() as session:
        return await _get(session, broadcast_id)


async def create_broadcast(
    sessions: async_sessionmaker[AsyncSession],
    draft: BroadcastDraft,
    owner: str,
    scoring: ScoringClient | None,
) -> BroadcastRow:
    """A broadcast pending approval; its template must exist and its params fill it."""
    async with unit_of_work(sessions) as session:
        texts = await notifications.template_texts(
            session, draft.template, draft.channel, locales_to_try(draft.locale)
        )
        if (text := in_locale(texts, draft.locale)) is None:
            raise ValidationFailed(
                f"template: no template '{draft.template}' for {draft.channel}",
                code="unknown_template",
            )
        try:
            render(text, draft.params)
        except TemplateError as exc:
            raise ValidationFailed(str(exc), code="invalid_params") from None
        check_resolvable(draft.segment, scoring)
        broadcast_id = await broadcasts.insert(session, draft, owner)
        created = await _get(session, broadcast_id)
        await audit(session, owner, "broadcast.create", source_of(broadcast_id), None, created)
    return created


async def approve_broadcast(
    sessions: async_sessionmaker[AsyncSession],
    scoring: ScoringClient | None,
    broadcast_id: int,
    approver: str,
    tz: ZoneInfo,
) -> BroadcastRow:
    """Approve (not by its creator) and queue every recipient at its paced time.

    The segment is resolved through scoring before the approving transaction opens: a slow
    scoring must not hold a transaction (and the broadcast's row lock) open, where the server's
    idle-in-transaction limit would end it. The checks run again under the lock, since another
    approval or a cancel may have come in meanwhile."""
    async with sessions() as session:  # a short read, ended before scoring is asked
        current = await _get(session, broadcast_id)
    check_approval(broadcast_id, current.status, current.created_by, approver)
    users = await recipients(current.segment, scoring)

    async with unit_of_work(sessions) as session:
        before = await _get(session, broadcast_id, lock=True)
        check_approval(broadcast_id, before.status, before.created_by, approver)
        now = datetime.now(UTC)
        policies = await notifications.policies(session)
        policy = policy_for(policies, before.category)
        notices = fan_out(broadcast_id, before.draft, users, now, policy, tz)
        await notifications.enqueue(session, schedule(notices, policies, now))
        await broadcasts.mark_approved(session, broadcast_id, approver, now, len(users))
        after = await _get(session, broadcast_id)
        await audit(session, approver, "broadcast.approve", source_of(broadcast_id), before, after)
    return after


async def cancel_broadcast(
    sessions: async_sessionmaker[AsyncSession], broadcast_id: int, owner: str
) -> BroadcastRow:
    """Before approval: cancelled. After: what has not been sent yet is suppressed."""
    async with unit_of_work(sessions) as session:
        before = await _get(session, broadcast_id, lock=True)
        check_cancel(broadcast_id, before.status)
        await notifications.suppress_waiting(
            session, source_of(broadcast_id), "broadcast_cancelled"
        )
        await broadcasts.mark_cancelled(session, broadcast_id)
        after = await _get(session, broadcast_id)
        await audit(session, owner, "broadcast.cancel", source_of(broadcast_id), before, after)
    return after
