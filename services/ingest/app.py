"""Ingest: validates client events and writes them to Kafka. The one place that wires things."""

from __future__ import annotations

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
from shared.api_auth import BEARER_DESCRIPTION
from shared.auth import KeyCache, TokenBucket
from shared.contract import EVENT_ADAPTER, MAX_AGE, MAX_BATCH_EVENTS, MAX_BODY_BYTES
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import EVENTS_TOPIC
from shared.user_tokens import UserTokenSettings, UserTokenVerifier

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(
    common: CommonSettings | None = None,
    settings: IngestSettings | None = None,
    user_tokens: UserTokenSettings | None = None,
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or IngestSettings()
    # Read at start-up: a missing or unreadable key file stops ingest here, not per request.
    verifier = UserTokenVerifier.from_settings(user_tokens or UserTokenSettings())
    # Ingest brings its own producer (the publisher) and reads keys from its own table.
    rt = ServiceRuntime.build(
        "ingest",
        common,
        database_url=settings.database_url,
        schema=settings.schema_name,
        kafka_clients=False,
    )
    sessions = rt.sessions
    topics = {EVENTS_TOPIC: common.topic_partitions}
    publisher = EventPublisher(rt.bootstrap, settings.broker_ack_timeout_s, topics)

    async def load_keys() -> Any:
        async with sessions() as session:
            return await active_principals(session)

    async def publish_keys() -> None:
        await keep_keys_published(sessions, rt.bootstrap)

    rt.on_start(publisher.start)
    rt.on_stop(publisher.stop)
    rt.loop("key-sync", publish_keys)
    app = rt.app(
        title="Engage ingest",
        description="Client apps post their user's message, login and other engagement events "
        "here with a user token; servers post with API keys: relays (`ingest`) client types, the "
        "IM platform (`platform`) every type (SPEC §3, §14).",
        migrations=MIGRATIONS,
        metadata=metadata,
        topics=topics,
        routers=[events.router],
        readiness=[publisher.ready],
        # Ingest reads (and gunzips) its body itself with the exact limit; this is the backstop.
        max_body_bytes=2 * MAX_BODY_BYTES,
        key_cache=KeyCache(load_keys, ttl_s=settings.key_cache_ttl_s),
        limit_requests=False,  # events per key and per user instead (SPEC §3)
    )
    app.state.settings = settings
    app.state.publisher = publisher
    app.state.rate_limiter = TokenBucket()
    app.state.user_rate_limiter = TokenBucket(burst_s=1.0, min_burst=settings.user_burst)
    app.state.user_tokens = verifier
    app.state.max_age = MAX_AGE
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
                "description": BEARER_DESCRIPTION,
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
