"""Scoring: processed-event ledger, offsets, user/group aggregates, sessions, membership, outbox.

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
CREATE TABLE processed_events (
    event_id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE user_day (
    user_id text NOT NULL,
    day date NOT NULL,
    messages int NOT NULL DEFAULT 0,
    messages_sms int NOT NULL DEFAULT 0,
    online_seconds_pc int NOT NULL DEFAULT 0,
    online_seconds_mobile int NOT NULL DEFAULT 0,
    points_delta bigint NOT NULL DEFAULT 0,
    friends_added int NOT NULL DEFAULT 0,
    checkins int NOT NULL DEFAULT 0,
    logins int NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);
CREATE TABLE user_month (
    user_id text NOT NULL,
    month date NOT NULL,
    messages int NOT NULL,
    messages_sms int NOT NULL,
    online_seconds_pc bigint NOT NULL,
    online_seconds_mobile bigint NOT NULL,
    online_points int NOT NULL,
    message_points int NOT NULL,
    activity_points int NOT NULL,
    points_delta bigint NOT NULL,
    friends_added int NOT NULL,
    checkins int NOT NULL,
    logins int NOT NULL,
    active_days int NOT NULL,
    PRIMARY KEY (user_id, month)
);
CREATE TABLE sessions (
    user_id text NOT NULL,
    session_id text NOT NULL,
    start_at timestamptz,
    start_client text,
    start_event_id text,
    end_at timestamptz,
    PRIMARY KEY (user_id, session_id)
);
CREATE TABLE membership_events (
    group_id text NOT NULL,
    user_id text NOT NULL,
    occurred_at timestamptz NOT NULL,
    event_id text NOT NULL,
    joined boolean NOT NULL,
    PRIMARY KEY (group_id, user_id, event_id)
);
CREATE TABLE membership_spans (
    group_id text NOT NULL,
    user_id text NOT NULL,
    joined_at timestamptz NOT NULL,
    left_at timestamptz,
    PRIMARY KEY (group_id, user_id, joined_at)
);
CREATE INDEX membership_spans_user ON membership_spans (user_id);
CREATE TABLE groups (
    group_id text PRIMARY KEY,
    owner_id text,
    name text,
    province text,
    created_at timestamptz,
    created_event_id text,
    dissolved_at timestamptz
);
CREATE INDEX groups_province ON groups (province);
CREATE TABLE group_month (
    group_id text NOT NULL,
    month date NOT NULL,
    members int NOT NULL DEFAULT 0,
    active_members int NOT NULL DEFAULT 0,
    activity_points bigint NOT NULL DEFAULT 0,
    points_growth bigint NOT NULL DEFAULT 0,
    bonus_points bigint NOT NULL DEFAULT 0,
    group_messages int NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, month)
);
CREATE INDEX group_month_month ON group_month (month);
CREATE TABLE weight_profiles (
    name text PRIMARY KEY,
    w_growth double precision NOT NULL,
    w_activity double precision NOT NULL,
    w_bonus double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
INSERT INTO weight_profiles (name, w_growth, w_activity, w_bonus, updated_by)
VALUES ('default', 1.0, 1.0, 1.0, 'migration');
CREATE SEQUENCE changelog_seq;
CREATE TABLE changelog_outbox (
    key text PRIMARY KEY,
    seq bigint NOT NULL DEFAULT nextval('changelog_seq')
);
CREATE INDEX changelog_outbox_seq ON changelog_outbox (seq);
"""


def upgrade() -> None:
    run_ddl(op, DDL)
    create_plumbing(op)


def downgrade() -> None:
    for table in (
        "changelog_outbox",
        "weight_profiles",
        "group_month",
        "groups",
        "membership_spans",
        "membership_events",
        "sessions",
        "user_month",
        "user_day",
        "consumer_offsets",
        "processed_events",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP SEQUENCE IF EXISTS changelog_seq")
