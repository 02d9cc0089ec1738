"""Which failures of a batch a retry can help (shared/consumer.py, SPEC §16)."""

from __future__ import annotations

import pytest

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
