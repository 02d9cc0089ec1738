"""SPEC §3, field by field: valid and invalid events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from shared.contract import (
    EVENT_TYPES,
    PROVINCES,
    Rejection,
    WindowContext,
    decode_envelope,
    encode_envelope,
    validate_event,
)
from tests.builders import NOW, REQUIRED, make_event

CTX = WindowContext(received_at=NOW)


def rejected(event: Any, ctx: WindowContext | None = CTX) -> Rejection:
    result = validate_event(event, ctx)
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result


def accepted(event: Any, ctx: WindowContext | None = CTX) -> None:
    result = validate_event(event, ctx)
    assert not isinstance(result, Rejection), result.message


HOUR_AGO = NOW - timedelta(hours=1)


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_every_type_with_its_required_fields_is_accepted(kind: str) -> None:
    accepted(make_event(kind, at=HOUR_AGO))


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        (kind, field)
        for kind, fields in REQUIRED.items()
        for field in fields
        if not (kind == "message" and field == "group_id")
    ],
)
def test_missing_required_field_is_rejected_naming_it(kind: str, field: str) -> None:
    event = make_event(kind, at=HOUR_AGO)
    del event[field]
    r = rejected(event)
    assert r.code == "missing_field"
    assert r.message.startswith(f"{field}:")


@pytest.mark.parametrize("field", ["event_id", "type", "occurred_at", "user_id"])
def test_missing_common_field_is_rejected(field: str) -> None:
    event = make_event("points", at=HOUR_AGO)
    del event[field]
    r = rejected(event)
    assert r.code == "missing_field"
    assert field in r.message


def test_message_without_group_is_a_one_to_one_chat() -> None:
    accepted(make_event("message", group_id=..., to_user_id="u2", at=HOUR_AGO))


def test_unknown_top_level_field_is_rejected() -> None:
    r = rejected(make_event(colour="red", at=HOUR_AGO))
    assert (r.code, r.message.split(":")[0]) == ("unknown_field", "colour")


def test_field_of_another_type_is_rejected_as_unknown() -> None:
    r = rejected(make_event("message", delta=5, at=HOUR_AGO))
    assert r.code == "unknown_field" and "delta" in r.message


def test_client_is_added_by_ingest_not_the_client() -> None:
    r = rejected(make_event(received_at=NOW.isoformat(), at=HOUR_AGO))
    assert "received_at" in r.message


@pytest.mark.parametrize("bad", ["not-a-uuid", "", 123, "6f1c2a8e8a7e4d1b9a532f1d6c1e0b11x"])
def test_event_id_must_be_a_uuid_string(bad: Any) -> None:
    assert "event_id" in rejected(make_event(event_id=bad, at=HOUR_AGO)).message


def test_unknown_type_is_rejected() -> None:
    r = rejected(make_event(at=HOUR_AGO) | {"type": "poke"})
    assert r.code == "unknown_type"


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-22T04:00:00",
        "2026-11-22 04:00:00+08:00",
        "2026-11-22",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-22T04:00:00.1234567+08:00",
        1795336304,
    ],
)
def test_occurred_at_must_be_rfc3339_with_offset(stamp: Any) -> None:
    r = rejected(make_event(at=HOUR_AGO) | {"occurred_at": stamp})
    assert r.message.startswith("occurred_at:")


@pytest.mark.parametrize(
    "stamp", ["2026-11-22T04:00:00Z", "2026-11-22T12:00:00.5+08:00", "2026-11-21t23:00:00-05:00"]
)
def test_rfc3339_variants_are_accepted(stamp: str) -> None:
    accepted(make_event(at=HOUR_AGO) | {"occurred_at": stamp})


def test_occurred_at_more_than_five_minutes_ahead_is_rejected() -> None:
    r = rejected(make_event(at=NOW + timedelta(minutes=5, seconds=1)))
    assert r.code == "out_of_window" and "future" in r.message


def test_occurred_at_up_to_five_minutes_ahead_is_accepted() -> None:
    accepted(make_event(at=NOW + timedelta(minutes=5)))


def test_occurred_at_older_than_35_days_is_rejected_on_the_live_endpoint() -> None:
    r = rejected(make_event(at=NOW - timedelta(days=35, seconds=1)))
    assert r.code == "out_of_window" and "older than 35 days" in r.message


def test_occurred_at_exactly_35_days_old_is_accepted() -> None:
    accepted(make_event(at=NOW - timedelta(days=35)))


def test_import_accepts_any_age_but_not_the_future() -> None:
    history = WindowContext(received_at=NOW, max_age=None)
    accepted(make_event(at=NOW - timedelta(days=400)), history)
    assert rejected(make_event(at=NOW + timedelta(minutes=6)), history).code == "out_of_window"


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00+14:00",  # the import that stopped scoring (issue 13)
        "9999-12-31T23:00:00-14:00",  # beyond year 9999 in UTC
        "1999-12-31T23:59:59+00:00",
        "2000-01-01T23:59:59+00:00",  # local day 1999-12-31 west of UTC
        "2099-12-31T00:00:00+00:00",  # local day 2100-01-01 east of UTC
    ],
)
def test_imported_time_outside_2000_to_2099_is_refused_as_out_of_range(stamp: str) -> None:
    history = WindowContext(received_at=NOW, max_age=None)
    rejection = rejected(make_event(occurred_at=stamp), history)
    assert rejection.code == "out_of_range"
    assert "2000-01-02 and 2099-12-30" in rejection.message


@pytest.mark.parametrize("stamp", ["2000-01-02T00:00:00+00:00", "2000-01-02T08:00:00+08:00"])
def test_the_first_instant_of_the_span_is_accepted(stamp: str) -> None:
    accepted(make_event(occurred_at=stamp), WindowContext(received_at=NOW, max_age=None))


@pytest.mark.parametrize("bad", ["", "a" * 65, "has space", "semi;colon", "ünï", 42])
@pytest.mark.parametrize("field", ["user_id", "group_id", "to_user_id"])
def test_ids_are_1_to_64_chars_of_the_allowed_set(field: str, bad: Any) -> None:
    assert field in rejected(make_event("message", **{field: bad}, at=HOUR_AGO)).message


def test_ids_may_use_every_allowed_punctuation() -> None:
    accepted(make_event(user_id="A-z_0.9:x@y+z", at=HOUR_AGO))
    accepted(make_event(user_id="a" * 64, at=HOUR_AGO))


@pytest.mark.parametrize("kind", ["message", "login", "logout"])
def test_client_is_required_and_one_of_pc_mobile_sms(kind: str) -> None:
    assert "client" in rejected(make_event(kind, client="tablet", at=HOUR_AGO)).message
    for client in ("pc", "mobile", "sms"):
        accepted(make_event(kind, client=client, at=HOUR_AGO))


def test_client_is_optional_on_other_types() -> None:
    accepted(make_event("points", client="pc", at=HOUR_AGO))


def test_session_id_is_at_most_64_chars() -> None:
    assert "session_id" in rejected(make_event("login", session_id="s" * 65, at=HOUR_AGO)).message


@pytest.mark.parametrize("province", PROVINCES)
def test_each_of_the_34_provinces_is_accepted(province: str) -> None:
    accepted(make_event("group_created", province=province, at=HOUR_AGO))


@pytest.mark.parametrize("province", ["CN-GD", "gd", "XX", ""])
def test_unknown_province_is_rejected(province: str) -> None:
    r = rejected(make_event("group_created", province=province, at=HOUR_AGO))
    assert "province" in r.message


def test_there_are_34_provinces() -> None:
    assert len(set(PROVINCES)) == 34


@pytest.mark.parametrize("delta", [0, 100_001, -100_001, 1.5, "5", True])
def test_points_delta_is_a_non_zero_integer_within_bounds(delta: Any) -> None:
    assert "delta" in rejected(make_event("points", delta=delta, at=HOUR_AGO)).message


@pytest.mark.parametrize("delta", [1, -1, 100_000, -100_000])
def test_points_delta_bounds_are_inclusive(delta: int) -> None:
    accepted(make_event("points", delta=delta, at=HOUR_AGO))


def test_points_reason_is_at_most_64_chars() -> None:
    accepted(make_event("points", reason="r" * 64, at=HOUR_AGO))
    assert "reason" in rejected(make_event("points", reason="r" * 65, at=HOUR_AGO)).message


@pytest.mark.parametrize("points", [0, 10_001, -1, 2.0])
def test_bonus_card_points_is_an_integer_in_1_to_10000(points: Any) -> None:
    assert "points" in rejected(make_event("bonus_card", points=points, at=HOUR_AGO)).message


def test_properties_are_carried_up_to_4_kib() -> None:
    accepted(make_event(properties={"blob": "x" * 4000}, at=HOUR_AGO))
    r = rejected(make_event(properties={"blob": "x" * 4100}, at=HOUR_AGO))
    assert r.message.startswith("properties:")


def test_properties_must_be_an_object() -> None:
    assert "properties" in rejected(make_event(properties=[1, 2], at=HOUR_AGO)).message


def test_an_event_must_be_an_object() -> None:
    assert rejected([1, 2, 3]).code == "invalid_event"


def test_several_errors_are_all_named() -> None:
    r = rejected(make_event("points", delta=0, user_id="", at=HOUR_AGO))
    assert "delta" in r.message and "user_id" in r.message


def test_envelope_round_trip_keeps_the_event_as_sent() -> None:
    raw = make_event("points", at=HOUR_AGO)
    env = decode_envelope(encode_envelope(raw, NOW.isoformat(), "k1", "relay"))
    assert env.source == "k1" and env.received_at == NOW
    assert env.event.event_id == raw["event_id"] and env.event.type == "points"


def test_malformed_envelope_is_refused_with_a_reason() -> None:
    record = orjson.dumps({**make_event("points", at=HOUR_AGO), "received_at": NOW.isoformat()})
    with pytest.raises(ValueError, match="source"):
        decode_envelope(record)
    with pytest.raises(ValueError, match="type"):
        decode_envelope(b'{"received_at": "2026-11-22T04:00:00Z", "source": "k"}')


def test_envelope_timestamps_must_carry_an_offset() -> None:
    raw = make_event("points", at=HOUR_AGO)
    with pytest.raises(ValueError, match="received_at"):
        decode_envelope(encode_envelope(raw, "2026-11-22T04:00:00", "k", "relay"))


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b", "bell\x07"])
def test_text_a_database_cannot_store_is_rejected_naming_the_field(bad: str) -> None:
    result = rejected(make_event("group_created", name=bad, at=HOUR_AGO))
    assert result.message.startswith("name: ")  # (pydantic refuses lone surrogates itself)
    result = rejected(make_event("message", properties={"note": [bad]}, at=HOUR_AGO))
    assert "properties" in result.message and "note[0]" in result.message


def test_tabs_and_newlines_are_ordinary_text() -> None:
    accepted(make_event("group_created", name="line one\nline\ttwo", at=HOUR_AGO))
