"""Tables ingest owns: the API keys (stored as hashes only)."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    Column,
    DateTime,
    Float,
    MetaData,
    String,
    Table,
    Text,
    func,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False),
    Column("rate_per_s", Float, nullable=False),
    # NULL: every type the key's roles allow; else only these (a narrowed key, SPEC §14).
    Column("event_types", ARRAY(Text), nullable=True),
    # The team whose objects the key works on (issue 18); NULL = no team.
    Column("team", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)
