"""Campaigns by their owning team (SPEC §15): a campaign belongs to the team of the key that
created it, a grant to its campaign's team. A key reads and changes only its team's campaigns
and grants (admin every team's; a key without a team those without one). The team is checked
before anything about the campaign's state or its versions' authors, so a key of another team
learns nothing but the owner (403 `other_team`)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.store import campaigns, draws, holdouts, ledger, settle
from shared.auth import Principal
from shared.errors import NotFound
from shared.ownership import TeamScope, check_team


async def owned_campaign(
    session: AsyncSession, campaign_id: str, principal: Principal, *, lock: bool = False
) -> None:
    """404 for an unknown campaign, 403 `other_team` unless the key acts for its team; `lock`
    holds its row until the transaction ends."""
    team = await campaigns.team_of(session, campaign_id, lock=lock)
    check_team(principal, team, f"campaign {campaign_id}")


async def get_campaign(
    session: AsyncSession, campaign_id: str, reader: Principal
) -> dict[str, Any]:
    """The campaign with its versions and budgets."""
    doc = await campaigns.get(session, campaign_id)
    check_team(reader, doc["team"], f"campaign {campaign_id}")
    return doc


async def list_campaigns(
    session: AsyncSession, reader: Principal, limit: int, after: str | None
) -> list[dict[str, Any]]:
    """One page of the campaigns of the reader's team (every team's for admin)."""
    return await campaigns.list_page(session, TeamScope.of(reader), limit, after)


async def create_campaign(
    session: AsyncSession, definition: CampaignDefinition, template: str | None, owner: Principal
) -> dict[str, Any]:
    """A new campaign, owned by the creator key's team."""
    return await campaigns.create(session, definition, template, owner.key_id, owner.team)


async def edit_draft(
    session: AsyncSession, campaign_id: str, definition: CampaignDefinition, owner: Principal
) -> dict[str, Any]:
    await owned_campaign(session, campaign_id, owner, lock=True)
    return await campaigns.edit(session, campaign_id, definition, owner.key_id)


async def fork_version(
    session: AsyncSession, campaign_id: str, from_version: int, owner: Principal
) -> dict[str, Any]:
    await owned_campaign(session, campaign_id, owner, lock=True)
    return await campaigns.fork(session, campaign_id, from_version, owner.key_id)


async def review_version(
    session: AsyncSession, campaign_id: str, version: int, action: str, actor: Principal
) -> dict[str, Any]:
    """submit, approve or reject: by the campaign's team only, approvers included."""
    await owned_campaign(session, campaign_id, actor, lock=True)
    return await campaigns.review(session, campaign_id, version, action, actor.key_id)


async def change_state(
    session: AsyncSession, campaign_id: str, action: str, owner: Principal, tz: ZoneInfo
) -> dict[str, Any]:
    """activate, pause, resume or end the campaign."""
    await owned_campaign(session, campaign_id, owner, lock=True)
    after = await campaigns.run_state(session, campaign_id, action, owner.key_id, tz)
    if action == "activate":  # the holdout's seed hash is public from the first activation
        await holdouts.commit_seed(session, campaign_id)
    return after


async def list_enrollments(
    session: AsyncSession, campaign_id: str, reader: Principal, limit: int, after: str | None
) -> list[dict[str, Any]]:
    await owned_campaign(session, campaign_id, reader)
    return await campaigns.enrollments_page(session, campaign_id, limit, after)


async def audit_page(
    session: AsyncSession, campaign_id: str, reader: Principal, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """Every change to the campaign: who, when, before and after."""
    await owned_campaign(session, campaign_id, reader)
    return await campaigns.audit_page(session, f"campaign:{campaign_id}", limit, after)


async def list_draws(
    session: AsyncSession, campaign_id: str, reader: Principal
) -> list[dict[str, Any]]:
    await owned_campaign(session, campaign_id, reader)
    return await draws.draws_of(session, campaign_id)


async def get_draw(
    session: AsyncSession, campaign_id: str, rule_id: str, period: str, reader: Principal
) -> dict[str, Any]:
    await owned_campaign(session, campaign_id, reader)
    return await draws.draw_of(session, campaign_id, rule_id, period)


async def list_settlements(
    session: AsyncSession, campaign_id: str, reader: Principal, limit: int, after: str | None
) -> list[dict[str, Any]]:
    await owned_campaign(session, campaign_id, reader)
    return await settle.settlements_page(session, campaign_id, limit, after)


async def owned_grant(session: AsyncSession, grant_id: int, principal: Principal) -> dict[str, Any]:
    """The grant, when the key acts for its campaign's team: 404 for an unknown grant, else
    403 `other_team` naming the grant."""
    grant = await ledger.grant_by_id(session, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}", code="grant_not_found")
    team = await campaigns.team_of(session, grant["campaign_id"])
    check_team(principal, team, f"grant {grant_id} (campaign {grant['campaign_id']})")
    return grant


async def list_grants(
    session: AsyncSession,
    filters: ledger.GrantFilters,
    reader: Principal,
    limit: int,
    after: int | None,
) -> list[dict[str, Any]]:
    """One page of the grants of the reader's team's campaigns (every team's for admin)."""
    return await ledger.grants_page(session, filters, TeamScope.of(reader), limit, after)
