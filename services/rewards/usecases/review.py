"""Review a held period and keep exclusion lists (SPEC §10 Review hold, Exclusions; §14).

Release: the period's held grants become granted and are published through the outbox in the
same transaction — once: a second release finds nothing held. Subjects on the campaign's
exclusion list at release time are excluded instead. Exclude: the period's held grants of the
named users or groups become `excluded` with the reason, never published. Both only by an
approver who neither authored nor submitted the version — none of its authors, nor an author of
a version with the same definition (domain/review.py, domain/lifecycle.py `writers`) — of the
campaign's team (or admin); both audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.review import EXCLUDED_BY_LIST, check_reviewer
from services.rewards.store import campaigns, ledger
from services.rewards.store.exclusions import exclusions_of, replace_exclusions
from services.rewards.usecases.campaigns import owned_campaign
from shared.audit import audit
from shared.auth import Principal

Sessions = async_sessionmaker[AsyncSession]


async def _check_period_reviewer(
    session: AsyncSession, campaign_id: str, period: str, actor: str
) -> None:
    """403 `self_review` when `actor` wrote or submitted a version the period's grants (or the
    live campaign) come from — every author of it counts."""
    versions = {v.version for v in await ledger.period_versions(session, campaign_id, period)}
    check_reviewer(await campaigns.version_people(session, campaign_id, versions), actor)


def _ids(rows: Sequence[dict[str, Any]]) -> list[int]:
    return [int(r["grant_id"]) for r in rows]


async def release_period(
    sessions: Sessions,
    campaign_id: str,
    period: str,
    approver: Principal,
    now: datetime,
    tz: ZoneInfo,
) -> dict[str, Any]:
    """Publish the period's held grants (those of excluded subjects excluded instead)."""
    actor = approver.key_id
    async with sessions() as session, session.begin():
        await owned_campaign(session, campaign_id, approver, lock=True)
        doc = await campaigns.get(session, campaign_id)
        await _check_period_reviewer(session, campaign_id, period, actor)
        listed = await ledger.exclude_held(
            session, campaign_id, period, await exclusions_of(session, campaign_id),
            EXCLUDED_BY_LIST, actor, now,
        )  # fmt: skip
        name = _name(doc)
        released = await ledger.release_held(session, campaign_id, period, actor, now, name)
        # A revocable grant whose group was dissolved meanwhile is revoked at once, as
        # settlement does: the ledger shows it granted, then revoked.
        groups = {g["group_id"] for g in released if g["revocable"] and g["group_id"]}
        revoked = []
        if groups:
            dissolved = await ledger.dissolutions(session, groups)
            revoked = await ledger.revoke_for_dissolved_groups(session, dissolved, now, tz)
        result = {
            "campaign_id": campaign_id,
            "period": period,
            "released": _ids(released),
            "excluded": _ids(listed),
            "revoked": _ids(revoked),
        }
        await audit(session, actor, "period.release", f"campaign:{campaign_id}", None, result)
    ledger.Recorded(rows=[*released, *revoked]).count()
    return result


async def exclude_subjects(
    sessions: Sessions,
    campaign_id: str,
    period: str,
    subjects: Exclusions,
    reason: str,
    approver: Principal,
    now: datetime,
) -> dict[str, Any]:
    """The period's held grants of these users or groups become excluded, with the reason."""
    actor = approver.key_id
    async with sessions() as session, session.begin():
        await owned_campaign(session, campaign_id, approver, lock=True)
        await _check_period_reviewer(session, campaign_id, period, actor)
        excluded = await ledger.exclude_held(
            session, campaign_id, period, subjects, reason, actor, now
        )
        hit_users = {g["user_id"] for g in excluded}
        hit_groups = {g["group_id"] for g in excluded}
        result = {
            "campaign_id": campaign_id,
            "period": period,
            "reason": reason,
            "excluded": _ids(excluded),
            "not_held": {
                "user_ids": sorted(subjects.users - hit_users),
                "group_ids": sorted(subjects.groups - hit_groups),
            },
        }
        await audit(session, actor, "period.exclude", f"campaign:{campaign_id}", None, result)
    ledger.Recorded(rows=excluded).count()
    return result


async def put_exclusions(
    session: AsyncSession, campaign_id: str, lists: Exclusions, reason: str, editor: Principal
) -> dict[str, Any]:
    """Replace the campaign's lists; audited with before and after. Only by an approver who
    wrote and submitted none of its versions: a list decides who can win, so an author must
    not keep one (they could pass over rivals without a second pair of eyes)."""
    actor = editor.key_id
    await owned_campaign(session, campaign_id, editor, lock=True)
    check_reviewer(await campaigns.version_people(session, campaign_id), actor)
    before = exclusion_document(campaign_id, await exclusions_of(session, campaign_id))
    await replace_exclusions(session, campaign_id, lists.users, lists.groups)
    after = exclusion_document(campaign_id, lists)
    await audit(
        session, actor, "exclusions.replace", f"campaign:{campaign_id}", before,
        {**after, "reason": reason},
    )  # fmt: skip
    return after


async def get_exclusions(
    session: AsyncSession, campaign_id: str, reader: Principal
) -> dict[str, Any]:
    await owned_campaign(session, campaign_id, reader)
    return exclusion_document(campaign_id, await exclusions_of(session, campaign_id))


def exclusion_document(campaign_id: str, lists: Exclusions) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "user_ids": sorted(lists.users),
        "group_ids": sorted(lists.groups),
    }


def _name(doc: dict[str, Any]) -> str:
    """The campaign's name as its live (else newest) version says."""
    live = doc["live_version"]
    versions = doc["versions"]
    chosen = next((v for v in versions if v["version"] == live), versions[-1])
    return str(chosen["definition"].get("name", ""))
