"""The demo's prize review (SPEC §10, §14): a reviewed campaign's settled month waits as held
grants; a second approver reads them, flagged groups first with their reasons, excludes the
flagged ones with a reason, and releases the rest — which then go out exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Review:
    held: int = 0
    flagged: list[dict[str, Any]] = field(default_factory=list)
    excluded: int = 0
    released: int = 0


async def _held(client: httpx.AsyncClient, campaign_id: str, period: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        r = await client.get(f"/v1/campaigns/{campaign_id}/periods/{period}/held", params=params)
        r.raise_for_status()
        page = r.json()
        items += page["items"]
        if not page.get("next_cursor"):
            return items
        params["cursor"] = page["next_cursor"]


async def review_period(
    rewards_url: str, viewer_key: str, reviewer_key: str, campaign_id: str, period: str
) -> Review:
    """List the held grants, exclude the flagged groups with their reasons, release the rest."""
    review = Review()
    async with httpx.AsyncClient(
        base_url=rewards_url, timeout=120, headers={"Authorization": f"Bearer {viewer_key}"}
    ) as viewer:
        held = await _held(viewer, campaign_id, period)
    review.held = len(held)
    review.flagged = [g for g in held if g["flagged"]]
    groups = sorted({g["group_id"] for g in review.flagged if g.get("group_id")})
    users = sorted({g["user_id"] for g in review.flagged if not g.get("group_id")})
    async with httpx.AsyncClient(
        base_url=rewards_url, timeout=120, headers={"Authorization": f"Bearer {reviewer_key}"}
    ) as reviewer:
        if groups or users:
            reasons = sorted({f["reason"] for g in review.flagged for f in g["flags"]})
            r = await reviewer.post(
                f"/v1/campaigns/{campaign_id}/periods/{period}:exclude",
                json={
                    "group_ids": groups,
                    "user_ids": users,
                    "reason": ("flagged by scoring, confirmed on review: " + "; ".join(reasons))[
                        :500
                    ],
                },
            )
            r.raise_for_status()
            review.excluded = len(r.json().get("excluded", []))
        r = await reviewer.post(f"/v1/campaigns/{campaign_id}/periods/{period}:release")
        r.raise_for_status()
        review.released = len(r.json().get("released", []))
    return review


def render(review: Review, name: str, period: str) -> str:
    lines = [
        f"\nPrize review — {name}, {period} (review: true): {review.held} grants held, "
        f"{len(review.flagged)} of them flagged"
    ]
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for g in review.flagged:
        by_subject.setdefault(g.get("group_id") or g["user_id"], []).append(g)
    for subject, grants in list(by_subject.items())[:6]:
        flags = "; ".join(
            sorted({f"{f['name']}: {f['reason']}" for g in grants for f in g["flags"]})
        )
        lines.append(f"  flagged {subject} ({len(grants)} grants): {flags}")
    lines.append(
        f"  a second approver excluded {review.excluded} flagged grants with the reason, "
        f"released {review.released}: only those are published and told"
    )
    return "\n".join(lines)
