"""Notify: reward notices and send requests to IM and SMS with caps, windows, opt-outs and
retries (SPEC §6). The one place that wires."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from services.notify.api import broadcasts, links, routes, templates
from services.notify.consumers.inputs import InputsConsumer
from services.notify.dispatcher import Dispatcher
from services.notify.inbound import Inbound
from services.notify.providers.base import Provider
from services.notify.providers.im import ImWebhookProvider
from services.notify.providers.sandbox import SandboxProvider
from services.notify.providers.smpp import SmppProvider
from services.notify.segments import ScoringClient
from services.notify.settings import NotifySettings
from shared.openapi_links import document_links
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import GRANTS_TOPIC, NOTIFY_DLQ, NOTIFY_TOPIC

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(
    common: CommonSettings | None = None, settings: NotifySettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or NotifySettings()
    rt = ServiceRuntime.build(
        "notify", common, database_url=settings.database_url, schema=settings.schema_name
    )
    sessions, producer = rt.sessions, rt.require_producer()
    im: Provider
    if settings.im_webhook_url:
        webhook = ImWebhookProvider(settings.im_webhook_url, settings.im_webhook_secret)
        rt.on_stop(webhook.close)
        im = webhook
    else:
        im = SandboxProvider(sessions, "im", settings.sandbox_fail_rate)
    sms: Provider
    if settings.smpp_host:
        inbound = Inbound(sessions, SmppProvider.name)
        smpp = SmppProvider(
            settings.smpp_host,
            settings.smpp_port,
            settings.smpp_system_id,
            settings.smpp_password,
            settings.smpp_source_addr,
            inbound.receipts,
            inbound.reply,
        )
        rt.on_start(smpp.start)
        rt.on_stop(smpp.stop)
        sms = smpp
    else:
        sms = SandboxProvider(sessions, "sms", settings.sandbox_fail_rate)
    dispatcher = Dispatcher(
        sessions,
        {"im": im, "sms": sms},
        producer,
        rt.tz,
        rates={im.name: settings.im_rate_per_s, sms.name: settings.sms_rate_per_s},
        batch=settings.dispatch_batch,
        retry_base_s=settings.retry_base_s,
        max_attempts=settings.max_attempts,
        concurrency=settings.send_concurrency,
        sending_lease_s=settings.sending_lease_s,
        gather_s=settings.digest_gather_s,
    )
    if settings.consume:
        for name, topic in (("grants", GRANTS_TOPIC), ("requests", NOTIFY_TOPIC)):
            consumer = InputsConsumer(
                topic, rt.bootstrap, sessions, producer, f"{settings.consumer_group}-{name}",
                gather=timedelta(seconds=settings.digest_gather_s),
            )  # fmt: skip
            rt.loop(f"consumer-{topic}", consumer.run)
        rt.loop("dispatcher", dispatcher.run)
    scoring = None
    if settings.scoring_url:
        scoring = ScoringClient(settings.scoring_url, settings.scoring_key)
        rt.on_stop(scoring.close)
    app = rt.app(
        title="Engage notify",
        description="Reward notices (engage.grants.v1) and send requests (engage.notify.v1) to "
        "IM and SMS, with templates, daily caps, send windows, opt-outs, retries and a DLQ "
        "(SPEC §6).",
        migrations=MIGRATIONS,
        topics={
            GRANTS_TOPIC: common.topic_partitions,
            NOTIFY_TOPIC: common.topic_partitions,
            NOTIFY_DLQ: 1,
        },
        routers=[routes.router, templates.router, broadcasts.router],
    )
    document_links(app, links.LINKS)
    app.state.scoring = scoring
    return app
