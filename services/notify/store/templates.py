"""Templates as stored (SPEC §6, §15): `templates` holds the live version of each (name, channel,
locale), which notices render; `template_versions` every version ever saved, never
overwritten; `broadcast_texts` the text each broadcast's approval froze; `template_teams` the
team each template name belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.domain import broadcast
from services.notify.domain.template_versions import LIVE, PENDING, SUPERSEDED
from shared.db import lock_keys

TEMPLATE_COLUMNS = (
    "name, channel, locale, category, text, placeholders, version, updated_by, updated_at, "
    "approved_by"
)
VERSION_COLUMNS = (
    "name, channel, locale, version, category, text, placeholders, status, review, authored_by, "
    "authored_at, decided_by, decided_at"
)


@dataclass(frozen=True, slots=True)
class TemplateRow:
    """A template's live version."""

    name: str
    channel: str
    locale: str
    category: str
    text: str
    placeholders: list[str]
    version: int
    updated_by: str  # the live version's author
    updated_at: datetime  # when it went live
    approved_by: str | None  # its second principal, when it needed one


@dataclass(frozen=True, slots=True)
class VersionRow:
    name: str
    channel: str
    locale: str
    version: int
    category: str
    text: str
    placeholders: list[str]
    status: str  # pending, live, superseded, rejected
    review: str | None  # why it needs a second principal, when it does
    authored_by: str
    authored_at: datetime
    decided_by: str | None
    decided_at: datetime | None


@dataclass(frozen=True, slots=True)
class FrozenText:
    """What a broadcast's recipients reading `channel` in `locale` get, as approved."""

    channel: str
    locale: str
    template_version: int
    text: str


async def templates(session: AsyncSession) -> list[TemplateRow]:
    rows = await session.execute(
        text(f"SELECT {TEMPLATE_COLUMNS} FROM templates ORDER BY name, channel, locale")
    )
    return [TemplateRow(**r._mapping) for r in rows]


async def template(
    session: AsyncSession, name: str, channel: str, locale: str
) -> TemplateRow | None:
    row = (
        await session.execute(
            text(
                f"SELECT {TEMPLATE_COLUMNS} FROM templates "
                "WHERE name = :n AND channel = :c AND locale = :l"
            ),
            {"n": name, "c": channel, "l": locale},
        )
    ).first()
    return TemplateRow(**row._mapping) if row else None


async def team_of(session: AsyncSession, name: str) -> str | None:
    """The team a template name belongs to (None: no team, global; also for a name unknown)."""
    row = (
        await session.execute(text("SELECT team FROM template_teams WHERE name = :n"), {"n": name})
    ).first()
    return None if row is None else row.team


async def teams(session: AsyncSession) -> dict[str, str | None]:
    """Every template name's team."""
    rows = await session.execute(text("SELECT name, team FROM template_teams"))
    return {r.name: r.team for r in rows}


async def claim(session: AsyncSession, name: str, team: str | None) -> str | None:
    """The team of template `name`, recording `team` for it first when the name is new (its
    first author's; a concurrent first save waits on the row and then sees the winner's)."""
    await session.execute(
        text("INSERT INTO template_teams (name, team) VALUES (:n, :t) ON CONFLICT DO NOTHING"),
        {"n": name, "t": team},
    )
    return await team_of(session, name)


async def lock_template(session: AsyncSession, name: str, channel: str, locale: str) -> None:
    """Saves and decisions on one template take turns (version numbers, one pending)."""
    await lock_keys(session, [f"notify.template:{name}/{channel}/{locale}"])


async def version(
    session: AsyncSession, name: str, channel: str, locale: str, number: int
) -> VersionRow | None:
    row = (
        await session.execute(
            text(
                f"SELECT {VERSION_COLUMNS} FROM template_versions "
                "WHERE name = :n AND channel = :c AND locale = :l AND version = :v"
            ),
            {"n": name, "c": channel, "l": locale, "v": number},
        )
    ).first()
    return VersionRow(**row._mapping) if row else None


async def versions(
    session: AsyncSession, name: str, channel: str, locale: str, limit: int, before: int | None
) -> list[VersionRow]:
    """The template's versions, newest first, older than `before` when given."""
    rows = await session.execute(
        text(
            f"SELECT {VERSION_COLUMNS} FROM template_versions "
            "WHERE name = :n AND channel = :c AND locale = :l "
            "AND (CAST(:before AS int) IS NULL OR version < :before) "
            "ORDER BY version DESC LIMIT :k"
        ),
        {"n": name, "c": channel, "l": locale, "before": before, "k": limit},
    )
    return [VersionRow(**r._mapping) for r in rows]


async def pending_versions(session: AsyncSession, names: list[str]) -> dict[tuple[str, ...], int]:
    """The pending version number of each (name, channel, locale) of `names` that has one."""
    rows = await session.execute(
        text(
            "SELECT name, channel, locale, version FROM template_versions "
            "WHERE status = 'pending' AND name = ANY(:n)"
        ),
        {"n": names},
    )
    return {(r.name, r.channel, r.locale): int(r.version) for r in rows}


async def add_version(
    session: AsyncSession,
    name: str,
    channel: str,
    locale: str,
    category: str,
    body: str,
    placeholders: list[str],
    status: str,
    review: str | None,
    actor: str,
) -> int:
    """A new version numbered after the last one (the caller holds `lock_template`); any
    version still pending is superseded by it, and so is the live one when it goes live at
    once (then `make_live` publishes it). Returns its number."""
    key = {"n": name, "c": channel, "l": locale}
    await session.execute(
        text(
            "UPDATE template_versions SET status = :s, decided_by = CASE WHEN status = 'pending' "
            "THEN :by ELSE decided_by END, decided_at = CASE WHEN status = 'pending' THEN now() "
            "ELSE decided_at END "
            "WHERE name = :n AND channel = :c AND locale = :l AND status = ANY(:old)"
        ),
        {**key, "s": SUPERSEDED, "by": actor,
         "old": [PENDING, LIVE] if status == LIVE else [PENDING]},
    )  # fmt: skip
    row = (
        await session.execute(
            text(
                "INSERT INTO template_versions (name, channel, locale, version, category, text, "
                "placeholders, status, review, authored_by) SELECT :n, :c, :l, "
                "coalesce(max(version), 0) + 1, :cat, :t, :p, :s, :r, :by FROM template_versions "
                "WHERE name = :n AND channel = :c AND locale = :l RETURNING version"
            ),
            {
                **key,
                "cat": category,
                "t": body,
                "p": placeholders,
                "s": status,
                "r": review,
                "by": actor,
            },
        )
    ).one()
    return int(row.version)


async def decide(
    session: AsyncSession, name: str, channel: str, locale: str, number: int, status: str, by: str
) -> None:
    await session.execute(
        text(
            "UPDATE template_versions SET status = :s, decided_by = :by, decided_at = now() "
            "WHERE name = :n AND channel = :c AND locale = :l AND version = :v"
        ),
        {"n": name, "c": channel, "l": locale, "v": number, "s": status, "by": by},
    )


async def make_live(session: AsyncSession, v: VersionRow, approved_by: str | None) -> None:
    """This version becomes the one notices render; the one live before is superseded."""
    key = {"n": v.name, "c": v.channel, "l": v.locale}
    await session.execute(
        text(
            "UPDATE template_versions SET status = :s WHERE name = :n AND channel = :c "
            "AND locale = :l AND status = 'live' AND version <> :v"
        ),
        {**key, "s": SUPERSEDED, "v": v.version},
    )
    if approved_by is not None:
        await decide(session, v.name, v.channel, v.locale, v.version, LIVE, approved_by)
    await session.execute(
        text(
            "INSERT INTO templates (name, channel, locale, category, text, placeholders, version, "
            "updated_by, approved_by) VALUES (:n, :c, :l, :cat, :t, :p, :v, :by, :ok) "
            "ON CONFLICT (name, channel, locale) DO UPDATE SET category = excluded.category, "
            "text = excluded.text, placeholders = excluded.placeholders, "
            "version = excluded.version, updated_by = excluded.updated_by, "
            "approved_by = excluded.approved_by, updated_at = now()"
        ),
        {**key, "cat": v.category, "t": v.text, "p": v.placeholders, "v": v.version,
         "by": v.authored_by, "ok": approved_by},
    )  # fmt: skip


async def used_by(session: AsyncSession, name: str) -> list[int]:
    """The broadcasts not yet finished that send this template: awaiting approval, or approved
    with messages still waiting to be sent."""
    rows = await session.execute(
        text(
            "SELECT b.broadcast_id FROM broadcasts b WHERE b.template = :n AND (b.status = :p "
            "OR (b.status = :a AND EXISTS (SELECT 1 FROM notifications m "
            "WHERE m.source = 'broadcast:' || b.broadcast_id "
            "AND m.status IN ('queued', 'deferred', 'sending')))) ORDER BY b.broadcast_id"
        ),
        {"n": name, "p": broadcast.PENDING, "a": broadcast.APPROVED},
    )
    return [int(r.broadcast_id) for r in rows]


async def live_variants(
    session: AsyncSession, name: str, channels: tuple[str, ...]
) -> dict[tuple[str, str], tuple[int, str]]:
    """The live version and text of the template for each of `channels` in every locale it
    has, by (channel, locale)."""
    rows = await session.execute(
        text(
            "SELECT channel, locale, version, text FROM templates "
            "WHERE name = :n AND channel = ANY(:c)"
        ),
        {"n": name, "c": list(channels)},
    )
    return {(r.channel, r.locale): (int(r.version), r.text) for r in rows}


async def freeze(session: AsyncSession, broadcast_id: int, texts: list[FrozenText]) -> None:
    """Record the texts a broadcast's approval approved: what its recipients get."""
    if not texts:
        return
    await session.execute(
        text(
            "INSERT INTO broadcast_texts (broadcast_id, channel, locale, template_version, text) "
            "SELECT :b, * FROM unnest(CAST(:c AS text[]), CAST(:l AS text[]), "
            "CAST(:v AS int[]), CAST(:t AS text[]))"
        ),
        {
            "b": broadcast_id,
            "c": [t.channel for t in texts],
            "l": [t.locale for t in texts],
            "v": [t.template_version for t in texts],
            "t": [t.text for t in texts],
        },
    )


async def frozen(session: AsyncSession, broadcast_id: int) -> list[FrozenText]:
    """The texts a broadcast's approval froze (none for a broadcast not approved, or approved
    before texts were frozen)."""
    rows = await session.execute(
        text(
            "SELECT channel, locale, template_version, text FROM broadcast_texts "
            "WHERE broadcast_id = :b ORDER BY channel, locale"
        ),
        {"b": broadcast_id},
    )
    return [FrozenText(**r._mapping) for r in rows]
