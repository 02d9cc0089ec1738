"""The API-key repository: issue, list, revoke, and load the active keys for the cache."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.store.models import api_keys
from shared.auth import IssuedKey, Principal, Role, issue_key


async def create_key(
    session: AsyncSession,
    name: str,
    roles: Iterable[Role],
    rate_per_s: float,
    event_types: Iterable[str] | None = None,
    team: str | None = None,
) -> IssuedKey:
    """A new key; `event_types` narrows it to those types (None = all its roles allow); `team`
    is whose campaigns, broadcasts and templates it works on."""
    issued = issue_key()
    await session.execute(
        insert(api_keys).values(
            key_id=issued.key_id,
            key_hash=issued.key_hash,
            name=name,
            roles=sorted(str(r) for r in roles),
            rate_per_s=rate_per_s,
            event_types=None if event_types is None else sorted(set(event_types)),
            team=team,
        )
    )
    return issued


async def revoke_key(session: AsyncSession, key_id: str) -> bool:
    result = await session.execute(
        update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def key_records(session: AsyncSession) -> list[tuple[str, Principal, bool]]:
    """Every key as (hash, principal, revoked): what the key directory topic carries."""
    rows = await session.execute(
        select(
            api_keys.c.key_hash,
            api_keys.c.key_id,
            api_keys.c.name,
            api_keys.c.roles,
            api_keys.c.rate_per_s,
            api_keys.c.event_types,
            api_keys.c.team,
            api_keys.c.revoked_at,
        )
    )
    return [
        (
            row.key_hash,
            Principal(
                key_id=row.key_id,
                name=row.name,
                roles=frozenset(Role(r) for r in row.roles if r in Role._value2member_map_),
                rate_per_s=row.rate_per_s,
                event_types=None if row.event_types is None else frozenset(row.event_types),
                team=row.team,
            ),
            row.revoked_at is not None,
        )
        for row in rows
    ]


async def active_principals(session: AsyncSession) -> list[tuple[str, Principal]]:
    return [(h, p) for h, p, revoked in await key_records(session) if not revoked]
