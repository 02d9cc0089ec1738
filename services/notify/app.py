"""Notify: reward notices and send requests to IM and SMS with caps, windows, opt-outs and
retries (SPEC §6). The one place that wires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from sqlalchemy import MetaData

from services.notify.api import broadcasts, routes
from services.notify.consumers.inputs import InputsConsumer
from services.notify.dispatcher import Dispatcher
from services.notify.inbound import Inbound
from services.notify.providers.base import Provider
from services.notify.providers.im import ImWebhookProvider
from services.notify.providers.sandbox import SandboxProvider
from services.notify.providers.smpp import SmppProvider
from services.notify.segments import ScoringClient
from services.notify.settings import NotifySettings
from shared.auth import KeyCache
from shared.db import database_ready, make_engine, make_sessionmaker, prepare_schema
from shared.http import create_service_app
from shared.kafka import ensure_topics, make_producer, producer_ready
from shared.key_directory import KeyDirectory
from shared.logging import configure_logging
from shared.settings import CommonSettings, tune_gc
from shared.tasks import BackgroundTasks
from shared.topics import GRANTS_TOPIC, NOTIFY_DLQ, NOTIFY_TOPIC

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(
    common: CommonSettings | None = None, settings: NotifySettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or NotifySettings()
    bootstrap = common.require_kafka()
    configure_logging("notify", common.log_level)
    tz = ZoneInfo(common.timezone)
    engine = make_engine(
        common.require_database_url(settings.database_url),
        settings.schema_name,
        idle_in_transaction_s=common.db_idle_in_transaction_s,
    )
    sessions = make_sessionmaker(engine)
    producer = make_producer(bootstrap, "notify")
    directory = KeyDirectory(bootstrap)
    im: Provider
    if settings.im_webhook_url:
        im = ImWebhookProvider(settings.im_webhook_url, settings.im_webhook_secret)
    else:
        im = SandboxProvider(sessions, "im", settings.sandbox_fail_rate)
    sms: Provider
    smpp: SmppProvider | None = None
    if settings.smpp_host:
        inbound = Inbound(sessions, SmppProvider.name)
        sms = smpp = SmppProvider(
            settings.smpp_host,
            settings.smpp_port,
            settings.smpp_system_id,
            settings.smpp_password,
            settings.smpp_source_addr,
            inbound.receipts,
            inbound.reply,
        )
    else:
        sms = SandboxProvider(sessions, "sms", settings.sandbox_fail_rate)
    dispatcher = Dispatcher(
        sessions,
        {"im": im, "sms": sms},
        producer,
        tz,
        rates={im.name: settings.im_rate_per_s, sms.name: settings.sms_rate_per_s},
        batch=settings.dispatch_batch,
        retry_base_s=settings.retry_base_s,
        max_attempts=settings.max_attempts,
        concurrency=settings.send_concurrency,
        sending_lease_s=settings.sending_lease_s,
    )
    consumers = [
        InputsConsumer(topic, bootstrap, sessions, producer, f"{settings.consumer_group}-{name}")
        for name, topic in (("grants", GRANTS_TOPIC), ("requests", NOTIFY_TOPIC))
    ]
    tasks = BackgroundTasks()
    scoring = (
        ScoringClient(settings.scoring_url, settings.scoring_key) if settings.scoring_url else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_schema(
            engine, MIGRATIONS, settings.schema_name, MetaData(), common.migrate_on_start
        )
        await ensure_topics(
            bootstrap,
            {GRANTS_TOPIC: common.topic_partitions, NOTIFY_TOPIC: common.topic_partitions,
             NOTIFY_DLQ: 1},
            common.topic_replication,
        )  # fmt: skip
        await producer.start()
        await directory.start()
        tune_gc()
        if smpp is not None:
            await smpp.start()
        if settings.consume:
            for consumer in consumers:
                tasks.spawn(f"consumer-{consumer.topic}", consumer.run)
            tasks.spawn("dispatcher", dispatcher.run)
        yield
        await tasks.stop()
        if smpp is not None:
            await smpp.stop()
        if isinstance(im, ImWebhookProvider):
            await im.close()
        if scoring is not None:
            await scoring.close()
        await directory.stop()
        await producer.stop()
        await engine.dispose()

    app = create_service_app(
        service="notify",
        title="Engage notify",
        description="Reward notices (engage.grants.v1) and send requests (engage.notify.v1) to "
        "IM and SMS, with templates, daily caps, send windows, opt-outs, retries and a DLQ "
        "(SPEC §6).",
        version="1.0.0",
        lifespan=lifespan,
        readiness=[database_ready(engine), producer_ready(producer)],
    )
    app.state.sessions = sessions
    app.state.tz = tz
    app.state.scoring = scoring
    app.state.key_cache = KeyCache(directory.principals, ttl_s=1.0, miss_reload_s=0.0)
    app.include_router(routes.router)
    app.include_router(broadcasts.router)
    return app
