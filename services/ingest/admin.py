"""Operator actions on ingest's own data, used by the `engage keys` command."""

from __future__ import annotations

from collections.abc import Iterable

from services.ingest.app import MIGRATIONS
from services.ingest.key_sync import publish_all_keys
from services.ingest.settings import IngestSettings
from services.ingest.store.keys import create_key
from services.ingest.store.models import metadata
from shared.auth import IssuedKey, Role
from shared.db import make_engine, make_sessionmaker, migrate, unit_of_work


async def issue_api_key(
    database_url: str,
    name: str,
    roles: Iterable[Role],
    rate_per_s: float | None = None,
    kafka_bootstrap: str | None = None,
) -> IssuedKey:
    """Create a key (migrating the schema first if needed); the secret is returned once.

    With `kafka_bootstrap`, the key is published to the key directory at once, so the other
    services accept it within a second rather than at ingest's next periodic republish.
    """
    settings = IngestSettings()
    engine = make_engine(database_url, settings.schema_name, pool_size=1)
    try:
        await migrate(engine, MIGRATIONS, settings.schema_name, metadata)
        sessions = make_sessionmaker(engine)
        async with unit_of_work(sessions) as session:
            issued = await create_key(
                session, name, roles, rate_per_s or settings.default_rate_per_s
            )
        if kafka_bootstrap:
            await publish_all_keys(sessions, kafka_bootstrap)
        return issued
    finally:
        await engine.dispose()
