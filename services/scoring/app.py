"""Scoring: per-user and per-group metrics and vitality (SPEC §4). The one place that wires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from sqlalchemy import MetaData

from services.scoring.api import profiles, reads
from services.scoring.consumers.events import EventsConsumer
from services.scoring.settings import ScoringSettings
from services.scoring.store import changelog
from shared.auth import KeyCache
from shared.db import database_ready, make_engine, make_sessionmaker, prepare_schema
from shared.http import create_service_app
from shared.kafka import ensure_topics, make_producer, producer_ready
from shared.key_directory import KeyDirectory
from shared.logging import configure_logging
from shared.outbox import OutboxRelay
from shared.settings import CommonSettings, tune_gc
from shared.tasks import BackgroundTasks
from shared.topics import EVENTS_DLQ, EVENTS_TOPIC, METRICS_TOPIC

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(
    common: CommonSettings | None = None, settings: ScoringSettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or ScoringSettings()
    bootstrap = common.require_kafka()
    configure_logging("scoring", common.log_level)
    tz = ZoneInfo(common.timezone)
    engine = make_engine(
        common.require_database_url(settings.database_url),
        settings.schema_name,
        idle_in_transaction_s=common.db_idle_in_transaction_s,
    )
    sessions = make_sessionmaker(engine)
    producer = make_producer(bootstrap, "scoring")
    directory = KeyDirectory(bootstrap)
    relay = OutboxRelay(
        sessions,
        producer,
        "changelog_outbox",
        METRICS_TOPIC,
        "scoring",
        interval_s=settings.changelog_interval_s,
        render=partial(changelog.render, tz=tz),
    )
    consumer = EventsConsumer(
        bootstrap,
        sessions,
        producer,
        tz,
        settings.consumer_group,
        settings.max_batch_records,
    )
    tasks = BackgroundTasks()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_schema(
            engine, MIGRATIONS, settings.schema_name, MetaData(), common.migrate_on_start
        )
        await ensure_topics(
            bootstrap,
            {
                EVENTS_TOPIC: common.topic_partitions,
                METRICS_TOPIC: common.topic_partitions,
                EVENTS_DLQ: 1,
            },
            common.topic_replication,
            compacted=frozenset({METRICS_TOPIC}),
        )
        await producer.start()
        await directory.start()
        tune_gc()
        tasks.spawn("outbox-relay", relay.run)
        if settings.consume:
            tasks.spawn("consumer", consumer.run)
        yield
        await tasks.stop()
        await directory.stop()
        await producer.stop()
        await engine.dispose()

    app = create_service_app(
        service="scoring",
        title="Engage scoring",
        description="Per-user and per-group engagement metrics, group vitality and leaderboards "
        "(SPEC §4), kept up to date from engage.events.v1 with exactly-once effect.",
        version="1.0.0",
        lifespan=lifespan,
        readiness=[database_ready(engine), producer_ready(producer)],
    )
    app.state.sessions = sessions
    app.state.tz = tz
    app.state.key_cache = KeyCache(directory.principals, ttl_s=1.0, miss_reload_s=0.0)
    app.state.consumer = consumer
    app.include_router(reads.router)
    app.include_router(profiles.router)
    return app
