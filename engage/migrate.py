"""`engage migrate`: every service's schema to the newest revision, then exit — the one-shot
migrations job of docker-compose.yml and deploy/k8s (services there run with
ENGAGE_MIGRATE_ON_START=false and refuse an out-of-date schema)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData

from shared.db import make_engine, migrate
from shared.settings import CommonSettings

SCHEMAS = ("ingest", "scoring", "rewards", "notify")


def _target(service: str) -> tuple[str | None, str, Path, MetaData]:
    """(the service's own database URL, schema, migrations folder, metadata)."""
    if service == "ingest":
        from services.ingest.app import MIGRATIONS as INGEST
        from services.ingest.settings import IngestSettings
        from services.ingest.store.models import metadata

        i = IngestSettings()
        return i.database_url, i.schema_name, INGEST, metadata
    if service == "scoring":
        from services.scoring.app import MIGRATIONS as SCORING
        from services.scoring.settings import ScoringSettings

        s = ScoringSettings()
        return s.database_url, s.schema_name, SCORING, MetaData()
    if service == "rewards":
        from services.rewards.app import MIGRATIONS as REWARDS
        from services.rewards.settings import RewardsSettings

        r = RewardsSettings()
        return r.database_url, r.schema_name, REWARDS, MetaData()
    from services.notify.app import MIGRATIONS as NOTIFY
    from services.notify.settings import NotifySettings

    n = NotifySettings()
    return n.database_url, n.schema_name, NOTIFY, MetaData()


async def migrate_services(services: tuple[str, ...] = SCHEMAS) -> list[str]:
    common = CommonSettings()
    done = []
    for service in services:
        own_url, schema, folder, metadata = _target(service)
        engine = make_engine(common.require_database_url(own_url), schema, pool_size=1)
        try:
            await migrate(engine, folder, schema, metadata)
        finally:
            await engine.dispose()
        done.append(f"{service}: schema {schema} at head")
    return done
