"""Templates (SPEC §6, §15): the live versions, each template's history, saving a new version
and the four-eyes decision on a pending one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from services.notify.api.deps import Sessions
from services.notify.api.schemas import Template, TemplateBody, TemplateVersion, TemplateVersionPage
from services.notify.domain.template_versions import PENDING
from services.notify.usecases import templates
from shared.api_auth import RequireApprover, RequireCampaignOwner, RequireCampaignReader
from shared.http import problems, reject_unknown_query_params
from shared.pagination import PageParams, single_int

router = APIRouter(
    prefix="/v1/templates",
    tags=["notify"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)
TemplateName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Channel = Annotated[str, Path(pattern=r"^(im|sms)$")]
Locale = Annotated[str, Path(pattern=r"^(zh-CN|en)$")]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("", response_model=list[Template], summary="Every template's live version")
async def list_templates(sessions: Sessions, reader: RequireCampaignReader) -> list[Template]:
    return [Template.of(t) for t in await templates.list_templates(sessions, reader)]


@router.put(
    "/{name}/{channel}/{locale}",
    response_model=TemplateVersion,
    responses={202: {"model": TemplateVersion, "description": "Saved, awaiting approval"}},
    summary="Save a new version; placeholders are checked (422 names the offender). Live at "
    "once (200), or pending a second principal's approval (202) for a reward_* template or one "
    "a broadcast not yet finished uses",
)
async def put_template(
    name: TemplateName,
    channel: Channel,
    locale: Locale,
    body: TemplateBody,
    sessions: Sessions,
    owner: RequireCampaignOwner,
    response: Response,
) -> TemplateVersion:
    saved = await templates.put_template(
        sessions, name, channel, locale, body.category, body.text, body.placeholders, owner
    )
    if saved.version.status == PENDING:
        response.status_code = 202
    return TemplateVersion.of(saved)


@router.get("/{name}/{channel}/{locale}", response_model=Template, summary="A template (live)")
async def get_template(
    name: TemplateName, channel: Channel, locale: Locale, sessions: Sessions,
    reader: RequireCampaignReader,
) -> Template:  # fmt: skip
    return Template.of(await templates.get_template(sessions, name, channel, locale, reader))


@router.get(
    "/{name}/{channel}/{locale}/versions",
    response_model=TemplateVersionPage,
    summary="A template's versions, newest first: live, pending, superseded, rejected",
)
async def template_versions(
    name: TemplateName, channel: Channel, locale: Locale, sessions: Sessions,
    reader: RequireCampaignReader, page: PageParams,
) -> dict[str, Any]:  # fmt: skip
    key = page.after(single_int)
    before = None if key is None else int(key[0])
    items = await templates.template_versions(
        sessions, name, channel, locale, reader, page.limit, before
    )
    return {
        "items": [TemplateVersion.of(v) for v in items],
        "next_cursor": page.next_cursor(items, lambda v: [v.version.version]),
    }


@router.post(
    "/{name}/{channel}/{locale}/versions/{version}:approve",
    response_model=TemplateVersion,
    responses=problems(409),
    summary="Approve a pending version (not by its author): it goes live",
)
async def approve_version(
    name: TemplateName, channel: Channel, locale: Locale, version: VersionNumber,
    sessions: Sessions, approver: RequireApprover,
) -> TemplateVersion:  # fmt: skip
    return TemplateVersion.of(
        await templates.approve_version(sessions, name, channel, locale, version, approver)
    )


@router.post(
    "/{name}/{channel}/{locale}/versions/{version}:reject",
    response_model=TemplateVersion,
    responses=problems(409),
    summary="Reject a pending version (not by its author): the live one stays",
)
async def reject_version(
    name: TemplateName, channel: Channel, locale: Locale, version: VersionNumber,
    sessions: Sessions, approver: RequireApprover,
) -> TemplateVersion:  # fmt: skip
    return TemplateVersion.of(
        await templates.reject_version(sessions, name, channel, locale, version, approver)
    )
