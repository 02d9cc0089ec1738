"""Templates (SPEC §6, §15): read with their history, saved as a new version only when their
placeholders check out, live at once unless four eyes are needed; every step audited."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.template_versions import (
    LIVE,
    PENDING,
    REJECTED,
    check_decision,
    check_readable,
    owning_team,
    review_reason,
)
from services.notify.domain.templates import Segments, TemplateError, sms_length, validate
from services.notify.store import templates as store
from services.notify.store.templates import TemplateRow, VersionRow
from shared.audit import audit
from shared.auth import Principal
from shared.db import unit_of_work
from shared.errors import NotFound, ValidationFailed
from shared.ownership import TeamScope, check_team


@dataclass(frozen=True, slots=True)
class TemplateView:
    template: TemplateRow
    sms: Segments | None  # an SMS template's length with its placeholders empty
    pending_version: int | None = None  # a change awaiting a second principal
    team: str | None = None  # whose it is (None: global, SPEC §15)


@dataclass(frozen=True, slots=True)
class VersionView:
    version: VersionRow
    sms: Segments | None


def _view(row: TemplateRow, pending: int | None, team: str | None) -> TemplateView:
    return TemplateView(row, sms_length(row.channel, row.text, row.placeholders), pending, team)


def _version_view(row: VersionRow) -> VersionView:
    return VersionView(row, sms_length(row.channel, row.text, row.placeholders))


def _subject(name: str, channel: str, locale: str) -> str:
    return f"template:{name}/{channel}/{locale}"


async def list_templates(
    sessions: async_sessionmaker[AsyncSession], reader: Principal
) -> list[TemplateView]:
    """The live templates the key may read: global ones and its team's (every one for admin)."""
    scope = TeamScope.of(reader)
    async with sessions() as session:
        teams = await store.teams(session)
        live = [t for t in await store.templates(session)
                if teams.get(t.name) is None or scope.admits(teams.get(t.name))]  # fmt: skip
        pending = await store.pending_versions(session, sorted({t.name for t in live}))
    return [_view(t, pending.get((t.name, t.channel, t.locale)), teams.get(t.name)) for t in live]


async def get_template(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    channel: str,
    locale: str,
    reader: Principal,
) -> TemplateView:
    """The live version (and the number of a change awaiting approval, if any)."""
    async with sessions() as session:
        found = await store.template(session, name, channel, locale)
        if found is None:
            raise NotFound(f"no template {name}/{channel}/{locale}", code="template_not_found")
        team = await store.team_of(session, name)
        check_readable(reader, name, team)
        pending = await store.pending_versions(session, [name])
    return _view(found, pending.get((name, channel, locale)), team)


async def template_versions(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    channel: str,
    locale: str,
    reader: Principal,
    limit: int,
    before: int | None,
) -> list[VersionView]:
    """One page of the template's versions, newest first."""
    async with sessions() as session:
        found = await store.versions(session, name, channel, locale, limit, before)
        if not found and await store.version(session, name, channel, locale, 1) is None:
            raise NotFound(f"no template {name}/{channel}/{locale}", code="template_not_found")
        check_readable(reader, name, await store.team_of(session, name))
    return [_version_view(v) for v in found]


async def put_template(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    channel: str,
    locale: str,
    category: str,
    text: str,
    placeholders: list[str],
    author: Principal,
) -> VersionView:
    """Save a new version; 422 naming the offending field when its text and declared
    placeholders disagree. It goes live at once, or waits for a second principal when it is a
    reward template or in use by a broadcast not yet finished (SPEC §15). A new name becomes
    its author's team's; an existing one is changed by its team only (or admin)."""
    actor = author.key_id
    try:
        validate(text, placeholders)
    except TemplateError as exc:
        raise ValidationFailed(
            str(exc),
            code="invalid_template",
            extra={"errors": [{"field": exc.field, "message": str(exc)}]},
        ) from None
    subject = _subject(name, channel, locale)
    async with unit_of_work(sessions) as session:
        await store.lock_template(session, name, channel, locale)
        team = await store.claim(session, name, owning_team(name, author.team))
        check_team(author, team, f"template {name}")
        before = await store.template(session, name, channel, locale)
        review = review_reason(name, await store.used_by(session, name))
        status = LIVE if review is None else PENDING
        number = await store.add_version(
            session, name, channel, locale, category, text, placeholders, status, review, actor
        )
        saved = await store.version(session, name, channel, locale, number)
        assert saved is not None
        if status == LIVE:
            await store.make_live(session, saved, approved_by=None)
            await audit(session, actor, "template.save", subject, before,
                        await store.template(session, name, channel, locale))  # fmt: skip
        else:
            await audit(session, actor, "template.propose", subject, before, saved)
    return _version_view(saved)


async def _decide(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    channel: str,
    locale: str,
    number: int,
    deciding: Principal,
    approve: bool,
) -> VersionView:
    """The decision on a pending version, by an approver of the template's team (or admin)."""
    subject, decider = _subject(name, channel, locale), deciding.key_id
    async with unit_of_work(sessions) as session:
        await store.lock_template(session, name, channel, locale)
        found = await store.version(session, name, channel, locale, number)
        if found is None:
            raise NotFound(
                f"no version {number} of template {name}/{channel}/{locale}",
                code="template_version_not_found",
            )
        check_team(deciding, await store.team_of(session, name), f"template {name}")
        check_decision(f"{name}/{channel}/{locale} v{number}", found.status,
                       found.authored_by, decider)  # fmt: skip
        before = await store.template(session, name, channel, locale)
        if approve:
            await store.make_live(session, found, approved_by=decider)
        else:
            await store.decide(session, name, channel, locale, number, REJECTED, decider)
        decided = await store.version(session, name, channel, locale, number)
        assert decided is not None
        action = "template.approve" if approve else "template.reject"
        await audit(session, decider, action, subject, before,
                    {"version": decided, "live": await store.template(
                        session, name, channel, locale)})  # fmt: skip
    return _version_view(decided)


async def approve_version(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    channel: str,
    locale: str,
    number: int,
    approver: Principal,
) -> VersionView:
    """A pending version goes live, approved by someone other than its author."""
    return await _decide(sessions, name, channel, locale, number, approver, approve=True)


async def reject_version(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    channel: str,
    locale: str,
    number: int,
    approver: Principal,
) -> VersionView:
    """A pending version is refused; the live one stays."""
    return await _decide(sessions, name, channel, locale, number, approver, approve=False)
