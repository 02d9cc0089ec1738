"""Scoring: per-user and per-group metrics and vitality (SPEC §4). The one place that wires."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from services.scoring.api import links, profiles, reads, stats
from services.scoring.consumers.events import EventsConsumer
from services.scoring.settings import ScoringSettings
from services.scoring.usecases import changelog
from services.scoring.usecases.ledger_retention import retention_loop
from shared.openapi_links import document_links
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import EVENTS_DLQ, EVENTS_TOPIC, METRICS_TOPIC

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(
    common: CommonSettings | None = None, settings: ScoringSettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or ScoringSettings()
    rt = ServiceRuntime.build(
        "scoring", common, database_url=settings.database_url, schema=settings.schema_name
    )
    producer = rt.require_producer()
    relay = OutboxRelay(
        rt.sessions,
        producer,
        "changelog_outbox",
        METRICS_TOPIC,
        "scoring",
        interval_s=settings.changelog_interval_s,
        render=partial(changelog.render, tz=rt.tz, thresholds=settings.anomaly_thresholds()),
    )
    consumer = EventsConsumer(
        rt.bootstrap,
        rt.sessions,
        producer,
        rt.tz,
        settings.consumer_group,
        settings.max_batch_records,
        retention=settings.retention(),
        thresholds=settings.anomaly_thresholds(),
    )
    rt.loop("outbox-relay", relay.run)
    rt.loop(
        "ledger-retention",
        retention_loop(rt.sessions, settings.retention(), settings.ledger_maintenance_interval_s),
    )
    if settings.consume:
        rt.loop("consumer", consumer.run)
    app = rt.app(
        title="Engage scoring",
        description="Per-user and per-group engagement metrics, group vitality and leaderboards "
        "(SPEC §4), kept up to date from engage.events.v1 with exactly-once effect.",
        migrations=MIGRATIONS,
        topics={
            EVENTS_TOPIC: common.topic_partitions,
            METRICS_TOPIC: common.topic_partitions,
            EVENTS_DLQ: 1,
        },
        compacted=frozenset({METRICS_TOPIC}),
        routers=[reads.router, profiles.router, stats.router],
    )
    document_links(app, links.LINKS)
    app.state.consumer = consumer
    app.state.anomaly_thresholds = settings.anomaly_thresholds()
    return app
