"""Days and months named in paths and queries are real and inside the span (SPEC §16)."""

from __future__ import annotations

from datetime import date

import pytest

from services.scoring.domain.periods import parse_month
from shared.errors import ValidationFailed
from shared.period_params import period_param
from shared.timebounds import OutOfSpan


@pytest.mark.parametrize(
    ("label", "first_day"),
    [
        ("2000-01", date(2000, 1, 1)),
        ("2099-12", date(2099, 12, 1)),
        ("2026-11-03", date(2026, 11, 3)),
        ("2000-01-01", date(2000, 1, 1)),
        ("2099-12-31", date(2099, 12, 31)),
    ],
)
def test_a_day_or_month_in_the_span_names_its_first_day(label: str, first_day: date) -> None:
    assert period_param("period", label) == first_day


@pytest.mark.parametrize(
    "label",
    ["9999-12", "1999-12", "0000-01", "2100-01", "1999-12-31", "2100-01-01", "2026-13",
     "2026-02-30", "2026-00-01", "0", "2026-W45", "2026-11-3"],
)  # fmt: skip
def test_any_other_label_is_a_422_naming_the_field(label: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        period_param("month", label)
    assert caught.value.status == 422
    assert caught.value.detail.startswith("month: ")
    assert caught.value.extra["errors"][0]["field"] == "month"


@pytest.mark.parametrize("label", ["9999-12", "1999-12", "2100-01"])
def test_a_scoring_month_outside_the_span_is_refused(label: str) -> None:
    with pytest.raises(OutOfSpan):
        parse_month(label)
