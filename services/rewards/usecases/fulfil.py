"""Record that a grant's reward was credited, or could not be (SPEC §11), as reported by the
system that credits it: through `POST /v1/grants/{id}:fulfil` (one transaction per report) or
on engage.fulfilment.v1 (in the fulfilment consumer's transaction, with its offsets).

Either way the domain decides (domain/fulfilment.py `decide`): a first report is recorded and
published on engage.grants.v1 through the outbox, the same report again changes nothing, and a
contradicting one is refused — a 409 problem for the API, the DLQ with the reason for a record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain.fulfilment import (
    AlreadyRecorded,
    FulfilmentReport,
    Refused,
    decide,
)
from services.rewards.store import ledger
from shared.errors import Conflict, NotFound
from shared.records import FulfilmentRecord

FULFILMENTS = Counter(
    "engage_grant_fulfilments_total",
    "Fulfilment reports recorded (repeats not counted), by status and how they came.",
    ["status", "via"],
)


async def fulfil_grant(
    sessions: async_sessionmaker[AsyncSession], grant_id: int, report: FulfilmentReport
) -> dict[str, Any]:
    """The grant after the report; 404 if there is none, 409 if the report contradicts it."""
    async with sessions() as session, session.begin():
        held = await ledger.held_fulfilment(session, grant_id)
        if held is None:
            raise NotFound(f"no grant {grant_id}", code="grant_not_found")
        decision = decide(grant_id, held, report)
        if isinstance(decision, Refused):
            raise Conflict(
                decision.detail,
                code=decision.code,
                extra={"grant_status": held.grant_status, "fulfilment_status": held.status},
            )
        if isinstance(decision, AlreadyRecorded):
            grant = await ledger.grant_by_id(session, grant_id)
            assert grant is not None  # locked above
            return grant
        grant = await ledger.record_fulfilment(session, grant_id, report)
    FULFILMENTS.labels(report.status, "api").inc()
    return grant


class RefusedFulfilment(ValueError):
    """A fulfilment record that can never be applied (no such grant, or it contradicts the
    ledger): a data error, so the consumer sends it to the DLQ with this reason."""


@dataclass(slots=True)
class AppliedFulfilments:
    """What one batch of engage.fulfilment.v1 recorded, by status; `count()` once committed."""

    recorded: dict[str, int] = field(default_factory=dict)
    repeated: int = 0

    def count(self) -> None:
        for status, n in self.recorded.items():
            FULFILMENTS.labels(status, "topic").inc(n)


async def apply_fulfilments(
    session: AsyncSession, records: list[FulfilmentRecord]
) -> AppliedFulfilments:
    """Apply records in order inside the consumer's transaction; only flushes. Raises
    RefusedFulfilment for a record that cannot apply (the consumer isolates it)."""
    applied = AppliedFulfilments()
    for record in records:
        report = FulfilmentReport(record.status, record.reference, record.reason, record.at)
        held = await ledger.held_fulfilment(session, record.grant_id)
        if held is None:
            raise RefusedFulfilment(f"no grant {record.grant_id}")
        decision = decide(record.grant_id, held, report)
        if isinstance(decision, Refused):
            raise RefusedFulfilment(f"{decision.code}: {decision.detail}")
        if isinstance(decision, AlreadyRecorded):
            applied.repeated += 1
            continue
        await ledger.record_fulfilment(session, record.grant_id, report)
        applied.recorded[report.status] = applied.recorded.get(report.status, 0) + 1
    return applied
