"""Opaque cursors for `limit` + `cursor` paging (SPEC §7): the last row's sort key, encoded."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson

from shared.errors import BadRequest


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(text: str, valid: Callable[[list[Any]], bool]) -> list[Any]:
    """The key inside a cursor this API issued; 400 for anything else."""
    try:
        key = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(key, list) or not valid(key):
            raise ValueError
        return key
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("cursor: not a cursor this API returned", code="invalid_cursor") from None
