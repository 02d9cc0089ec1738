"""Fulfilment of grants (SPEC §11): whether the reward a grant promises was credited.

A granted grant starts `pending`; the system that credits the reward reports it `fulfilled`
(with its reference) or `failed` (with a reason), once: the same report again changes nothing,
a different one after a final status is refused. Only a granted grant can be fulfilled — a
revoked or budget-exhausted grant promises nothing. A granted grant past its `fulfil_by` (the
user's local date) and not fulfilled is `overdue`: a promise broken, which an operator must see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from services.rewards.domain.budget import GRANTED

PENDING, FULFILLED, FAILED, OVERDUE = "pending", "fulfilled", "failed", "overdue"
FinalStatus = Literal["fulfilled", "failed"]
FULFILMENT_VIEWS = (PENDING, FULFILLED, FAILED, OVERDUE)
# The grant event published on engage.grants.v1 for each final status.
GRANT_EVENTS: dict[str, str] = {FULFILLED: "fulfilled", FAILED: "fulfilment_failed"}


def initial_fulfilment(grant_status: str) -> str | None:
    """A new grant's fulfilment status: pending if it promises a reward, else none."""
    return PENDING if grant_status == GRANTED else None


@dataclass(frozen=True, slots=True)
class FulfilmentReport:
    """What a crediting system says about one grant."""

    status: FinalStatus
    reference: str
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class GrantFulfilment:
    """What the ledger holds about one grant's fulfilment."""

    grant_status: str
    status: str | None
    reference: str | None


@dataclass(frozen=True, slots=True)
class Apply:
    """Record the report: the grant's fulfilment changes."""


@dataclass(frozen=True, slots=True)
class AlreadyRecorded:
    """The same report was recorded before: nothing changes (idempotent)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The report contradicts the ledger; `code` and `detail` say why."""

    code: str
    detail: str


FulfilmentDecision = Apply | AlreadyRecorded | Refused


def decide(grant_id: int, held: GrantFulfilment, report: FulfilmentReport) -> FulfilmentDecision:
    """Whether `report` changes grant `grant_id`'s fulfilment, repeats it, or is refused."""
    if held.grant_status != GRANTED:
        return Refused(
            "not_fulfillable",
            f"grant {grant_id} is {held.grant_status}; only granted grants can be fulfilled",
        )
    if held.status in (None, PENDING):
        return Apply()
    if held.status == report.status and held.reference == report.reference:
        return AlreadyRecorded()
    return Refused(
        "fulfilment_conflict",
        f"grant {grant_id} is already {held.status} (reference {held.reference!r}); "
        f"a final fulfilment status does not change",
    )


def is_overdue(grant_status: str, fulfilment: str | None, fulfil_by: date, today: date) -> bool:
    """A granted grant not fulfilled after its fulfil-by day (`today`: the local date)."""
    return grant_status == GRANTED and fulfilment != FULFILLED and fulfil_by < today


def fulfilment_view(
    grant_status: str, fulfilment: str | None, fulfil_by: date, today: date
) -> str | None:
    """What a reader sees: `overdue` for a broken promise, else the stored status of a granted
    grant; None for a grant that promises nothing (revoked, budget exhausted).

    store/ledger.py FULFILMENT_VIEW_SQL says the same in SQL, for filters."""
    if grant_status != GRANTED:
        return None
    if is_overdue(grant_status, fulfilment, fulfil_by, today):
        return OVERDUE
    return fulfilment
