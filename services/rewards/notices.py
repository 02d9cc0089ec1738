"""Notify's counts of one campaign's reward notices (SPEC §12), read over HTTP for the campaign
report when rewards is told where notify is (REWARDS_NOTIFY_URL); otherwise the report says
notices are unknown and `engage report` asks notify itself."""

from __future__ import annotations

from typing import Any

import httpx


class NotifyCounts:
    def __init__(self, base_url: str, key: str, timeout_s: float = 5.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def campaign(self, campaign_id: str) -> dict[str, Any] | None:
        """The campaign's notices by status and reason, or None when notify cannot say."""
        try:
            r = await self._client.get(
                "/v1/notifications/counts", params={"campaign_id": campaign_id}
            )
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        doc: dict[str, Any] = r.json()
        return doc
