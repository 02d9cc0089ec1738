"""SPEC §16, the pure parts: when a failed settlement is retried, which faults defer the whole
pass instead, and what is recorded as the reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.retry import Backoff
from shared.failures import REASON_CHARS, failure_reason, is_transient


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def db_error(sqlstate: str | None, kind: type[DBAPIError] = DBAPIError) -> DBAPIError:
    return kind("SELECT 1", {"secret": "x"}, _DriverError("boom", sqlstate))


def test_first_retry_waits_the_base_then_doubles() -> None:
    backoff = Backoff(base_s=30)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=240),
    ]


def test_retries_are_never_more_than_an_hour_apart() -> None:
    backoff = Backoff(base_s=30)
    assert backoff.delay(8) == timedelta(hours=1)  # 30 × 2^7 = 3840 s
    assert backoff.delay(10_000) == timedelta(hours=1)


def test_base_is_configurable() -> None:
    assert Backoff(base_s=1).delay(3) == timedelta(seconds=4)


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("SELECT 1", {}, _DriverError("gone", None)),
        InterfaceError("SELECT 1", {}, _DriverError("connection is closed", None)),
        db_error("08006"),  # connection failure
        db_error("57P01"),  # admin shutdown
        db_error("40001"),  # serialization failure
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_connection_loss_defers_the_whole_pass(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("year 10000 is out of range"),
        OverflowError("date value out of range"),
        KeyError("online_points"),
        db_error("22P02"),  # invalid input syntax for type double precision
        db_error("23505"),  # unique violation
        db_error("42703"),  # undefined column: our SQL is wrong
    ],
)
def test_a_bug_or_a_data_error_belongs_to_one_campaign(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_a_parameter_the_driver_cannot_encode_is_not_transient() -> None:
    orig = _DriverError("invalid input for query argument $1", None)
    orig.__cause__ = ValueError("value out of int64 range")
    assert not is_transient(InterfaceError("SELECT $1", {}, orig))


def test_reason_names_the_exception_on_one_line() -> None:
    assert failure_reason(ValueError("year 10000\n is out of range")) == (
        "ValueError: year 10000 is out of range"
    )
    assert failure_reason(KeyError()) == "KeyError"


def test_reason_of_a_database_error_leaves_the_statement_parameters_out() -> None:
    reason = failure_reason(db_error("22P02"))
    assert reason == "_DriverError: boom"


def test_reason_of_an_invalid_stored_definition_names_the_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        CampaignDefinition.model_validate({"name": "x", "rules": []})
    reason = failure_reason(caught.value)
    assert reason.startswith("CampaignDefinition is invalid: ")
    assert "starts_at: Field required" in reason and "\n" not in reason


def test_reason_shows_no_credentials_keys_or_phone_numbers() -> None:
    reason = failure_reason(
        RuntimeError(
            "cannot reach postgresql://engage:hunter2@db:5432/engage; password=hunter2 "
            "key eng_0123abcd_s3cr3tv4lue user 13812345678"
        )
    )
    assert "hunter2" not in reason and "s3cr3tv4lue" not in reason
    assert "13812345678" not in reason
    assert "postgresql://***@db:5432/engage" in reason


def test_reason_is_truncated() -> None:
    reason = failure_reason(RuntimeError("x" * 10_000))
    assert len(reason) == REASON_CHARS and reason.endswith("…")
