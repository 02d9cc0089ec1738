"""Rewards: campaigns, grants ledger, draws, settlement and simulation (SPEC §5). The one place
that wires."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.rewards.api import campaigns, grants, links, report, review, timeline
from services.rewards.consumers.fulfilment import FulfilmentConsumer
from services.rewards.consumers.metrics import MetricsConsumer
from services.rewards.domain.retry import Backoff
from services.rewards.notices import NotifyCounts
from services.rewards.settings import RewardsSettings
from services.rewards.settler import Settler
from shared.openapi_links import document_links
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import (
    FULFILMENT_DLQ,
    FULFILMENT_TOPIC,
    GRANTS_TOPIC,
    METRICS_DLQ,
    METRICS_TOPIC,
)

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(
    common: CommonSettings | None = None, settings: RewardsSettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or RewardsSettings()
    rt = ServiceRuntime.build(
        "rewards", common, database_url=settings.database_url, schema=settings.schema_name
    )
    producer = rt.require_producer()
    relay = OutboxRelay(
        rt.sessions,
        producer,
        "grants_outbox",
        GRANTS_TOPIC,
        "rewards",
        interval_s=settings.outbox_interval_s,
    )
    consumer = MetricsConsumer(
        rt.bootstrap, rt.sessions, producer, rt.tz, settings.consumer_group,
        settings.max_batch_records,
    )  # fmt: skip
    fulfilment = FulfilmentConsumer(
        rt.bootstrap, rt.sessions, producer, settings.fulfilment_consumer_group,
        settings.max_batch_records,
    )  # fmt: skip
    settler = Settler(
        rt.sessions,
        consumer,
        rt.tz,
        settings.settle_interval_s,
        settings.catch_up_timeout_s,
        backoff=Backoff(base_s=settings.settle_retry_base_s),
    )
    rt.loop("outbox-relay", relay.run)
    if settings.consume:
        rt.loop("consumer", consumer.run)
        rt.loop("fulfilment-consumer", fulfilment.run)
        rt.loop("settler", settler.run)
    app = rt.app(
        title="Engage rewards",
        description="Campaigns (rank, threshold, lottery, scaled rules over the metrics scoring "
        "publishes), approvals, budgets, a grants ledger that never pays twice, verifiable "
        "draws, settlement and simulation (SPEC §5). Grants go to engage.grants.v1; the systems "
        "that credit rewards report fulfilment here or on engage.fulfilment.v1 (SPEC §11).",
        migrations=MIGRATIONS,
        topics={
            METRICS_TOPIC: common.topic_partitions,
            GRANTS_TOPIC: common.topic_partitions,
            METRICS_DLQ: 1,
            FULFILMENT_TOPIC: common.topic_partitions,
            FULFILMENT_DLQ: 1,
        },
        compacted=frozenset({METRICS_TOPIC}),
        routers=[campaigns.router, grants.router, review.router, timeline.router, report.router],
    )
    document_links(app, links.LINKS)
    app.state.settler = settler
    if settings.notify_url:  # the campaign report's notices (SPEC §12)
        app.state.notify_counts = NotifyCounts(settings.notify_url, settings.notify_key)
    return app
