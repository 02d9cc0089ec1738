"""Campaigns, versions, enrollments, budgets and the audit log."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain import lifecycle
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.lifecycle import VersionState
from services.rewards.domain.review import VersionPeople
from services.rewards.domain.rules.registry import kind_of
from services.rewards.store.draws import commit_seeds
from services.rewards.store.snapshots import group_owner
from shared.audit import audit
from shared.db import jsonb
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.ownership import TeamScope

log = logging.getLogger(__name__)
UNREADABLE = Counter(
    "engage_campaigns_unreadable_total",
    "Times a stored live campaign definition failed validation and was left out.",
    ["campaign"],
)

READ_ONLY = text("SET TRANSACTION READ ONLY")


@dataclass(frozen=True, slots=True)
class LiveCampaign:
    campaign_id: str
    version: int
    state: str  # active, paused or ended
    definition: CampaignDefinition
    ended_at: datetime | None = None  # periods starting later are never settled


def _dump(definition: CampaignDefinition) -> str:
    return orjson.dumps(definition.model_dump(mode="json")).decode()


async def get(session: AsyncSession, campaign_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = (
        await session.execute(
            text(
                "SELECT campaign_id, template, created_by, created_at, live_version, state, team "
                f"FROM campaigns WHERE campaign_id = :c{' FOR UPDATE' if lock else ''}"
            ),
            {"c": campaign_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"no campaign '{campaign_id}'", code="campaign_not_found")
    doc = dict(row._mapping)
    versions = await session.execute(
        text(
            "SELECT version, status, definition, author, authors, submitted_by, approved_by, "
            "created_at, updated_at FROM campaign_versions WHERE campaign_id = :c ORDER BY version"
        ),
        {"c": campaign_id},
    )
    doc["versions"] = [
        {**dict(v._mapping), "definition": jsonb(v.definition), "authors": list(v.authors)}
        for v in versions
    ]
    budgets = await session.execute(
        text(
            "SELECT kind, total, spent, total - spent AS remaining FROM budgets "
            "WHERE campaign_id = :c ORDER BY kind"
        ),
        {"c": campaign_id},
    )
    doc["budgets"] = [dict(b._mapping) for b in budgets]
    return doc


async def team_of(session: AsyncSession, campaign_id: str, *, lock: bool = False) -> str | None:
    """The team the campaign belongs to (None: no team); 404 for an unknown campaign."""
    row = (
        await session.execute(
            text(
                f"SELECT team FROM campaigns WHERE campaign_id = :c{' FOR UPDATE' if lock else ''}"
            ),
            {"c": campaign_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"no campaign '{campaign_id}'", code="campaign_not_found")
    team: str | None = row.team
    return team


async def list_page(
    session: AsyncSession, scope: TeamScope, limit: int, after: str | None
) -> list[dict[str, Any]]:
    """The campaigns `scope` shows, by id."""
    in_scope, params = scope.where("c.team")
    rows = await session.execute(
        text(
            "SELECT c.campaign_id, c.template, c.state, c.live_version, c.created_by, "
            "c.created_at, c.team, v.definition->>'name' AS name, v.version AS newest_version "
            "FROM campaigns c JOIN LATERAL (SELECT version, definition FROM campaign_versions "
            "WHERE campaign_id = c.campaign_id ORDER BY version DESC LIMIT 1) v ON true "
            f"WHERE {in_scope} AND (CAST(:after AS text) IS NULL OR c.campaign_id > :after) "
            "ORDER BY c.campaign_id LIMIT :n"
        ),
        {**params, "after": after, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


async def create(
    session: AsyncSession,
    definition: CampaignDefinition,
    template: str | None,
    actor: str,
    team: str | None,
) -> dict[str, Any]:
    """A new campaign of `team` (its creator key's; SPEC §15), version 1 a draft."""
    campaign_id = f"cmp_{secrets.token_hex(6)}"
    await session.execute(
        text(
            "INSERT INTO campaigns (campaign_id, template, created_by, state, team) "
            "VALUES (:c, :t, :by, 'draft', :team)"
        ),
        {"c": campaign_id, "t": template, "by": actor, "team": team},
    )
    await session.execute(
        text(
            "INSERT INTO campaign_versions "
            "(campaign_id, version, status, definition, author, authors) "
            "VALUES (:c, 1, 'draft', CAST(:d AS jsonb), :by, ARRAY[CAST(:by AS text)])"
        ),
        {"c": campaign_id, "d": _dump(definition), "by": actor},
    )
    after = await get(session, campaign_id)
    await audit(session, actor, "campaign.create", f"campaign:{campaign_id}", None, after)
    return after


def _newest(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["versions"][-1])


def _state(v: dict[str, Any]) -> VersionState:
    return VersionState(
        v["version"], v["status"], v["author"], v["submitted_by"], tuple(v["authors"]),
        lifecycle.content_key(v["definition"]),
    )  # fmt: skip


async def edit(
    session: AsyncSession, campaign_id: str, definition: CampaignDefinition, actor: str
) -> dict[str, Any]:
    """Save a draft: always a new numbered version (SPEC §10 Versions) — two variants can then
    be simulated against each other; none is ever overwritten. It continues the newest
    authors of every open edit (lifecycle.open_edits)."""
    before = await get(session, campaign_id, lock=True)
    lifecycle.check_editable(before["state"])
    open_edits = lifecycle.open_edits([_state(v) for v in before["versions"]])
    return await _new_draft(session, before, definition, actor, open_edits, "campaign.edit")


async def fork(
    session: AsyncSession, campaign_id: str, from_version: int, actor: str
) -> dict[str, Any]:
    """A new draft version copied from any version, with that version's authors."""
    before = await get(session, campaign_id, lock=True)
    lifecycle.check_editable(before["state"])
    source = next((v for v in before["versions"] if v["version"] == from_version), None)
    if source is None:
        raise NotFound(
            f"campaign '{campaign_id}' has no version {from_version}", code="version_not_found"
        )
    definition = CampaignDefinition.model_validate(source["definition"])
    saved_from = [_state(source), *lifecycle.open_edits([_state(v) for v in before["versions"]])]
    return await _new_draft(session, before, definition, actor, saved_from, "version.fork")


async def _new_draft(
    session: AsyncSession,
    before: dict[str, Any],
    definition: CampaignDefinition,
    actor: str,
    saved_from: list[VersionState],
    action: str,
) -> dict[str, Any]:
    """Insert the next version as a draft; every submitted version goes back to draft (its
    review withdrawn, audited as `version.withdraw`) — issue 18's "an edit after submission
    returns the version to draft" where versions are never overwritten (SPEC §10, §15)."""
    campaign_id = before["campaign_id"]
    version = _newest(before)["version"] + 1
    await session.execute(
        text(
            "INSERT INTO campaign_versions "
            "(campaign_id, version, status, definition, author, authors) "
            "VALUES (:c, :v, 'draft', CAST(:d AS jsonb), :by, CAST(:authors AS text[]))"
        ),
        {"c": campaign_id, "v": version, "d": _dump(definition), "by": actor,
         "authors": list(lifecycle.authors_of_save(actor, saved_from))},
    )  # fmt: skip
    withdrawn = lifecycle.withdrawn_by_save(_state(v) for v in before["versions"])
    for number in withdrawn:
        await _set_version(session, campaign_id, number, lifecycle.DRAFT)
    if before["live_version"] is None:
        await _set_state(session, campaign_id, lifecycle.DRAFT)
    after = await get(session, campaign_id)
    await audit(session, actor, action, f"campaign:{campaign_id}", before, after)
    for number in withdrawn:
        await audit(
            session, actor, "version.withdraw", f"campaign:{campaign_id}",
            {"version": number, "status": lifecycle.SUBMITTED},
            {"version": number, "status": lifecycle.DRAFT,
             "reason": f"version {version} was saved while it awaited approval"},
        )  # fmt: skip
    return after


async def _set_state(
    session: AsyncSession, campaign_id: str, state: str, live_version: int | None = None
) -> None:
    await session.execute(
        text(
            "UPDATE campaigns SET state = :s, live_version = COALESCE(:v, live_version) "
            "WHERE campaign_id = :c"
        ),
        {"c": campaign_id, "s": state, "v": live_version},
    )


async def _set_version(
    session: AsyncSession, campaign_id: str, version: int, status: str, **who: str
) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in who)
    await session.execute(
        text(
            f"UPDATE campaign_versions SET status = :s, updated_at = now(){', ' if sets else ''}"
            f"{sets} WHERE campaign_id = :c AND version = :v"
        ),
        {"c": campaign_id, "v": version, "s": status, **who},
    )


async def review(
    session: AsyncSession, campaign_id: str, version: int, action: str, actor: str
) -> dict[str, Any]:
    """submit, approve or reject one version."""
    before = await get(session, campaign_id, lock=True)
    v = next((x for x in before["versions"] if x["version"] == version), None)
    if v is None:
        raise NotFound(
            f"campaign '{campaign_id}' has no version {version}", code="version_not_found"
        )
    status = lifecycle.check_transition(v["status"], action)
    if action == "approve":
        lifecycle.check_approver(_state(v), actor, [_state(x) for x in before["versions"]])
        await _set_version(session, campaign_id, version, status, approved_by=actor)
    elif action == "submit":
        await _set_version(session, campaign_id, version, status, submitted_by=actor)
    else:
        await _set_version(session, campaign_id, version, status)
    if before["live_version"] is None:
        await _set_state(session, campaign_id, status)
    after = await get(session, campaign_id)
    await audit(session, actor, f"version.{action}", f"campaign:{campaign_id}", before, after)
    return after


async def run_state(
    session: AsyncSession, campaign_id: str, action: str, actor: str, tz: ZoneInfo
) -> dict[str, Any]:
    """activate (the newest approved version), pause, resume or end the campaign."""
    before = await get(session, campaign_id, lock=True)
    if action == "activate":
        approved = [x for x in before["versions"] if x["status"] == lifecycle.APPROVED]
        if not approved:
            raise Conflict("no approved version to activate", code="invalid_transition")
        v = approved[-1]
        lifecycle.check_transition(v["status"], "activate")
        if before["state"] == lifecycle.ENDED:
            raise Conflict("the campaign has ended", code="campaign_ended")
        live = before["live_version"]
        if live is not None:
            await _set_version(session, campaign_id, live, lifecycle.SUPERSEDED)
        definition = CampaignDefinition.model_validate(v["definition"])
        await _apply_budgets(session, campaign_id, definition)
        await _commit_seeds(session, campaign_id, definition, tz)
        await _set_version(session, campaign_id, v["version"], lifecycle.ACTIVE)
        await _set_state(session, campaign_id, lifecycle.ACTIVE, v["version"])
    else:
        live = before["live_version"]
        if live is None:
            raise Conflict("the campaign has never been activated", code="invalid_transition")
        status = lifecycle.check_transition(before["state"], action)
        await _set_version(session, campaign_id, live, status)
        await _set_state(session, campaign_id, status)
    after = await get(session, campaign_id)
    await audit(session, actor, f"campaign.{action}", f"campaign:{campaign_id}", before, after)
    return after


async def _apply_budgets(
    session: AsyncSession, campaign_id: str, definition: CampaignDefinition
) -> None:
    rows = await session.execute(
        text("SELECT kind, spent FROM budgets WHERE campaign_id = :c"), {"c": campaign_id}
    )
    spent = {r.kind: int(r.spent) for r in rows}
    for kind, total in definition.budgets.items():
        if total < spent.get(kind, 0):
            raise ValidationFailed(
                f"budgets.{kind}: {total} is below the {spent[kind]} already granted",
                code="budget_below_spent",
            )
    for kind, total in sorted(definition.budgets.items()):
        await session.execute(
            text(
                "INSERT INTO budgets (campaign_id, kind, total) VALUES (:c, :k, :t) "
                "ON CONFLICT (campaign_id, kind) DO UPDATE SET total = excluded.total"
            ),
            {"c": campaign_id, "k": kind, "t": total},
        )


async def _commit_seeds(
    session: AsyncSession, campaign_id: str, definition: CampaignDefinition, tz: ZoneInfo
) -> None:
    """Choose every draw's seed now and publish only its hash (SPEC §5)."""
    for rule in definition.rules:
        if kind_of(rule).draws:
            periods = definition.window.periods(rule.period, tz)
            await commit_seeds(session, campaign_id, rule.id, periods)


async def live_campaign_rows(session: AsyncSession, states: tuple[str, ...] = ()) -> list[Row[Any]]:
    """Every campaign with a live version (optionally only in `states`), its definition as
    stored: `read_live` turns one into a LiveCampaign, or raises."""
    rows = await session.execute(
        text(
            "SELECT c.campaign_id, c.live_version, c.state, v.definition, v.updated_at "
            "FROM campaigns c "
            "JOIN campaign_versions v ON v.campaign_id = c.campaign_id "
            "AND v.version = c.live_version "
            "WHERE cardinality(CAST(:states AS text[])) = 0 OR c.state = ANY(:states) "
            "ORDER BY c.campaign_id"
        ),
        {"states": list(states)},
    )
    return list(rows.all())


def read_live(row: Row[Any]) -> LiveCampaign:
    """One row of `live_campaign_rows`; ValidationError if its definition no longer validates."""
    definition = CampaignDefinition.model_validate(jsonb(row.definition))
    ended_at = row.updated_at if row.state == lifecycle.ENDED else None
    return LiveCampaign(row.campaign_id, row.live_version, row.state, definition, ended_at)


async def live_campaigns(session: AsyncSession) -> list[LiveCampaign]:
    """Every campaign with a live version, read one campaign at a time.

    A stored definition that no longer validates (saved before a rule tightened, e.g. a window
    outside the span of shared/timebounds.py) is left out with an error logged and counted —
    never a reason for the metrics consumer to fail for every campaign; settlement records it
    as failed with the reason (usecases/settlement.py).
    """
    out: list[LiveCampaign] = []
    for row in await live_campaign_rows(session):
        try:
            out.append(read_live(row))
        except ValidationError as exc:
            UNREADABLE.labels(row.campaign_id).inc()
            log.error(
                "stored campaign definition does not validate; campaign left out",
                extra={"campaign": row.campaign_id, "version": row.live_version,
                       "error": str(exc)[:300]},
            )  # fmt: skip
    return out


async def version_people(
    session: AsyncSession, campaign_id: str, versions: Collection[int] | None = None
) -> list[VersionPeople]:
    """Who wrote and submitted each of the campaign's versions (all, or those in `versions`),
    with every writer of its content (lifecycle.writers: its authors and those of any version
    with the same definition) — what a reviewer must be none of (domain/review.py)."""
    rows = await session.execute(
        text(
            "SELECT version, status, definition, author, authors, submitted_by "
            "FROM campaign_versions WHERE campaign_id = :c ORDER BY version"
        ),
        {"c": campaign_id},
    )
    states = [
        VersionState(r.version, r.status, r.author, r.submitted_by, tuple(r.authors),
                     lifecycle.content_key(jsonb(r.definition)))
        for r in rows
    ]  # fmt: skip
    return [
        VersionPeople(
            s.version, s.author, s.submitted_by, tuple(sorted(lifecycle.writers(s, states)))
        )
        for s in states
        if versions is None or s.version in versions
    ]


async def version_definition(
    session: AsyncSession, campaign_id: str, version: int
) -> CampaignDefinition:
    row = (
        await session.execute(
            text(
                "SELECT definition FROM campaign_versions WHERE campaign_id = :c AND version = :v"
            ),
            {"c": campaign_id, "v": version},
        )
    ).first()
    if row is None:
        raise NotFound(
            f"campaign '{campaign_id}' has no version {version}", code="version_not_found"
        )
    return CampaignDefinition.model_validate(jsonb(row.definition))


async def enroll(
    session: AsyncSession, campaign_id: str, group_id: str, owner_id: str, actor: str
) -> dict[str, Any]:
    """Enroll a group by naming its owner; refused unless that user owns it (SPEC §5)."""
    await get(session, campaign_id)
    found = await group_owner(session, group_id)
    if found is None:
        raise NotFound(f"no group '{group_id}' is known to rewards yet", code="group_not_found")
    owner, dissolved = found
    if owner != owner_id:
        raise ValidationFailed(
            f"owner_id: '{owner_id}' is not the owner of group '{group_id}'", code="not_group_owner"
        )
    if dissolved:
        raise Conflict(f"group '{group_id}' is dissolved", code="group_dissolved")
    row = (
        await session.execute(
            text(
                "INSERT INTO enrollments (campaign_id, group_id, owner_id, enrolled_by) "
                "VALUES (:c, :g, :o, :by) ON CONFLICT DO NOTHING "
                "RETURNING campaign_id, group_id, owner_id, enrolled_by, enrolled_at"
            ),
            {"c": campaign_id, "g": group_id, "o": owner_id, "by": actor},
        )
    ).first()
    if row is None:
        raise Conflict(f"group '{group_id}' is already enrolled", code="already_enrolled")
    doc = dict(row._mapping)
    await audit(session, actor, "enrollment.create", f"campaign:{campaign_id}", None, doc)
    return doc


async def enrollments_page(
    session: AsyncSession, campaign_id: str, limit: int, after: str | None
) -> list[dict[str, Any]]:
    await get(session, campaign_id)
    rows = await session.execute(
        text(
            "SELECT campaign_id, group_id, owner_id, enrolled_by, enrolled_at FROM enrollments "
            "WHERE campaign_id = :c AND (CAST(:after AS text) IS NULL OR group_id > :after) "
            "ORDER BY group_id LIMIT :n"
        ),
        {"c": campaign_id, "after": after, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


async def enrolled_groups(session: AsyncSession, campaign_id: str) -> set[str]:
    rows = await session.execute(
        text("SELECT group_id FROM enrollments WHERE campaign_id = :c"), {"c": campaign_id}
    )
    return {r.group_id for r in rows}


async def audit_page(
    session: AsyncSession, subject: str | None, limit: int, after: int | None
) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT id, at, actor, action, subject, before, after FROM audit_log "
            "WHERE (CAST(:s AS text) IS NULL OR subject = :s) "
            "AND (CAST(:after AS bigint) IS NULL OR id > :after) ORDER BY id LIMIT :n"
        ),
        {"s": subject, "after": after, "n": limit},
    )
    return [{**dict(r._mapping), "before": jsonb(r.before), "after": jsonb(r.after)} for r in rows]
