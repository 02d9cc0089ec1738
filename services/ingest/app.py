"""Ingest: validates client events and writes them to Kafka. The one place that wires things."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.ingest.api import events
from services.ingest.key_sync import keep_keys_published
from services.ingest.publisher import EventPublisher
from services.ingest.settings import IngestSettings
from services.ingest.store.keys import active_principals
from services.ingest.store.models import metadata
from shared.auth import KeyCache, TokenBucket
from shared.contract import EVENT_ADAPTER, MAX_AGE, MAX_BATCH_EVENTS, MAX_BODY_BYTES
from shared.db import database_ready, make_engine, make_sessionmaker, prepare_schema
from shared.http import create_service_app
from shared.kafka import ensure_topics
from shared.logging import configure_logging
from shared.settings import CommonSettings
from shared.topics import EVENTS_TOPIC

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(
    common: CommonSettings | None = None, settings: IngestSettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or IngestSettings()
    bootstrap = common.require_kafka()
    configure_logging("ingest", common.log_level)
    engine = make_engine(
        common.require_database_url(settings.database_url),
        settings.schema_name,
        idle_in_transaction_s=common.db_idle_in_transaction_s,
    )
    sessions = make_sessionmaker(engine)
    topics = {EVENTS_TOPIC: common.topic_partitions}
    publisher = EventPublisher(bootstrap, settings.broker_ack_timeout_s, topics)

    async def load_keys() -> Any:
        async with sessions() as session:
            return await active_principals(session)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_schema(
            engine, MIGRATIONS, settings.schema_name, metadata, common.migrate_on_start
        )
        await ensure_topics(bootstrap, topics, common.topic_replication)
        await publisher.start()
        key_sync = asyncio.create_task(keep_keys_published(sessions, bootstrap))
        yield
        key_sync.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await key_sync
        await publisher.stop()
        await engine.dispose()

    app = create_service_app(
        service="ingest",
        title="Engage ingest",
        description="Client apps post message, login and other engagement events here (SPEC §3).",
        version="1.0.0",
        lifespan=lifespan,
        readiness=[database_ready(engine), publisher.ready],
        # Ingest reads (and gunzips) its body itself with the exact limit; this is the backstop.
        max_body_bytes=2 * MAX_BODY_BYTES,
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.publisher = publisher
    app.state.key_cache = KeyCache(load_keys, ttl_s=settings.key_cache_ttl_s)
    app.state.rate_limiter = TokenBucket()
    app.state.max_age = MAX_AGE
    app.include_router(events.router)
    _document_event_schema(app)
    return app


def _document_event_schema(app: FastAPI) -> None:
    """Put the event contract's JSON Schema (from the pydantic models) into the OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        event = EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
        schema.setdefault("components", {})["securitySchemes"] = {
            "HTTPBearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An Engage API key: `Bearer eng_…`",
            }
        }
        components = schema["components"].setdefault("schemas", {})
        components.update(event.pop("$defs", {}))
        components["Event"] = event
        components["EventBatch"] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["events"],
            "properties": {
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_EVENTS,
                    "items": {"$ref": "#/components/schemas/Event"},
                }
            },
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
