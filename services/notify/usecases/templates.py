"""Templates (SPEC §6): read, and saved only when their placeholders check out; every change
audited."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.templates import Segments, TemplateError, sms_length, validate
from services.notify.store import config
from services.notify.store.config import TemplateRow
from shared.audit import audit
from shared.db import unit_of_work
from shared.errors import NotFound, ValidationFailed


@dataclass(frozen=True, slots=True)
class TemplateView:
    template: TemplateRow
    sms: Segments | None  # an SMS template's length with its placeholders empty


def _view(row: TemplateRow) -> TemplateView:
    return TemplateView(row, sms_length(row.channel, row.text, row.placeholders))


async def list_templates(sessions: async_sessionmaker[AsyncSession]) -> list[TemplateView]:
    async with sessions() as session:
        return [_view(t) for t in await config.templates(session)]


async def get_template(
    sessions: async_sessionmaker[AsyncSession], name: str, channel: str, locale: str
) -> TemplateView:
    async with sessions() as session:
        found = await config.template(session, name, channel, locale)
    if found is None:
        raise NotFound(f"no template {name}/{channel}/{locale}", code="template_not_found")
    return _view(found)


async def put_template(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    channel: str,
    locale: str,
    category: str,
    text: str,
    placeholders: list[str],
    actor: str,
) -> TemplateView:
    """Create or change a template; 422 naming the offending field when its text and declared
    placeholders disagree."""
    try:
        validate(text, placeholders)
    except TemplateError as exc:
        raise ValidationFailed(
            str(exc),
            code="invalid_template",
            extra={"errors": [{"field": exc.field, "message": str(exc)}]},
        ) from None
    async with unit_of_work(sessions) as session:
        before = await config.template(session, name, channel, locale)
        await config.save_template(
            session, name, channel, locale, category, text, placeholders, actor
        )
        after = await config.template(session, name, channel, locale)
        assert after is not None
        subject = f"template:{name}/{channel}/{locale}"
        await audit(session, actor, "template.save", subject, before, after)
    return _view(after)
