"""Delivery receipts (SPEC §6): a sent message moves to delivered or failed when its receipt
arrives, in either order of arrival; one that failed gives its daily cap slot back (a digest's
members, all moved by its one receipt, give back the one slot they share)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.delivery import gives_slot_back
from services.notify.store import notifications
from services.notify.store.notifications import ReceiptChange
from shared.db import unit_of_work


async def settle_receipts(
    session: AsyncSession, provider: str, message_ids: list[str]
) -> list[ReceiptChange]:
    """Apply the receipts already stored for these messages, in the caller's transaction."""
    changed = await notifications.apply_receipts(session, provider, message_ids)
    released: set[int] = set()  # a digest's members share one slot: it goes back once
    for c in changed:
        message = c.digest_id if c.digest_id is not None else c.id
        if c.cap_day is not None and gives_slot_back(c.status) and message not in released:
            released.add(message)
            await notifications.release_cap_slot(session, c.user_id, c.cap_day, c.category)
    return changed


async def record_receipts(
    sessions: async_sessionmaker[AsyncSession],
    provider: str,
    batch: list[tuple[str, bool, str]],
) -> list[ReceiptChange]:
    """Stored first, then matched: a receipt may arrive before its send is recorded."""
    ids = [r[0] for r in batch]
    async with unit_of_work(sessions) as session:
        await notifications.lock_messages(session, provider, ids)
        await notifications.record_receipts(session, provider, batch)
        return await settle_receipts(session, provider, ids)
