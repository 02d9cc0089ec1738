"""Screening request bodies: single events, batches, partial acceptance (SPEC §3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.ingest.domain.intake import screen
from shared.contract import WindowContext
from shared.errors import BadRequest, PayloadTooLarge
from tests.builders import NOW, make_event

CTX = WindowContext(received_at=NOW)
HOUR_AGO = NOW - timedelta(hours=1)


def test_single_event_object_is_one_item() -> None:
    result = screen(make_event(at=HOUR_AGO), CTX)
    assert len(result.accepted) == 1 and not result.rejected


def test_mixed_batch_accepts_valid_events_and_reports_the_rest_by_index() -> None:
    good = [make_event(at=HOUR_AGO), make_event("login", at=HOUR_AGO)]
    bad = make_event("points", delta=0, at=HOUR_AGO)
    result = screen({"events": [good[0], bad, good[1]]}, CTX)
    assert [a.index for a in result.accepted] == [0, 2]
    assert [(r.index, r.event_id, r.type) for r in result.rejected] == [
        (1, bad["event_id"], "points")
    ]


def test_rejection_of_a_non_object_item_has_no_event_id() -> None:
    result = screen({"events": ["nope"]}, CTX)
    assert (result.rejected[0].event_id, result.rejected[0].type) == (None, "invalid")


def test_batch_of_500_is_allowed_and_501_is_too_large() -> None:
    assert len(screen({"events": [make_event(at=HOUR_AGO)] * 500}, CTX).accepted) == 500
    with pytest.raises(PayloadTooLarge):
        screen({"events": [make_event(at=HOUR_AGO)] * 501}, CTX)


@pytest.mark.parametrize(
    "body", [[], "text", 3, {"events": []}, {"events": {}}, {"events": [], "extra": 1}]
)
def test_malformed_bodies_are_bad_requests(body: object) -> None:
    with pytest.raises(BadRequest):
        screen(body, CTX)
