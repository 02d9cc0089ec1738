"""Opaque cursors for `limit` + `cursor` paging (SPEC §7): the last row's sort key, encoded.

A cursor comes back from the client, so it is input like any other: `decode_cursor` refuses
(400 `invalid_cursor`) every key element the database could not take as a parameter — an
integer outside signed 64 bits, a non-finite number, a bool, a nested value, text that is long
or carries a NUL — before any caller sees it, so no forged cursor can reach a query and 500.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

import orjson

from shared.errors import BadRequest
from shared.text import check_text

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_KEY_TEXT = 256  # characters; every sort key we issue (ids, labels) is far shorter


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(text: str, valid: Callable[[list[Any]], bool]) -> list[Any]:
    """The key inside a cursor this API issued (and `valid` accepts); 400 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        # The standard parser, not orjson: orjson turns an integer beyond 64 bits into a float.
        key = json.loads(raw, parse_int=_int64, parse_constant=_no_constant)
        if not isinstance(key, list) or not all(storable_key_part(k) for k in key):
            raise ValueError
        if not valid(key):
            raise ValueError
        return key
    except (ValueError, TypeError, RecursionError):
        raise BadRequest("cursor: not a cursor this API returned", code="invalid_cursor") from None


def storable_key_part(value: Any) -> bool:
    """An int64, a finite float, or short storable text: what a query parameter may be."""
    if isinstance(value, bool):  # a bool is an int to Python, not to PostgreSQL
        return False
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        if len(value) > MAX_KEY_TEXT:
            return False
        try:
            check_text(value)
        except ValueError:
            return False
        return True
    return False


def is_int(value: Any) -> bool:
    """An integer and not a bool (`isinstance(True, int)` holds)."""
    return isinstance(value, int) and not isinstance(value, bool)


def single_int(key: list[Any]) -> bool:
    """A key of one integer (row ids)."""
    return len(key) == 1 and is_int(key[0])


def single_text(key: list[Any]) -> bool:
    """A key of one string (text ids and labels)."""
    return len(key) == 1 and isinstance(key[0], str)


def _int64(digits: str) -> int:
    value = int(digits)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("integer outside signed 64 bits")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: the standard parser takes them
