"""Operator actions on ingest's own data, used by the `engage keys` command."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest.app import MIGRATIONS
from services.ingest.key_sync import publish_all_keys
from services.ingest.settings import IngestSettings
from services.ingest.store.keys import create_key, key_records, revoke_key
from services.ingest.store.models import metadata
from shared.auth import IssuedKey, Principal, Role
from shared.db import make_engine, make_sessionmaker, migrate, unit_of_work


@asynccontextmanager
async def _key_store(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Ingest's key table (migrated first if needed), for one operator action."""
    settings = IngestSettings()
    engine = make_engine(database_url, settings.schema_name, pool_size=1)
    try:
        await migrate(engine, MIGRATIONS, settings.schema_name, metadata)
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def issue_api_key(
    database_url: str,
    name: str,
    roles: Iterable[Role],
    rate_per_s: float | None = None,
    kafka_bootstrap: str | None = None,
    event_types: Iterable[str] | None = None,
    team: str | None = None,
) -> IssuedKey:
    """Create a key; the secret is returned once. `event_types` narrows it to those types;
    `team` is whose campaigns, broadcasts and templates it works on.

    With `kafka_bootstrap`, the key is published to the key directory at once, so the other
    services accept it within a second rather than at ingest's next periodic republish.
    """
    async with _key_store(database_url) as sessions:
        async with unit_of_work(sessions) as session:
            issued = await create_key(
                session,
                name,
                roles,
                rate_per_s or IngestSettings().default_rate_per_s,
                event_types,
                team,
            )
        if kafka_bootstrap:
            await publish_all_keys(sessions, kafka_bootstrap)
        return issued


async def revoke_api_key(
    database_url: str, key_id: str, kafka_bootstrap: str | None = None
) -> bool:
    """Revoke a key (False if unknown or already revoked); with `kafka_bootstrap` every service
    drops it within a second, else at ingest's next republish (a minute)."""
    async with _key_store(database_url) as sessions:
        async with unit_of_work(sessions) as session:
            revoked = await revoke_key(session, key_id)
        if kafka_bootstrap:
            await publish_all_keys(sessions, kafka_bootstrap)
        return revoked


async def list_api_keys(database_url: str) -> list[tuple[Principal, bool]]:
    """Every key as (principal, revoked) — ids, names and roles; never a secret or hash."""
    async with _key_store(database_url) as sessions, unit_of_work(sessions) as session:
        return [(principal, revoked) for _, principal, revoked in await key_records(session)]
