"""One builder for what every service wires the same way (STYLE: one bootstrap).

A service's `app.py` says what is its own — its settings, its consumers, relays and timers, its
routers, its topics — and `ServiceRuntime` does the rest: the engine and sessions on the
service's schema, the producer, the API-key directory (engage.keys.v1), the background loops,
and one lifespan that migrates, creates topics, starts everything in order and stops it in the
reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.api_auth import RequestRate
from shared.auth import KeyCache, TokenBucket
from shared.db import database_ready, make_engine, make_sessionmaker, prepare_schema
from shared.http import ReadinessCheck, create_service_app, document_limits
from shared.kafka import ensure_topics, make_producer, producer_ready
from shared.key_directory import KeyDirectory
from shared.logging import configure_logging
from shared.settings import CommonSettings, tune_gc
from shared.tasks import BackgroundTasks
from shared.user_tokens import UserTokenSettings, UserTokenVerifier

Hook = Callable[[], Awaitable[None]]
Loop = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class ServiceRuntime:
    """A service's database, broker and key plumbing; `app()` turns it into the FastAPI app."""

    name: str
    common: CommonSettings
    schema: str
    tz: ZoneInfo
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bootstrap: str
    producer: AIOKafkaProducer | None
    directory: KeyDirectory | None
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)
    _loops: list[tuple[str, Loop]] = field(default_factory=list)
    _on_start: list[Hook] = field(default_factory=list)
    _on_stop: list[Hook] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        name: str,
        common: CommonSettings,
        *,
        database_url: str | None,
        schema: str,
        kafka_clients: bool = True,
    ) -> ServiceRuntime:
        """Configure logging and build (not start) the plumbing. `kafka_clients=False` for a
        service that brings its own producer and key source (ingest)."""
        bootstrap = common.require_kafka()
        configure_logging(name, common.log_level)
        engine = make_engine(
            common.require_database_url(database_url),
            schema,
            idle_in_transaction_s=common.db_idle_in_transaction_s,
        )
        return cls(
            name=name,
            common=common,
            schema=schema,
            tz=ZoneInfo(common.timezone),
            engine=engine,
            sessions=make_sessionmaker(engine),
            bootstrap=bootstrap,
            producer=make_producer(bootstrap, name) if kafka_clients else None,
            directory=KeyDirectory(bootstrap) if kafka_clients else None,
        )

    def require_producer(self) -> AIOKafkaProducer:
        assert self.producer is not None, f"{self.name} was built without Kafka clients"
        return self.producer

    def loop(self, name: str, run: Loop) -> None:
        """Run `run()` in the background while the app lives (restarted if it crashes)."""
        self._loops.append((name, run))

    def on_start(self, hook: Hook) -> None:
        """Called after the plumbing started, before the loops."""
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Called after the loops stopped, before the plumbing stops (reverse order of adding)."""
        self._on_stop.append(hook)

    def app(
        self,
        *,
        title: str,
        description: str,
        migrations: Path,
        topics: dict[str, int],
        routers: Sequence[APIRouter],
        compacted: frozenset[str] = frozenset(),
        metadata: MetaData | None = None,
        readiness: Sequence[ReadinessCheck] = (),
        max_body_bytes: int | None = None,
        key_cache: KeyCache | None = None,
        limit_requests: bool = True,
    ) -> FastAPI:
        """The service's app: problem+json, metrics, health and readiness, the routers, and a
        lifespan that migrates the schema, creates `topics` (partitions each) and runs it all.

        `app.state` gets `sessions`, `tz`, `key_cache` (the directory's, unless given), the
        user-token verifier, the request rate and the API statement timeout."""

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await prepare_schema(
                self.engine,
                migrations,
                self.schema,
                metadata or MetaData(),
                self.common.migrate_on_start,
            )
            await ensure_topics(
                self.bootstrap, topics, self.common.topic_replication, compacted=compacted
            )
            if self.producer is not None:
                await self.producer.start()
            if self.directory is not None:
                await self.directory.start()
            tune_gc()
            for hook in self._on_start:
                await hook()
            for name, run in self._loops:
                self.tasks.spawn(name, run)
            try:
                yield
            finally:
                await self.tasks.stop()
                for hook in reversed(self._on_stop):
                    await hook()
                if self.directory is not None:
                    await self.directory.stop()
                if self.producer is not None:
                    await self.producer.stop()
                await self.engine.dispose()

        checks: list[ReadinessCheck] = [database_ready(self.engine)]
        if self.producer is not None:
            checks.append(producer_ready(self.producer))
        extra: dict[str, Any] = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
        app = create_service_app(
            service=self.name,
            title=title,
            description=description,
            version="1.0.0",
            lifespan=lifespan,
            readiness=[*checks, *readiness],
            body_read_timeout_s=self.common.body_read_timeout_s,
            **extra,
        )
        app.state.sessions = self.sessions
        app.state.tz = self.tz
        app.state.statement_timeout_ms = int(self.common.api_statement_timeout_s * 1000)
        if limit_requests:  # ingest limits events per key instead (SPEC §3)
            burst = TokenBucket(burst_s=2.0, min_burst=200.0)
            app.state.request_rate = RequestRate(self.common.api_requests_per_s, burst)
        # Read the token keys at start-up: a bad key file stops the service, not a request.
        app.state.user_tokens = UserTokenVerifier.from_settings(UserTokenSettings())
        if key_cache is None:
            assert self.directory is not None, "a service without a directory brings its keys"
            key_cache = KeyCache(self.directory.principals, ttl_s=1.0, miss_reload_s=0.0)
        app.state.key_cache = key_cache
        for router in routers:
            app.include_router(router)
        if limit_requests:
            document_limits(app)
        return app
