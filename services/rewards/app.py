"""Rewards: campaigns, grants ledger, draws, settlement and simulation (SPEC §5). The one place
that wires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from sqlalchemy import MetaData

from services.rewards.api import campaigns, grants
from services.rewards.consumers.metrics import MetricsConsumer
from services.rewards.domain.retry import Backoff
from services.rewards.settings import RewardsSettings
from services.rewards.settler import Settler
from shared.auth import KeyCache
from shared.db import database_ready, make_engine, make_sessionmaker, prepare_schema
from shared.http import create_service_app
from shared.kafka import ensure_topics, make_producer, producer_ready
from shared.key_directory import KeyDirectory
from shared.logging import configure_logging
from shared.outbox import OutboxRelay
from shared.settings import CommonSettings, tune_gc
from shared.tasks import BackgroundTasks
from shared.topics import GRANTS_TOPIC, METRICS_DLQ, METRICS_TOPIC

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(
    common: CommonSettings | None = None, settings: RewardsSettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or RewardsSettings()
    bootstrap = common.require_kafka()
    configure_logging("rewards", common.log_level)
    tz = ZoneInfo(common.timezone)
    engine = make_engine(
        common.require_database_url(settings.database_url),
        settings.schema_name,
        idle_in_transaction_s=common.db_idle_in_transaction_s,
    )
    sessions = make_sessionmaker(engine)
    producer = make_producer(bootstrap, "rewards")
    directory = KeyDirectory(bootstrap)
    relay = OutboxRelay(
        sessions,
        producer,
        "grants_outbox",
        GRANTS_TOPIC,
        "rewards",
        interval_s=settings.outbox_interval_s,
    )
    consumer = MetricsConsumer(
        bootstrap, sessions, producer, tz, settings.consumer_group, settings.max_batch_records
    )
    settler = Settler(
        sessions,
        consumer,
        tz,
        settings.settle_interval_s,
        settings.catch_up_timeout_s,
        backoff=Backoff(base_s=settings.settle_retry_base_s),
    )
    tasks = BackgroundTasks()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_schema(
            engine, MIGRATIONS, settings.schema_name, MetaData(), common.migrate_on_start
        )
        await ensure_topics(
            bootstrap,
            {METRICS_TOPIC: common.topic_partitions, GRANTS_TOPIC: common.topic_partitions,
             METRICS_DLQ: 1},
            common.topic_replication,
            compacted=frozenset({METRICS_TOPIC}),
        )  # fmt: skip
        await producer.start()
        await directory.start()
        tune_gc()
        tasks.spawn("outbox-relay", relay.run)
        if settings.consume:
            tasks.spawn("consumer", consumer.run)
            tasks.spawn("settler", settler.run)
        yield
        await tasks.stop()
        await directory.stop()
        await producer.stop()
        await engine.dispose()

    app = create_service_app(
        service="rewards",
        title="Engage rewards",
        description="Campaigns (rank, threshold, lottery, scaled rules over the metrics scoring "
        "publishes), approvals, budgets, a grants ledger that never pays twice, verifiable "
        "draws, settlement and simulation (SPEC §5). Grants go to engage.grants.v1.",
        version="1.0.0",
        lifespan=lifespan,
        readiness=[database_ready(engine), producer_ready(producer)],
    )
    app.state.sessions = sessions
    app.state.tz = tz
    app.state.key_cache = KeyCache(directory.principals, ttl_s=1.0, miss_reload_s=0.0)
    app.state.settler = settler
    app.include_router(campaigns.router)
    app.include_router(grants.router)
    return app
