"""Who a broadcast goes to (SPEC §6): an explicit list, or a segment resolved at approval
through scoring's read API (members of a month's top groups in a province; users whose month
activity points reach a threshold). Notify keeps no metrics of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from shared.errors import Conflict, Unavailable, ValidationFailed

MAX_RECIPIENTS = 100_000


class ScoringClient:
    def __init__(self, base_url: str, key: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, **params: Any) -> dict[str, Any]:
        try:
            r = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise Unavailable(f"scoring unreachable: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise Unavailable(f"scoring answered {r.status_code} for {path}")
        doc: dict[str, Any] = r.json()
        return doc

    async def _pages(self, path: str, **params: Any) -> AsyncIterator[Any]:
        cursor = None
        while True:
            page = await self._get(path, **params, **({"cursor": cursor} if cursor else {}))
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if cursor is None:
                return

    async def top_group_members(self, month: str, province: str, top: int) -> set[str]:
        board = await self._get(f"/v1/leaderboards/{month}/{province}", limit=top)
        users: set[str] = set()
        for group in board["items"][:top]:
            async for user in self._pages(
                f"/v1/groups/{group['group_id']}/months/{month}/members", limit=1000
            ):
                users.add(user)
        return users

    async def active_users(self, month: str, min_points: int) -> set[str]:
        users: set[str] = set()
        async for item in self._pages(
            f"/v1/months/{month}/active-users", min_activity_points=min_points, limit=1000
        ):
            users.add(item["user_id"])
            if len(users) > MAX_RECIPIENTS:
                break
        return users


def check_resolvable(segment: dict[str, Any], scoring: ScoringClient | None) -> None:
    """Every kind but an explicit list is resolved through scoring, which must be configured."""
    if segment["kind"] != "list" and scoring is None:
        raise ValidationFailed(
            f"segment: kind '{segment['kind']}' needs scoring (NOTIFY_SCORING_URL)",
            code="segment_unavailable",
        )


async def recipients(segment: dict[str, Any], scoring: ScoringClient | None) -> list[str]:
    """The segment's users, sorted; asks scoring over HTTP (call it outside any transaction)."""
    check_resolvable(segment, scoring)
    if segment["kind"] == "list":
        users = set(segment["user_ids"])
    else:
        assert scoring is not None  # check_resolvable
        if segment["kind"] == "top_groups":
            users = await scoring.top_group_members(
                segment["month"], segment["province"], segment["top"]
            )
        else:
            users = await scoring.active_users(segment["month"], segment["min_activity_points"])
    if len(users) > MAX_RECIPIENTS:
        raise Conflict(f"segment: more than {MAX_RECIPIENTS} recipients", code="segment_too_large")
    return sorted(users)
