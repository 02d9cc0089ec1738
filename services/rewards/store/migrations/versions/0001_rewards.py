"""Rewards: campaigns and versions, enrollments, budgets, grants ledger and outbox, draws,
settlements, metric snapshots from engage.metrics.v1, offsets, audit log.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.plumbing import create_plumbing, run_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE campaigns (
    campaign_id text PRIMARY KEY,
    template text,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    live_version int,
    state text NOT NULL DEFAULT 'draft'
);
CREATE TABLE campaign_versions (
    campaign_id text NOT NULL REFERENCES campaigns,
    version int NOT NULL,
    status text NOT NULL,
    definition jsonb NOT NULL,
    author text NOT NULL,
    submitted_by text,
    approved_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, version)
);
CREATE TABLE enrollments (
    campaign_id text NOT NULL REFERENCES campaigns,
    group_id text NOT NULL,
    owner_id text NOT NULL,
    enrolled_by text NOT NULL,
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, group_id)
);
CREATE TABLE budgets (
    campaign_id text NOT NULL REFERENCES campaigns,
    kind text NOT NULL,
    total bigint NOT NULL,
    spent bigint NOT NULL DEFAULT 0 CHECK (spent >= 0 AND spent <= total),
    PRIMARY KEY (campaign_id, kind)
);
CREATE TABLE grants (
    grant_id bigserial PRIMARY KEY,
    campaign_id text NOT NULL REFERENCES campaigns,
    version int NOT NULL,
    rule_id text NOT NULL,
    role text NOT NULL,
    user_id text NOT NULL,
    period text NOT NULL,
    status text NOT NULL CHECK (status IN ('granted', 'budget_exhausted', 'revoked')),
    items jsonb NOT NULL,
    fulfil_by date NOT NULL,
    group_id text,
    revocable boolean NOT NULL DEFAULT false,
    explanation jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoke_reason text,
    UNIQUE (campaign_id, rule_id, role, user_id, period)
);
CREATE INDEX grants_user ON grants (user_id, grant_id);
CREATE INDEX grants_group_open ON grants (group_id) WHERE revocable AND status = 'granted';
CREATE TABLE grants_outbox (
    seq bigserial PRIMARY KEY,
    key text NOT NULL,
    value bytea NOT NULL
);
CREATE TABLE draws (
    campaign_id text NOT NULL REFERENCES campaigns,
    rule_id text NOT NULL,
    period text NOT NULL,
    seed text NOT NULL,
    seed_sha256 text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    period_starts_at timestamptz NOT NULL,
    drawn_at timestamptz,
    version int,
    entries text[],
    entries_digest text,
    winners text[],
    PRIMARY KEY (campaign_id, rule_id, period)
);
CREATE TABLE settlements (
    campaign_id text NOT NULL REFERENCES campaigns,
    rule_id text NOT NULL,
    period text NOT NULL,
    version int NOT NULL,
    settled_at timestamptz NOT NULL DEFAULT now(),
    seconds double precision,
    grants int,
    PRIMARY KEY (campaign_id, rule_id, period)
);
CREATE TABLE user_day (
    user_id text NOT NULL,
    day date NOT NULL,
    metrics jsonb NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX user_day_day ON user_day (day);
CREATE TABLE user_month (
    user_id text NOT NULL,
    month date NOT NULL,
    metrics jsonb NOT NULL,
    PRIMARY KEY (user_id, month)
);
CREATE INDEX user_month_month ON user_month (month);
CREATE TABLE group_month (
    group_id text NOT NULL,
    month date NOT NULL,
    metrics jsonb NOT NULL,
    owner_id text,
    province text,
    created_at timestamptz,
    dissolved_at timestamptz,
    member_ids jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (group_id, month)
);
CREATE INDEX group_month_month ON group_month (month);
"""


def upgrade() -> None:
    run_ddl(op, DDL)
    create_plumbing(op)


def downgrade() -> None:
    for table in (
        "audit_log",
        "consumer_offsets",
        "group_month",
        "user_month",
        "user_day",
        "settlements",
        "draws",
        "grants_outbox",
        "grants",
        "budgets",
        "enrollments",
        "campaign_versions",
        "campaigns",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
