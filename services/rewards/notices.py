"""Notify's counts of one campaign's reward notices (SPEC §12), over the campaign and per rule
and period, read over HTTP for the campaign report when rewards is told where notify is
(REWARDS_NOTIFY_URL); otherwise the report says notices are unknown and `engage report` asks
notify itself."""

from __future__ import annotations

from typing import Any

import httpx

from services.rewards.domain.report import PeriodNotices


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


def period_notices(doc: dict[str, Any]) -> list[PeriodNotices] | None:
    """The per rule and period counts of notify's answer; None from a notify that does not
    count per period (before its migration 0009), so the periods' notices stay unknown."""
    periods = doc.get("periods")
    if periods is None:
        return None
    return [
        PeriodNotices(
            str(p["rule_id"]), str(p["period"]), {str(s): int(n) for s, n in p["counts"].items()},
            list(p.get("reasons") or []), int(p.get("told_users") or 0),
        )
        for p in periods
    ]  # fmt: skip
