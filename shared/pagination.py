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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Depends, Query
from pydantic import BaseModel, Field

from shared.errors import BadRequest
from shared.text import check_text

ItemT = TypeVar("ItemT")
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


# -- the kit every list uses: one query dependency, one generic page ------------------------

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class PageQuery:
    """`limit` and `cursor` of a list request (SPEC §7)."""

    limit: int
    cursor: str | None

    def after(self, valid: Callable[[list[Any]], bool]) -> list[Any] | None:
        """The sort key to continue after (`valid` checks its shape), or None on page one."""
        return None if self.cursor is None else decode_cursor(self.cursor, valid)

    def next_cursor(self, items: Sequence[Any], key: Callable[[Any], list[Any]]) -> str | None:
        """A cursor for the page after `items`, or None when this page is the last."""
        return encode_cursor(key(items[-1])) if len(items) == self.limit and items else None


def _page_query(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=512, description="`next_cursor` of the previous page."),
    ] = None,
) -> PageQuery:
    return PageQuery(limit, cursor)


PageParams = Annotated[PageQuery, Depends(_page_query)]
"""The one page-query dependency: `page: PageParams` in a route."""


class Page(BaseModel, Generic[ItemT]):
    """One page of a list; `next_cursor` is null on the last page."""

    items: list[ItemT]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")
