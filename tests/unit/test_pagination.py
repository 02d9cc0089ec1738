"""Cursors are input (SPEC §7, §16): what the API issued decodes; anything a database could not
take as a query parameter is a 400 `invalid_cursor`, whatever the caller's own check says."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from shared.errors import BadRequest
from shared.pagination import (
    INT64_MAX,
    INT64_MIN,
    MAX_KEY_TEXT,
    decode_cursor,
    encode_cursor,
    single_int,
    single_text,
    storable_key_part,
)


def forged(json_text: str) -> str:
    """A cursor holding any JSON text, the way a client could make one by hand."""
    return base64.urlsafe_b64encode(json_text.encode()).decode().rstrip("=")


def anything(key: list[Any]) -> bool:
    return True


def assert_refused(cursor: str, valid: Any = anything) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_cursor(cursor, valid)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_cursor"


@pytest.mark.parametrize(
    "key",
    [
        [1],
        [INT64_MIN],
        [INT64_MAX],
        ["cmp_0123456789ab"],
        ["x" * MAX_KEY_TEXT],
        ["tab\tand\nnewline", "北京"],
        [12.5, 3, "g-1", 7],
        [-0.0],
        [],
    ],
)
def test_a_key_this_api_issued_decodes_to_itself(key: list[Any]) -> None:
    assert decode_cursor(encode_cursor(key), anything) == key


@pytest.mark.parametrize(
    "json_text",
    [
        pytest.param("[9223372036854775808]", id="int-2**63"),
        pytest.param("[-9223372036854775809]", id="int-below-int64"),
        pytest.param("[18446744073709551616]", id="int-2**64"),
        pytest.param("[1180591620717411303424]", id="int-2**70"),
        pytest.param("[1e400]", id="float-overflow"),
        pytest.param("[NaN]", id="nan"),
        pytest.param("[-Infinity]", id="infinity"),
        pytest.param('["a\\u0000b"]', id="nul"),
        pytest.param('["bell\\u0007"]', id="c0-control"),
        pytest.param('["\\ud800"]', id="lone-surrogate"),
        pytest.param(f'["{"x" * (MAX_KEY_TEXT + 1)}"]', id="long-text"),
        pytest.param("[true]", id="bool"),
        pytest.param("[false]", id="false"),
        pytest.param("[null]", id="null"),
        pytest.param("[[1]]", id="nested-list"),
        pytest.param('[{"id": 1}]', id="nested-object"),
        pytest.param('[1, "ok", [2]]', id="nested-after-good-parts"),
        pytest.param('{"id": 1}', id="object"),
        pytest.param("1", id="scalar"),
        pytest.param("[1,", id="truncated-json"),
    ],
)
def test_a_key_no_query_could_take_is_refused_whatever_the_caller_accepts(
    json_text: str,
) -> None:
    assert_refused(forged(json_text), anything)


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("%%%", id="not-base64"),
        pytest.param("a", id="bad-padding"),
        pytest.param("北京", id="non-ascii"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe").decode(), id="not-utf8"),
    ],
)
def test_text_that_is_not_a_cursor_is_refused(cursor: str) -> None:
    assert_refused(cursor)


def test_the_callers_own_check_still_applies() -> None:
    assert_refused(encode_cursor(["text"]), single_int)
    assert_refused(encode_cursor([1, 2]), single_int)
    assert_refused(encode_cursor([1]), single_text)
    assert decode_cursor(encode_cursor([7]), single_int) == [7]
    assert decode_cursor(encode_cursor(["u1"]), single_text) == ["u1"]


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_not_an_integer_key(value: bool) -> None:
    assert not single_int([value])
    assert not storable_key_part(value)


@pytest.mark.parametrize(
    ("value", "storable"),
    [
        (INT64_MAX, True),
        (INT64_MAX + 1, False),
        (INT64_MIN, True),
        (INT64_MIN - 1, False),
        (0.5, True),
        (float("inf"), False),
        (float("-inf"), False),
        (float("nan"), False),
        ("x" * MAX_KEY_TEXT, True),
        ("x" * (MAX_KEY_TEXT + 1), False),
        ("a\x00b", False),
        ("\ud800", False),
        (None, False),
        ([1], False),
        ({"a": 1}, False),
    ],
)
def test_storable_key_parts(value: Any, storable: bool) -> None:
    assert storable_key_part(value) is storable
