"""Database plumbing: SQLAlchemy 2 async on asyncpg, one schema per service, Alembic migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.errors import EngageError


def make_engine(
    url: str, schema: str, pool_size: int = 10, idle_in_transaction_s: float = 60.0
) -> AsyncEngine:
    """An engine whose connections resolve unqualified names in the service's own schema.

    A transaction left idle longer than `idle_in_transaction_s` is ended by the server: a frozen
    process (SIGSTOP, a VM pause) must not keep its locks on consumer offsets forever, blocking
    the consumer that took its partitions over (found by the chaos suite)."""
    settings = {
        "search_path": schema,
        "application_name": schema,
        "idle_in_transaction_session_timeout": str(int(idle_in_transaction_s * 1000)),
    }
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": settings},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The one transaction boundary: commit on success, roll back on any error."""
    async with factory() as session, session.begin():
        yield session


def database_ready(engine: AsyncEngine) -> Callable[[], Awaitable[str | None]]:
    """A readiness check: None when the database answers, else the reason."""

    async def check() -> str | None:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            return f"database: {type(exc).__name__}"
        return None

    return check


def _alembic_config(script_location: Path, schema: str, metadata: MetaData) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["schema"] = schema
    cfg.attributes["metadata"] = metadata
    return cfg


async def prepare_schema(
    engine: AsyncEngine,
    script_location: Path,
    schema: str,
    metadata: MetaData,
    migrate_on_start: bool,
) -> None:
    """Migrate (the embedded default and small deployments), or — where a one-shot job runs
    `engage migrate` first (compose, Kubernetes) — refuse to start on an out-of-date schema."""
    if migrate_on_start:
        await migrate(engine, script_location, schema, metadata)
        return
    head = ScriptDirectory.from_config(_alembic_config(script_location, schema, metadata))
    expected = set(head.get_heads())
    async with engine.connect() as conn:

        def current(sync: Connection) -> set[str]:
            context = MigrationContext.configure(sync, opts={"version_table_schema": schema})
            return set(context.get_current_heads())

        found = await conn.run_sync(current)
    if found != expected:
        raise EngageError(
            f"schema {schema} is at {sorted(found) or 'nothing'}, this release needs "
            f"{sorted(expected)}: run `engage migrate` (the migrations job) first"
        )


async def migrate(
    engine: AsyncEngine, script_location: Path, schema: str, metadata: MetaData
) -> None:
    """Bring the service's schema to the newest revision; safe with concurrent replicas."""
    cfg = _alembic_config(script_location, schema, metadata)

    def upgrade(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        # One migrator at a time per schema; the others wait and then find nothing to do.
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(upgrade)


def run_migrations_online() -> None:
    """Body of every service's Alembic `env.py`: run on the connection `migrate` handed over."""
    from alembic import context

    cfg = context.config
    conn: Connection = cfg.attributes["connection"]
    context.configure(
        connection=conn,
        target_metadata=cfg.attributes["metadata"],
        version_table_schema=cfg.attributes["schema"],
        include_schemas=False,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def lock_keys(session: AsyncSession, keys: Iterable[str]) -> None:
    """Transaction-scoped advisory locks on these keys, taken in one statement in ascending
    order (so two writers never deadlock). Keys are database-wide: prefix them per service."""
    ordered = sorted(set(keys))
    if ordered:
        await session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT "
                "hashtextextended(x, 0) AS k FROM unnest(CAST(:x AS text[])) AS x ORDER BY k) s"
            ),
            {"x": ordered},
        )


def jsonb(value: Any) -> Any:
    """A jsonb column read through `text()`: asyncpg hands it over as its JSON text."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
