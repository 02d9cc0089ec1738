"""The one-shot migrations job (compose / Kubernetes): `engage migrate` brings every schema to
head; a service started with ENGAGE_MIGRATE_ON_START=false refuses a schema that is behind."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import MetaData

from engage.stack import Stack
from shared.db import make_engine, prepare_schema
from shared.errors import EngageError
from tests.cli import run_engage

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "scoring" / "store" / "migrations"


async def _engage_migrate(stack: Stack, *args: str, schema: str) -> tuple[int, str]:
    env = {"ENGAGE_DATABASE_URL": stack.database_url or "", "SCORING_SCHEMA_NAME": schema}
    return await run_engage("migrate", *args, env=env)


async def test_service_refuses_a_schema_the_job_has_not_migrated(stack: Stack) -> None:
    assert stack.database_url
    engine = make_engine(stack.database_url, "jobtest_scoring", pool_size=1)
    try:
        with pytest.raises(EngageError, match="engage migrate"):
            await prepare_schema(engine, MIGRATIONS, "jobtest_scoring", MetaData(), False)
        code, out = await _engage_migrate(stack, "scoring", schema="jobtest_scoring")
        assert code == 0, out
        assert "scoring: schema jobtest_scoring at head" in out
        await prepare_schema(engine, MIGRATIONS, "jobtest_scoring", MetaData(), False)
        # Running the job again is harmless: nothing to do.
        code, out = await _engage_migrate(stack, "scoring", schema="jobtest_scoring")
        assert code == 0, out
    finally:
        await engine.dispose()


async def test_migrate_names_an_unknown_service(stack: Stack) -> None:
    code, out = await _engage_migrate(stack, "billing", schema="unused")
    assert code == 2
    assert "unknown service(s): billing" in out


async def test_every_service_keeps_the_same_plumbing_tables(stack: Stack) -> None:
    """consumer_offsets and audit_log come from shared/plumbing.py: columns and indexes are the
    same in every consuming service's schema (an index once existed only in rewards)."""
    assert stack.database_url
    schemas = {svc: f"plumbing_{svc}" for svc in ("scoring", "rewards", "notify")}
    env = {"ENGAGE_DATABASE_URL": stack.database_url} | {
        f"{svc.upper()}_SCHEMA_NAME": schema for svc, schema in schemas.items()
    }
    code, out = await run_engage("migrate", *schemas, env=env)
    assert code == 0, out
    conn = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
    try:
        shapes = {}
        for svc, schema in schemas.items():
            columns = await conn.fetch(
                "SELECT table_name, column_name, data_type, is_nullable, "
                "replace(column_default, $2, '') FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name IN ('consumer_offsets', 'audit_log') "
                "ORDER BY 1, 2",
                schema,
                f"{schema}.",
            )
            indexes = await conn.fetch(
                "SELECT tablename, indexname, replace(indexdef, $1, '') AS def FROM pg_indexes "
                "WHERE schemaname = $2 AND tablename IN ('consumer_offsets', 'audit_log') "
                "ORDER BY 1, 2",
                f"{schema}.",
                schema,
            )
            shapes[svc] = ([tuple(r) for r in columns], [tuple(r) for r in indexes])
    finally:
        await conn.close()
    assert shapes["scoring"] == shapes["rewards"] == shapes["notify"]
    assert len(shapes["scoring"][0]) == 11 and len(shapes["scoring"][1]) == 3
