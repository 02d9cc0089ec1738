"""The typed records between services (shared/records.py): what each side may rely on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from shared.metric_fields import DAY_POINTS, USER_DAY_COUNTERS
from shared.records import METRIC_RECORD, GrantRecord, SendRequest, metric_counters


def user_day(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"entity": "user", "grain": "day", "id": "u1", "period": "2026-11-20"}
    doc |= dict.fromkeys((*USER_DAY_COUNTERS, *DAY_POINTS), 1)
    return doc | overrides


def test_a_complete_user_day_is_read_with_every_counter() -> None:
    record = METRIC_RECORD.validate_json(orjson.dumps(user_day(messages=7)))
    assert record.v == 1
    assert metric_counters(record)["messages"] == 7.0
    assert set(metric_counters(record)) == {*USER_DAY_COUNTERS, *DAY_POINTS}


@pytest.mark.parametrize(
    "change",
    [
        {"messages": ...},  # a counter missing: the producer and the consumer disagree
        {"surprise": 1},  # a field the consumer does not know
        {"grain": "week"},  # no such record
        {"id": "bad\x00id"},
        {"period": "2026-11"},  # a month where a day belongs
        {"messages": "7"},  # strings are not counters
        {"v": 2},  # a version this consumer cannot read
    ],
)
def test_a_metric_record_off_its_contract_is_refused(change: dict[str, Any]) -> None:
    doc = user_day(**{k: v for k, v in change.items() if v is not ...})
    for k, v in change.items():
        if v is ...:
            del doc[k]
    with pytest.raises(ValidationError):
        METRIC_RECORD.validate_json(orjson.dumps(doc))


def test_user_month_counters_include_active_as_0_or_1() -> None:
    from shared.metric_fields import USER_MONTH_COUNTERS

    doc = {"entity": "user", "grain": "month", "id": "u1", "period": "2026-11", "active": True}
    record = METRIC_RECORD.validate_python(doc | dict.fromkeys(USER_MONTH_COUNTERS, 0))
    assert metric_counters(record)["active"] == 1.0


def test_a_grant_record_round_trips_and_refuses_unknown_fields() -> None:
    doc = {"event": "recorded", "grant_id": 1, "campaign_id": "cmp_000000000001",
           "version": 1, "rule_id": "r", "role": "user", "user_id": "u1", "period": "2026-11",
           "status": "granted", "items": [{"kind": "sms", "amount": 20}],
           "fulfil_by": "2026-12-10"}  # fmt: skip
    record = GrantRecord.model_validate_json(orjson.dumps(doc))
    assert GrantRecord.model_validate_json(record.model_dump_json()) == record
    with pytest.raises(ValidationError):
        GrantRecord.model_validate(doc | {"extra": 1})


def test_a_send_request_refuses_text_a_database_cannot_store() -> None:
    base = {"request_id": "r1", "user_id": "u1", "template": "promo", "category": "marketing"}
    assert SendRequest.model_validate(base | {"params": {"name": "李雷"}}).params == {
        "name": "李雷"
    }
    for params in ({"name": "a\x00b"}, {"a\x00": "b"}, {"long": "x" * 1001}):
        with pytest.raises(ValidationError):
            SendRequest.model_validate(base | {"params": params})
