"""Broadcasts (SPEC §6, §11, §15): create, preview, approve (resolving the segment first and
echoing what was approved), cancel, read, and page through the recipients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.broadcast import (
    APPROVED,
    SAMPLE_SIZE,
    BroadcastDraft,
    RenderedText,
    check_approval,
    check_cancel,
    fan_out,
    render_texts,
    rendered,
    source_of,
)
from services.notify.domain.delivery import channels_for
from services.notify.domain.notices import schedule
from services.notify.domain.policy import local_day, policy_for
from services.notify.domain.template_versions import check_usable
from services.notify.domain.templates import TemplateError, in_locale, locales_to_try, render
from services.notify.segments import ScoringClient, check_resolvable, recipients
from services.notify.store import broadcasts, notifications, templates
from services.notify.store.broadcasts import BroadcastRow
from services.notify.store.notifications import RecipientRow
from shared.audit import audit
from shared.auth import Principal
from shared.db import unit_of_work
from shared.errors import NotFound, ValidationFailed
from shared.ownership import check_team


@dataclass(frozen=True, slots=True)
class Preview:
    """What an approver sees before approving, and what the approval echoes (SPEC §11)."""

    broadcast_id: int
    status: str
    texts: list[RenderedText]
    recipients: int
    sample: list[str]  # the first recipients by user id


async def _texts(session: AsyncSession, draft: BroadcastDraft, tz: ZoneInfo) -> list[RenderedText]:
    """The live template versions rendered with the broadcast's params, as of now."""
    variants = await templates.live_variants(session, draft.template, channels_for(draft.channel))
    try:
        return render_texts(variants, draft.params, local_day(datetime.now(UTC), tz))
    except TemplateError as exc:  # the template changed since the broadcast was created
        raise ValidationFailed(str(exc), code="invalid_params") from None


async def _approved_texts(
    session: AsyncSession, row: BroadcastRow, tz: ZoneInfo
) -> list[RenderedText]:
    """What the broadcast sends: the texts its approval froze (SPEC §15) — the live template
    only for a broadcast not approved yet, or approved before texts were frozen."""
    frozen = await templates.frozen(session, row.broadcast_id)
    if frozen:
        return [rendered(t.channel, t.locale, t.text, t.template_version) for t in frozen]
    return await _texts(session, row.draft, tz)


def _queued(row: BroadcastRow) -> bool:
    """Its recipients are its queued notifications (it was approved), not its segment."""
    return row.status == APPROVED or row.approved_at is not None


async def preview_broadcast(
    sessions: async_sessionmaker[AsyncSession],
    scoring: ScoringClient | None,
    broadcast_id: int,
    reader: Principal,
    tz: ZoneInfo,
) -> Preview:
    """Rendered text per channel and locale, the recipient count and a sample. Before approval
    the segment is resolved (through scoring: outside any transaction); after it, the
    recipients are the notifications it queued."""
    async with sessions() as session:
        row = await _owned(session, broadcast_id, reader)
        texts = await _approved_texts(session, row, tz)
        if _queued(row):
            count = sum(row.counts.values())
            sample = [r.user_id for r in await notifications.recipients(
                session, source_of(broadcast_id), None, SAMPLE_SIZE)]  # fmt: skip
            return Preview(broadcast_id, row.status, texts, count, sample)
    users = await recipients(row.segment, scoring)
    return Preview(broadcast_id, row.status, texts, len(users), users[:SAMPLE_SIZE])


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: str
    notification_id: int | None = None  # once approved: its notification
    status: str | None = None


async def broadcast_recipients(
    sessions: async_sessionmaker[AsyncSession],
    scoring: ScoringClient | None,
    broadcast_id: int,
    reader: Principal,
    limit: int,
    after: str | None,
) -> list[Recipient]:
    """One page of the recipients, by user id: its notifications once approved, else its
    segment as it resolves now."""
    async with sessions() as session:
        row = await _owned(session, broadcast_id, reader)
        if _queued(row):
            found: list[RecipientRow] = await notifications.recipients(
                session, source_of(broadcast_id), after, limit
            )
            return [Recipient(r.user_id, r.notification_id, r.status) for r in found]
    users = await recipients(row.segment, scoring)
    return [Recipient(u) for u in users if after is None or u > after][:limit]


async def _get(session: AsyncSession, broadcast_id: int, lock: bool = False) -> BroadcastRow:
    found = await broadcasts.get(session, broadcast_id, lock=lock)
    if found is None:
        raise NotFound(f"no broadcast {broadcast_id}", code="broadcast_not_found")
    return found


async def _owned(
    session: AsyncSession, broadcast_id: int, principal: Principal, lock: bool = False
) -> BroadcastRow:
    """The broadcast, when the key acts for its team (SPEC §15): else 403 `other_team`."""
    found = await _get(session, broadcast_id, lock=lock)
    check_team(principal, found.team, f"broadcast {broadcast_id}")
    return found


async def get_broadcast(
    sessions: async_sessionmaker[AsyncSession], broadcast_id: int, reader: Principal
) -> BroadcastRow:
    async with sessions() as session:
        return await _owned(session, broadcast_id, reader)


async def create_broadcast(
    sessions: async_sessionmaker[AsyncSession],
    draft: BroadcastDraft,
    creator: Principal,
    scoring: ScoringClient | None,
) -> BroadcastRow:
    """A broadcast pending approval, owned by the creator's team; its template must exist, be
    its team's or global, and its params fill it."""
    owner = creator.key_id
    async with unit_of_work(sessions) as session:
        check_usable(creator, draft.template, await templates.team_of(session, draft.template))
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
        broadcast_id = await broadcasts.insert(session, draft, owner, creator.team)
        created = await _get(session, broadcast_id)
        await audit(session, owner, "broadcast.create", source_of(broadcast_id), None, created)
    return created


async def approve_broadcast(
    sessions: async_sessionmaker[AsyncSession],
    scoring: ScoringClient | None,
    broadcast_id: int,
    approving: Principal,
    tz: ZoneInfo,
) -> tuple[BroadcastRow, Preview]:
    """Approve (not by its creator) and queue every recipient at its paced time; returns what
    was approved: the texts as rendered now and the recipients queued. Those texts, with their
    template versions, are frozen: the recipients get them whatever the template becomes.

    The segment is resolved through scoring before the approving transaction opens: a slow
    scoring must not hold a transaction (and the broadcast's row lock) open, where the server's
    idle-in-transaction limit would end it. The checks run again under the lock, since another
    approval or a cancel may have come in meanwhile. The approver works for the broadcast's
    team (or is admin)."""
    approver = approving.key_id
    async with sessions() as session:  # a short read, ended before scoring is asked
        current = await _owned(session, broadcast_id, approving)
    check_approval(broadcast_id, current.status, current.created_by, approver)
    users = await recipients(current.segment, scoring)

    async with unit_of_work(sessions) as session:
        before = await _get(session, broadcast_id, lock=True)
        check_approval(broadcast_id, before.status, before.created_by, approver)
        now = datetime.now(UTC)
        policies = await notifications.policies(session)
        policy = policy_for(policies, before.category)
        notices = fan_out(broadcast_id, before.draft, users, now, policy, tz)
        texts = await _texts(session, before.draft, tz)
        await templates.freeze(session, broadcast_id, [
            templates.FrozenText(t.channel, t.locale, t.template_version or 0, t.text)
            for t in texts])  # fmt: skip
        await notifications.enqueue(session, schedule(notices, policies, now))
        await broadcasts.mark_approved(session, broadcast_id, approver, now, len(users))
        after = await _get(session, broadcast_id)
        approved = Preview(broadcast_id, after.status, texts, len(users), users[:SAMPLE_SIZE])
        await audit(session, approver, "broadcast.approve", source_of(broadcast_id), before,
                    {"broadcast": after, "texts": texts})  # fmt: skip
    return after, approved


async def cancel_broadcast(
    sessions: async_sessionmaker[AsyncSession], broadcast_id: int, cancelling: Principal
) -> BroadcastRow:
    """Before approval: cancelled. After: what has not been sent yet is suppressed. Only by
    the broadcast's team (or admin)."""
    owner = cancelling.key_id
    async with unit_of_work(sessions) as session:
        before = await _owned(session, broadcast_id, cancelling, lock=True)
        check_cancel(broadcast_id, before.status)
        await notifications.suppress_waiting(
            session, source_of(broadcast_id), "broadcast_cancelled"
        )
        await broadcasts.mark_cancelled(session, broadcast_id)
        after = await _get(session, broadcast_id)
        await audit(session, owner, "broadcast.cancel", source_of(broadcast_id), before, after)
    return after
