"""The tables every consuming service keeps beside its own (SPEC §2), defined once.

`consumer_offsets` — where each partition's consumer stands, committed with the results
(shared/consumer.py); `audit_log` — every admin change, who, when, before and after
(shared/audit.py). Migrations create them with `create_plumbing`, and run DDL scripts with
`run_ddl`, so the tables cannot drift apart between services again (an index once existed only
in rewards).
"""

from __future__ import annotations

from typing import Any

CONSUMER_OFFSETS = """
CREATE TABLE IF NOT EXISTS consumer_offsets (
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
)"""
AUDIT_LOG = """
CREATE TABLE IF NOT EXISTS audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL,
    before jsonb,
    after jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject, id)"""
PLUMBING_TABLES = ("audit_log", "consumer_offsets")


def run_ddl(op: Any, ddl: str) -> None:
    """Execute a script of `;`-separated statements through Alembic's `op`."""
    for statement in ddl.split(";"):
        if statement.strip():
            op.execute(statement)


def create_plumbing(op: Any) -> None:
    """Create (or complete: idempotent) the consumer offsets and the audit log."""
    run_ddl(op, f"{CONSUMER_OFFSETS};{AUDIT_LOG}")


def drop_plumbing(op: Any) -> None:
    for table in PLUMBING_TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table}")
