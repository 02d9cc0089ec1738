"""Notify API (SPEC §6): templates and policies, opt-outs, statuses per user, the sandbox."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query

from services.notify.api.schemas import (
    Counts,
    NotificationPage,
    Policy,
    PolicyBody,
    SandboxPage,
    Template,
    TemplateBody,
)
from services.notify.domain.templates import TemplateError, sms_segments, validate
from services.notify.store import config
from services.notify.store import notifications as store
from shared.api_auth import RequireAdmin, RequireCampaignOwner, RequireCampaignReader
from shared.api_deps import SessionDep, UnitOfWork
from shared.errors import NotFound, ValidationFailed
from shared.http import problems, reject_unknown_query_params
from shared.pagination import decode_cursor, encode_cursor, single_int

router = APIRouter(
    prefix="/v1",
    tags=["notify"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)
UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:@+\-]{1,64}$")]
TemplateName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Channel = Annotated[str, Path(pattern=r"^(im|sms)$")]
Locale = Annotated[str, Path(pattern=r"^(zh-CN|en)$")]
Category = Annotated[str, Path(pattern=r"^(reward|marketing|service)$")]
Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=512)]


def _after(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    value: int = decode_cursor(cursor, single_int)[0]
    return value


def _next(items: list[dict[str, Any]], limit: int) -> str | None:
    return encode_cursor([items[-1]["id"]]) if len(items) == limit else None


def _with_length(t: dict[str, Any]) -> dict[str, Any]:
    if t["channel"] == "sms":
        seg = sms_segments(t["text"].format_map(dict.fromkeys(t["placeholders"], "")))
        t = {**t, "sms": {"encoding": seg.encoding, "units": seg.units, "segments": seg.count}}
    return t


@router.get("/templates", response_model=list[Template], summary="Every template")
async def list_templates(session: SessionDep, _: RequireCampaignReader) -> list[dict[str, Any]]:
    return [_with_length(t) for t in await config.templates(session)]


@router.put(
    "/templates/{name}/{channel}/{locale}",
    response_model=Template,
    summary="Create or change a template; placeholders are checked (422 names the offender)",
)
async def put_template(
    name: TemplateName,
    channel: Channel,
    locale: Locale,
    body: TemplateBody,
    session: UnitOfWork,
    owner: RequireCampaignOwner,
) -> dict[str, Any]:
    try:
        validate(body.text, body.placeholders)
    except TemplateError as exc:
        raise ValidationFailed(
            str(exc),
            code="invalid_template",
            extra={"errors": [{"field": exc.field, "message": str(exc)}]},
        ) from None
    saved = await config.save_template(
        session, name, channel, locale, body.category, body.text, body.placeholders, owner.key_id
    )
    return _with_length(saved)


@router.get("/policies", response_model=list[Policy], summary="Send policies per category")
async def list_policies(session: SessionDep, _: RequireCampaignReader) -> list[dict[str, Any]]:
    return await config.policy_rows(session)


@router.put("/policies/{category}", response_model=Policy, summary="Change a category's policy")
async def put_policy(
    category: Category, body: PolicyBody, session: UnitOfWork, admin: RequireAdmin
) -> dict[str, Any]:
    return await config.save_policy(
        session, category, body.daily_cap, time.fromisoformat(body.window_start),
        time.fromisoformat(body.window_end), body.ttl_seconds, body.marketing, admin.key_id,
    )  # fmt: skip


@router.put(
    "/users/{user_id}/opt-out",
    status_code=204,
    summary="Opt the user out of marketing messages",
)
async def opt_out(user_id: UserId, session: UnitOfWork, admin: RequireAdmin) -> None:
    await config.set_opt_out(session, user_id, True, "api", admin.key_id)


@router.delete("/users/{user_id}/opt-out", status_code=204, summary="Opt the user back in")
async def opt_in(user_id: UserId, session: UnitOfWork, admin: RequireAdmin) -> None:
    await config.set_opt_out(session, user_id, False, "api", admin.key_id)


@router.get(
    "/users/{user_id}/notifications",
    response_model=NotificationPage,
    summary="A user's notifications with their statuses, and counts by status",
)
async def user_notifications(
    user_id: UserId,
    session: SessionDep,
    _: RequireCampaignReader,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    items = await store.by_user(session, user_id, limit, _after(cursor))
    for item in items:
        if isinstance(item["params"], str | bytes):
            item["params"] = orjson.loads(item["params"])
    return {
        "items": items,
        "counts": await store.status_counts(session, user_id=user_id),
        "opted_out": await config.is_opted_out(session, user_id),
        "next_cursor": _next(items, limit),
    }


@router.get(
    "/notifications/counts",
    response_model=Counts,
    summary="Notifications by status, optionally for one source prefix (e.g. grant:)",
)
async def counts(
    session: SessionDep,
    _: RequireCampaignReader,
    source_prefix: Annotated[
        str | None, Query(max_length=64, pattern=r"^[a-z]+:[A-Za-z0-9_\-]*$")
    ] = None,
) -> dict[str, Any]:
    return {"counts": await store.status_counts(session, source_prefix=source_prefix)}


@router.get(
    "/sandbox/messages",
    response_model=SandboxPage,
    summary="What the sandbox provider would have sent",
)
async def sandbox(
    session: SessionDep,
    _: RequireCampaignReader,
    user_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:@+\-]{1,64}$")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    items = await config.sandbox_messages(session, user_id, limit, _after(cursor))
    return {"items": items, "next_cursor": _next(items, limit)}


@router.get("/templates/{name}/{channel}/{locale}", response_model=Template, summary="A template")
async def get_template(
    name: TemplateName, channel: Channel, locale: Locale, session: SessionDep,
    _: RequireCampaignReader,
) -> dict[str, Any]:  # fmt: skip
    found = await config.template(session, name, channel, locale)
    if found is None:
        raise NotFound(f"no template {name}/{channel}/{locale}", code="template_not_found")
    return _with_length(found)
