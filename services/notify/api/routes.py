"""Notify API (SPEC §6): policies, opt-outs, statuses per user, the sandbox (templates:
api/templates.py)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from services.notify.api.deps import Sessions, after_id, by_id
from services.notify.api.schemas import (
    Counts,
    Notification,
    NotificationPage,
    Policy,
    PolicyBody,
    SandboxPage,
    Timeline,
    TimelineEntry,
)
from services.notify.domain import policy as domain
from services.notify.store.config import PolicyRow
from services.notify.store.notifications import NotificationRow
from services.notify.usecases import notifications, opt_outs, policies
from shared.api_auth import RequireAdmin, RequireCampaignReader
from shared.api_deps import UserIdPath, UserIdQuery
from shared.errors import ValidationFailed
from shared.http import problems, reject_unknown_query_params
from shared.pagination import PageParams

router = APIRouter(
    prefix="/v1",
    tags=["notify"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)
Category = Annotated[str, Path(pattern=r"^(reward|marketing|service)$")]
NotificationId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/policies", response_model=list[Policy], summary="Send policies per category")
async def list_policies(sessions: Sessions, _: RequireCampaignReader) -> list[PolicyRow]:
    return await policies.list_policies(sessions)


@router.put("/policies/{category}", response_model=Policy, summary="Change a category's policy")
async def put_policy(
    category: Category, body: PolicyBody, sessions: Sessions, admin: RequireAdmin
) -> PolicyRow:
    policy = domain.Policy(
        category, body.daily_cap, time.fromisoformat(body.window_start),
        time.fromisoformat(body.window_end), timedelta(seconds=body.ttl_seconds), body.marketing,
    )  # fmt: skip
    return await policies.set_policy(sessions, policy, admin.key_id)


@router.put(
    "/users/{user_id}/opt-out",
    status_code=204,
    summary="Opt the user out of marketing messages",
)
async def opt_out(user_id: UserIdPath, sessions: Sessions, admin: RequireAdmin) -> None:
    await opt_outs.set_opt_out(sessions, user_id, True, "api", admin.key_id)


@router.delete("/users/{user_id}/opt-out", status_code=204, summary="Opt the user back in")
async def opt_in(user_id: UserIdPath, sessions: Sessions, admin: RequireAdmin) -> None:
    await opt_outs.set_opt_out(sessions, user_id, False, "api", admin.key_id)


@router.get(
    "/users/{user_id}/notifications",
    response_model=NotificationPage,
    summary="A user's notifications with their statuses, and counts by status",
)
async def user_notifications(
    user_id: UserIdPath, sessions: Sessions, _: RequireCampaignReader, page: PageParams
) -> dict[str, Any]:
    found = await notifications.user_notifications(sessions, user_id, page.limit, after_id(page))
    return {
        "items": found.items,
        "counts": found.counts,
        "opted_out": found.opted_out,
        "next_cursor": page.next_cursor(found.items, by_id),
    }


@router.get(
    "/users/{user_id}/timeline",
    response_model=Timeline,
    summary="Every notification of the user in order: status, reason, attempts, digest",
)
async def user_timeline(
    user_id: UserIdPath, sessions: Sessions, _: RequireCampaignReader, page: PageParams
) -> dict[str, Any]:
    items = await notifications.timeline(sessions, user_id, page.limit, after_id(page))
    return {
        "user_id": user_id,
        "items": [_entry(n) for n in items],
        "next_cursor": page.next_cursor(items, by_id),
    }


def _entry(n: NotificationRow) -> TimelineEntry:
    return TimelineEntry(
        notification_id=n.id, at=n.created_at, source=n.source, template=n.template,
        category=n.category, channel=n.channel, status=n.status,
        reason=n.reason, attempts=n.attempts, digest_id=n.digest_id,
        sent_channel=n.sent_channel, not_before=n.not_before, updated_at=n.updated_at,
        resent_from=n.resent_from,
    )  # fmt: skip


@router.post(
    "/notifications/{notification_id}:resend",
    response_model=Notification,
    status_code=201,
    summary="Send a notice again through the same policy (a new notification, linked)",
)
async def resend(
    notification_id: NotificationId, sessions: Sessions, admin: RequireAdmin
) -> NotificationRow:
    return await notifications.resend(sessions, notification_id, admin.key_id)


@router.get(
    "/notifications/counts",
    response_model=Counts,
    summary="Notifications by status, optionally for one source prefix (e.g. grant:) or one "
    "campaign's reward notices (with reasons and users, over the campaign and per rule and "
    "period, SPEC §12)",
)
async def counts(
    sessions: Sessions,
    _: RequireCampaignReader,
    source_prefix: Annotated[
        str | None, Query(max_length=64, pattern=r"^[a-z]+:[A-Za-z0-9_:\-]*$")
    ] = None,
    campaign_id: Annotated[str | None, Query(pattern=r"^cmp_[0-9a-f]{12}$")] = None,
) -> dict[str, Any]:
    if campaign_id is None:
        return {"counts": await notifications.status_counts(sessions, source_prefix)}
    if source_prefix is not None:
        raise ValidationFailed("campaign_id: give source_prefix or campaign_id, not both")
    return asdict(await notifications.campaign_counts(sessions, campaign_id))


@router.get(
    "/sandbox/messages",
    response_model=SandboxPage,
    summary="What the sandbox provider would have sent",
)
async def sandbox(
    *, sessions: Sessions, _: RequireCampaignReader, user_id: UserIdQuery = None, page: PageParams
) -> dict[str, Any]:
    items = await notifications.sandbox_messages(sessions, user_id, page.limit, after_id(page))
    return {"items": items, "next_cursor": page.next_cursor(items, by_id)}
