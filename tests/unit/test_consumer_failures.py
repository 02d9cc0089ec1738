"""Which failures of a batch a retry can help (shared/consumer.py, SPEC §16)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from shared.consumer import OffsetConflict
from shared.failures import DATA, TRANSIENT, UNKNOWN, failure_kind


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (OverflowError("date value out of range"), DATA),
        (ValueError("year 10000 is out of range"), DATA),
        (OSError("connection reset"), TRANSIENT),
        (TimeoutError(), TRANSIENT),
        (RuntimeError("a bug"), UNKNOWN),
        (AttributeError("a bug"), UNKNOWN),
        (OffsetConflict("a zombie's batch"), TRANSIENT),
    ],
)
def test_python_errors_are_classified_by_whether_a_retry_can_help(
    error: Exception, kind: str
) -> None:
    assert failure_kind(error) == kind


class _DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        ("25P03", TRANSIENT),  # the server ended a transaction left idle too long (a frozen peer)
        ("40001", TRANSIENT),  # serialization failure
        ("57P01", TRANSIENT),  # admin shutdown
        ("22008", DATA),  # datetime out of range
        ("23505", DATA),  # unique violation
        ("42P01", UNKNOWN),  # undefined table: our SQL, not the record
    ],
)
def test_database_errors_are_classified_by_their_sqlstate(sqlstate: str, kind: str) -> None:
    error = DBAPIError("SELECT 1", {}, _DriverError(sqlstate))
    assert failure_kind(error) == kind
