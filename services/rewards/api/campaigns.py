"""Campaign admin API (SPEC §5): owners write drafts, approvers approve, everyone reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import ValidationError

from services.rewards.api.deps import Sessions
from services.rewards.api.schemas import (
    AuditEntry,
    Campaign,
    CampaignSummary,
    CreateCampaign,
    Draw,
    Enroll,
    Enrollment,
    ForkVersion,
    Settlement,
    SimulationRequest,
    SimulationResult,
    Template,
)
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.periods import CAMPAIGN_PERIOD, label_first_day
from services.rewards.domain.templates import TEMPLATES
from services.rewards.settings import RewardsSettings
from services.rewards.usecases import campaigns, simulate
from services.rewards.usecases.enroll import enroll_group
from shared.api_auth import (
    RequireApprover,
    RequireCampaignOwner,
    RequireCampaignReader,
    RequireUserOrPlatform,
)
from shared.api_deps import SessionDep, TimeZone, UnitOfWork
from shared.auth import Principal
from shared.errors import ValidationFailed
from shared.heavy import HEAVY_RESPONSES, heavy, with_client
from shared.http import problems, reject_unknown_query_params
from shared.pagination import Page, PageParams, PageQuery, single_int, single_text
from shared.timebounds import check_day

router = APIRouter(
    prefix="/v1",
    tags=["campaigns"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 409, 422),
)
CampaignId = Annotated[str, Path(pattern=r"^cmp_[0-9a-f]{12}$", description="cmp_…")]
VersionNo = Annotated[int, Path(ge=1, le=1_000_000)]
RuleId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$")]
PeriodLabel = Annotated[
    str,
    Path(
        pattern=r"^(\d{4}(-\d{2}(-\d{2})?|-W\d{2})?|campaign)$",
        description="A day (2026-10-03), ISO week (2026-W40), month (2026-10), year (2026) or "
        "`campaign`",
    ),
]


def period_label(field: str, label: str) -> str:
    """A period label that names a real period (or `campaign`), else a 422 naming `field`."""
    if label != CAMPAIGN_PERIOD:
        try:
            check_day(label_first_day(label)[1])  # the span first: its end must exist
        except ValueError as exc:
            message = f"{exc}; a period is a day (2026-10-03), an ISO week (2026-W40), a month "
            message += "(2026-10), a year (2026) or `campaign`"
            raise ValidationFailed(
                f"{field}: {message}", extra={"errors": [{"field": field, "message": message}]}
            ) from None
    return label


def _after_text(page: PageQuery) -> str | None:
    after = page.after(single_text)
    return None if after is None else str(after[0])


@router.get(
    "/templates",
    response_model=list[Template],
    summary="The campaign templates: the six of SPEC §1, the annual ranking, weekend chat boost",
)
async def list_templates(_: RequireCampaignReader) -> list[dict[str, str]]:
    now = datetime.now(UTC)
    return [
        {"name": name, "description": make(now, now)["description"]}
        for name, make in TEMPLATES.items()
    ]


@router.post(
    "/campaigns",
    response_model=Campaign,
    status_code=201,
    summary="Create a campaign (version 1, draft) from a template or a definition",
)
async def create_campaign(
    body: CreateCampaign, session: UnitOfWork, owner: RequireCampaignOwner
) -> dict[str, Any]:
    if body.definition is not None:
        definition = body.definition
    else:
        assert body.template and body.starts_at and body.ends_at
        doc = TEMPLATES[body.template](body.starts_at, body.ends_at)
        if body.name:
            doc["name"] = body.name
        try:
            definition = CampaignDefinition.model_validate(doc)
        except ValidationError as exc:
            raise ValidationFailed(str(exc.errors()[0]["msg"]), code="invalid_window") from None
    return await campaigns.create_campaign(session, definition, body.template, owner)


@router.get(
    "/campaigns",
    response_model=Page[CampaignSummary],
    summary="Campaigns of the key's team (every team's for admin), by id",
)
async def list_campaigns(
    session: SessionDep, reader: RequireCampaignReader, page: PageParams
) -> dict[str, Any]:
    items = await campaigns.list_campaigns(session, reader, page.limit, _after_text(page))
    return {"items": items, "next_cursor": page.next_cursor(items, lambda i: [i["campaign_id"]])}


@router.get("/campaigns/{campaign_id}", response_model=Campaign, summary="One campaign")
async def get_campaign(
    campaign_id: CampaignId, session: SessionDep, reader: RequireCampaignReader
) -> dict[str, Any]:
    return await campaigns.get_campaign(session, campaign_id, reader)


@router.put(
    "/campaigns/{campaign_id}/draft",
    response_model=Campaign,
    summary="Save a draft: every save is a new numbered version, never an overwrite",
    description="The new version's `authors` are the saver and the authors of every open edit "
    "(a version not yet approved, newer than the last approved one). A version awaiting "
    "approval (`submitted`) goes "
    "back to `draft` (audited `version.withdraw`): nobody approves a campaign being edited.",
)
async def edit_draft(
    campaign_id: CampaignId,
    definition: CampaignDefinition,
    session: UnitOfWork,
    owner: RequireCampaignOwner,
) -> dict[str, Any]:
    return await campaigns.edit_draft(session, campaign_id, definition, owner)


@router.post(
    "/campaigns/{campaign_id}/versions:fork",
    response_model=Campaign,
    status_code=201,
    summary="Fork a new draft version from any version",
    description="The fork's `authors` are the source version's, the open edits' (as on a save) "
    "and the forker; a `submitted` version goes back to `draft`, as on a save.",
)
async def fork_version(
    campaign_id: CampaignId, body: ForkVersion, session: UnitOfWork, owner: RequireCampaignOwner
) -> dict[str, Any]:
    return await campaigns.fork_version(session, campaign_id, body.from_version, owner)


@router.post(
    "/campaigns/{campaign_id}/versions/{version}:submit",
    response_model=Campaign,
    summary="Submit a draft for approval",
)
async def submit_version(
    campaign_id: CampaignId, version: VersionNo, session: UnitOfWork, owner: RequireCampaignOwner
) -> dict[str, Any]:
    return await campaigns.review_version(session, campaign_id, version, "submit", owner)


@router.post(
    "/campaigns/{campaign_id}/versions/{version}:approve",
    response_model=Campaign,
    summary="Approve a submitted version (by none of those who wrote or submitted it)",
    description="Four eyes (SPEC §15): 403 `self_approval` for the submitter, any of the "
    "version's `authors`, and any author of another version of the campaign with the same "
    "definition — re-saving someone else's edit does not make it theirs to approve.",
)
async def approve_version(
    campaign_id: CampaignId, version: VersionNo, session: UnitOfWork, approver: RequireApprover
) -> dict[str, Any]:
    return await campaigns.review_version(session, campaign_id, version, "approve", approver)


@router.post(
    "/campaigns/{campaign_id}/versions/{version}:reject",
    response_model=Campaign,
    summary="Send a submitted version back to draft",
)
async def reject_version(
    campaign_id: CampaignId, version: VersionNo, session: UnitOfWork, approver: RequireApprover
) -> dict[str, Any]:
    return await campaigns.review_version(session, campaign_id, version, "reject", approver)


def _state_route(action: str, summary: str) -> None:
    async def change_state(
        campaign_id: CampaignId, session: UnitOfWork, owner: RequireCampaignOwner, tz: TimeZone
    ) -> dict[str, Any]:
        return await campaigns.change_state(session, campaign_id, action, owner, tz)

    change_state.__name__ = f"{action}_campaign"
    router.post(f"/campaigns/{{campaign_id}}:{action}", response_model=Campaign, summary=summary)(
        change_state
    )


for _action, _summary in (
    ("activate", "Make the newest approved version live; its draws' seed hashes are published"),
    ("pause", "Pause: no thresholds fire, nothing settles"),
    ("resume", "Resume; settlements missed while paused catch up"),
    ("end", "End for good; periods after now are never settled"),
):
    _state_route(_action, _summary)


@router.post(
    "/campaigns/{campaign_id}/enrollments",
    response_model=Enrollment,
    status_code=201,
    summary="Enroll a group: its owner's user token, or a platform key acting for the owner",
    description="Only the group's owner enrolls it (SPEC §14): with a user token whose `sub` "
    "is the group's current owner (403 `not_group_owner` otherwise), or with a `platform` key "
    "acting for them (or `admin`). `owner_id` must name the owner (422 otherwise).",
)
async def enroll(
    campaign_id: CampaignId, body: Enroll, session: UnitOfWork, caller: RequireUserOrPlatform
) -> dict[str, Any]:
    return await enroll_group(session, campaign_id, body.group_id, body.owner_id, caller)


@router.get(
    "/campaigns/{campaign_id}/enrollments",
    response_model=Page[Enrollment],
    summary="Enrollments",
)
async def list_enrollments(
    campaign_id: CampaignId, session: SessionDep, reader: RequireCampaignReader, page: PageParams
) -> dict[str, Any]:
    items = await campaigns.list_enrollments(
        session, campaign_id, reader, page.limit, _after_text(page)
    )
    return {"items": items, "next_cursor": page.next_cursor(items, lambda i: [i["group_id"]])}


@router.get(
    "/campaigns/{campaign_id}/audit",
    response_model=Page[AuditEntry],
    summary="Every change to the campaign: who, when, before and after",
)
async def campaign_audit(
    campaign_id: CampaignId, session: SessionDep, reader: RequireCampaignReader, page: PageParams
) -> dict[str, Any]:
    after = page.after(single_int)
    items = await campaigns.audit_page(
        session, campaign_id, reader, page.limit, None if after is None else int(after[0])
    )
    return {"items": items, "next_cursor": page.next_cursor(items, lambda i: [i["id"]])}


@router.get(
    "/campaigns/{campaign_id}/draws",
    response_model=list[Draw],
    summary="Draws: seed hashes (published at activation), seeds once drawn",
)
async def list_draws(
    campaign_id: CampaignId, session: SessionDep, reader: RequireCampaignReader
) -> list[dict[str, Any]]:
    return await campaigns.list_draws(session, campaign_id, reader)


@router.get(
    "/campaigns/{campaign_id}/draws/{rule_id}/{period}",
    response_model=Draw,
    summary="One draw with its entries and winners, to recompute it",
)
async def get_draw(
    campaign_id: CampaignId,
    rule_id: RuleId,
    period: PeriodLabel,
    session: SessionDep,
    reader: RequireCampaignReader,
) -> dict[str, Any]:
    period_label("period", period)
    return await campaigns.get_draw(session, campaign_id, rule_id, period, reader)


@router.get(
    "/campaigns/{campaign_id}/settlements",
    response_model=Page[Settlement],
    summary="Settled periods with their duration and grant count, and failing ones with the "
    "reason and the next attempt",
)
async def list_settlements(
    campaign_id: CampaignId, session: SessionDep, reader: RequireCampaignReader, page: PageParams
) -> dict[str, Any]:
    items = await campaigns.list_settlements(
        session, campaign_id, reader, page.limit, _after_text(page)
    )
    return {
        "items": items,
        "next_cursor": page.next_cursor(items, lambda i: [f"{i['rule_id']}/{i['period']}"]),
    }


def _simulation_limits(request: Request) -> simulate.SimulationLimits:
    """`REWARDS_SIMULATION_*`, read once per app (`app.state.simulation_limits` when wired)."""
    state = request.app.state
    if not hasattr(state, "simulation_limits"):
        s = RewardsSettings()
        state.simulation_limits = simulate.SimulationLimits(
            s.simulation_max_user_days,
            s.simulation_timeout_s,
            s.simulation_max_rss_mb,
            s.simulation_in_thread,
            s.simulation_thread_nice,
        )
    limits: simulate.SimulationLimits = state.simulation_limits
    return limits


# At most ENGAGE_HEAVY_MAX_PER_SERVICE simulations and reports at once, one per key (SPEC §15).
SimulationReader = Annotated[Principal, heavy("rewards", "simulation", RequireCampaignReader)]


@router.post(
    "/campaigns/{campaign_id}/versions/{version}:simulate",
    response_model=SimulationResult,
    response_model_by_alias=True,
    summary="Backtest a version over stored metrics, without side effects",
    description="Each day of [from, to] is evaluated with the data up to that day (SPEC §9): a "
    "threshold fires on the day it would have fired live, sums stop at the evaluated day and at "
    "`to`, a period-end rule settles the periods that ended by `to`. `against` (any version, "
    "default the live one) adds that version's result and the diff. 422 `range_outside_window` "
    "when the range does not overlap the version's window.\n\n"
    "Holdouts (SPEC §12) as live evaluation applies them: a would-be winner whose "
    "HMAC-SHA256(holdout seed, user id) falls in the version's `holdout_percent` is listed "
    "`held_out` — counted in `held_out`, not in `granted`, no units, money or budget. The seed "
    "is the campaign's committed one (`holdout.seed_source: committed`, the same users live "
    "settlement holds out) or, for a campaign never activated, a public stand-in "
    "(`stand_in`); both versions of a comparison use the same seed, each its own percent.\n\n"
    "Bounded (SPEC §15, docs/operations.md): 429 with Retry-After when this replica already "
    "runs ENGAGE_HEAVY_MAX_PER_SERVICE expensive requests or this key "
    "ENGAGE_HEAVY_MAX_PER_KEY; 422 `simulation_too_large` when (days) × (rules, both versions' "
    "when compared) × (users with stored days) is over REWARDS_SIMULATION_MAX_USER_DAYS — "
    "refused before any row is read, with the estimate and the limit — or when the run's "
    "memory passes REWARDS_SIMULATION_MAX_RSS_MB; 503 `simulation_timeout` past "
    "REWARDS_SIMULATION_TIMEOUT_S. A client that disconnects cancels the work and its query.",
    responses=HEAVY_RESPONSES,
)
async def simulate_version(
    request: Request,
    campaign_id: CampaignId,
    version: VersionNo,
    body: Annotated[SimulationRequest, Body()],
    sessions: Sessions,
    reader: SimulationReader,
    tz: TimeZone,
    limits: Annotated[simulate.SimulationLimits, Depends(_simulation_limits)],
) -> dict[str, Any]:
    asked = simulate.SimulationRequest(
        campaign_id, version, body.from_day, body.to_day, body.sample, body.against
    )
    now = datetime.now(UTC)
    work = simulate.simulate_version(sessions, asked, reader, tz, now, limits)
    return await with_client(request, "rewards", work)
