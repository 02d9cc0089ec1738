"""Screen a batch's events against who may state them and the groups' stored facts (SPEC §14,
domain/group_facts.py): the refused ones are audited in `refused_events` and counted after the
commit, never applied, never dead-lettered (they are valid records a rule refused)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.group_facts import (
    REFUSAL_REASONS,
    Refusal,
    Screening,
    groups_to_check,
    screen,
)
from services.scoring.store import group_facts
from shared.contract import Envelope

REFUSED = Counter(
    "engage_scoring_refused_events_total",
    "Valid events scoring refused by a rule of SPEC §14 (audited in refused_events).",
    ["reason"],
)
for _reason in REFUSAL_REASONS:
    REFUSED.labels(_reason)


async def screen_events(session: AsyncSession, envelopes: Sequence[Envelope]) -> Screening:
    """Lock and read the facts of the groups the batch's fact events name, decide, and audit
    the refusals; the caller applies `accepted` and stores `facts` (after record_created)."""
    stored = await group_facts.lock_and_read(session, groups_to_check(envelopes))
    screening = screen(envelopes, stored)
    await group_facts.record_refusals(session, screening.refused)
    return screening


def count_refused(refused: Sequence[Refusal]) -> None:
    """After the commit: one count per refused event, by reason."""
    for r in refused:
        REFUSED.labels(r.reason).inc()
