"""Fulfilment of grants (SPEC §11), the pure rules: who may report what, when a report is a
repeat, and when a promise is overdue — plus the record a crediting system publishes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

import orjson
import pytest
from pydantic import ValidationError

from services.rewards.domain.fulfilment import (
    AlreadyRecorded,
    Apply,
    FinalStatus,
    FulfilmentReport,
    GrantFulfilment,
    Refused,
    decide,
    fulfilment_view,
    initial_fulfilment,
    is_overdue,
)
from shared.records import FulfilmentRecord, GrantRecord

AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
DUE = date(2026, 11, 10)


def report(
    status: str = "fulfilled", reference: str = "tx-1", reason: str | None = None
) -> FulfilmentReport:
    return FulfilmentReport(cast(FinalStatus, status), reference, reason, AT)


def held(
    grant_status: str = "granted", status: str | None = "pending", ref: str | None = None
) -> GrantFulfilment:
    return GrantFulfilment(grant_status, status, ref)


def test_a_granted_grant_starts_pending_and_a_budget_exhausted_one_promises_nothing() -> None:
    assert initial_fulfilment("granted") == "pending"
    assert initial_fulfilment("budget_exhausted") is None


@pytest.mark.parametrize("status", ["fulfilled", "failed"])
def test_a_pending_grant_takes_the_first_report(status: str) -> None:
    assert decide(1, held(), report(status)) == Apply()


def test_the_same_report_again_is_already_recorded() -> None:
    assert decide(1, held(status="fulfilled", ref="tx-1"), report()) == AlreadyRecorded()


@pytest.mark.parametrize(
    ("current", "again"),
    [
        (("fulfilled", "tx-1"), ("failed", "tx-1")),
        (("failed", "tx-1"), ("fulfilled", "tx-2")),
        (("fulfilled", "tx-1"), ("fulfilled", "tx-2")),  # same status, another credit
    ],
)
def test_a_different_report_after_a_final_one_is_refused_naming_the_current_status(
    current: tuple[str, str], again: tuple[str, str]
) -> None:
    decision = decide(7, held(status=current[0], ref=current[1]), report(*again, reason="x"))
    assert isinstance(decision, Refused)
    assert decision.code == "fulfilment_conflict" and current[0] in decision.detail


@pytest.mark.parametrize("grant_status", ["revoked", "budget_exhausted"])
def test_a_grant_that_promises_nothing_cannot_be_fulfilled(grant_status: str) -> None:
    decision = decide(7, held(grant_status, None if grant_status != "revoked" else "pending"),
                      report())  # fmt: skip
    assert isinstance(decision, Refused) and decision.code == "not_fulfillable"
    assert grant_status in decision.detail


def test_a_grant_is_overdue_only_after_its_fulfil_by_day() -> None:
    assert not is_overdue("granted", "pending", DUE, date(2026, 11, 10))
    assert is_overdue("granted", "pending", DUE, date(2026, 11, 11))
    assert is_overdue("granted", "failed", DUE, date(2026, 11, 11))
    assert not is_overdue("granted", "fulfilled", DUE, date(2026, 11, 11))
    assert not is_overdue("revoked", "pending", DUE, date(2026, 11, 11))


def test_readers_see_overdue_for_a_broken_promise_and_nothing_for_no_promise() -> None:
    later = date(2026, 11, 11)
    assert fulfilment_view("granted", "pending", DUE, DUE) == "pending"
    assert fulfilment_view("granted", "pending", DUE, later) == "overdue"
    assert fulfilment_view("granted", "failed", DUE, later) == "overdue"
    assert fulfilment_view("granted", "failed", DUE, DUE) == "failed"
    assert fulfilment_view("granted", "fulfilled", DUE, later) == "fulfilled"
    assert fulfilment_view("revoked", "pending", DUE, later) is None
    assert fulfilment_view("budget_exhausted", None, DUE, later) is None


def fulfilment_record(**overrides: Any) -> bytes:
    doc = {"grant_id": 5, "status": "fulfilled", "reference": "tx-1", "at": AT.isoformat()}
    return orjson.dumps({k: v for k, v in (doc | overrides).items() if v is not ...})


def test_a_fulfilment_record_is_read_from_json() -> None:
    record = FulfilmentRecord.model_validate_json(fulfilment_record())
    assert (record.grant_id, record.status, record.reference, record.at) == (
        5, "fulfilled", "tx-1", AT
    )  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"reference": ...},
        {"reference": ""},
        {"status": "pending"},  # only final statuses are reported
        {"status": "failed"},  # without a reason
        {"grant_id": "5"},
        {"grant_id": 0},
        {"at": ...},
        {"extra": 1},
        {"reference": "tx\x00"},
    ],
)
def test_a_fulfilment_record_off_its_contract_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FulfilmentRecord.model_validate_json(fulfilment_record(**change))


def test_a_grant_record_published_before_fulfilment_existed_still_validates() -> None:
    old = {"event": "recorded", "grant_id": 1, "campaign_id": "cmp_1", "version": 1,
           "rule_id": "r", "role": "user", "user_id": "u1", "period": "2026-10",
           "status": "granted", "items": [{"kind": "sms", "amount": 1}],
           "fulfil_by": "2026-11-10"}  # fmt: skip
    record = GrantRecord.model_validate_json(orjson.dumps(old))
    assert record.fulfilment_status is None
    fulfilled = old | {"event": "fulfilled", "fulfilment_status": "fulfilled",
                       "fulfilment_reference": "tx-1", "fulfilment_at": AT.isoformat()}  # fmt: skip
    assert GrantRecord.model_validate_json(orjson.dumps(fulfilled)).event == "fulfilled"
