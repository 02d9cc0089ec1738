"""Notify: templates, policies, opt-outs, notifications (idempotent per source, user, template),
daily cap slots, the sandbox's sent messages, offsets, audit log.

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
CREATE TABLE templates (
    name text NOT NULL,
    channel text NOT NULL,
    locale text NOT NULL,
    category text NOT NULL,
    text text NOT NULL,
    placeholders text[] NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, channel, locale)
);
CREATE TABLE policies (
    category text PRIMARY KEY,
    daily_cap int NOT NULL CHECK (daily_cap >= 0),
    window_start time NOT NULL,
    window_end time NOT NULL,
    ttl_seconds int NOT NULL CHECK (ttl_seconds > 0),
    marketing boolean NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO policies (category, daily_cap, window_start, window_end, ttl_seconds, marketing,
                      updated_by) VALUES
    ('reward', 3, '08:00', '21:00', 172800, false, 'migration'),
    ('marketing', 3, '08:00', '21:00', 172800, true, 'migration'),
    ('service', 3, '08:00', '21:00', 86400, false, 'migration');
INSERT INTO templates (name, channel, locale, category, text, placeholders, updated_by) VALUES
    ('reward_granted', 'im', 'zh-CN', 'reward',
     '恭喜！您在「{campaign}」活动中获得{rewards}，将于{fulfil_by}前到账。',
     '{campaign,rewards,fulfil_by}', 'migration'),
    ('reward_granted', 'sms', 'zh-CN', 'reward',
     '【飞信】恭喜！您在「{campaign}」活动中获得{rewards}，将于{fulfil_by}前到账。回TD退订',
     '{campaign,rewards,fulfil_by}', 'migration'),
    ('reward_granted', 'im', 'en', 'reward',
     'Congratulations! {campaign} rewards you with {rewards}, delivered by {fulfil_by}.',
     '{campaign,rewards,fulfil_by}', 'migration'),
    ('reward_granted', 'sms', 'en', 'reward',
     'Congratulations! {campaign} rewards you with {rewards}, delivered by {fulfil_by}.',
     '{campaign,rewards,fulfil_by}', 'migration');
CREATE TABLE opt_outs (
    user_id text PRIMARY KEY,
    via text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    source text NOT NULL,
    user_id text NOT NULL,
    template text NOT NULL,
    category text NOT NULL,
    channel text NOT NULL,
    locale text NOT NULL,
    params jsonb NOT NULL,
    body text,
    status text NOT NULL CHECK (status IN ('queued', 'deferred', 'sending', 'sent', 'delivered',
                                           'failed', 'expired', 'suppressed')),
    reason text,
    not_before timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts int NOT NULL DEFAULT 0,
    sent_channel text,
    provider text,
    provider_message_id text,
    cap_day date,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, user_id, template)
);
CREATE INDEX notifications_due ON notifications (not_before)
    WHERE status IN ('queued', 'deferred');
CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_provider_id ON notifications (provider, provider_message_id);
CREATE TABLE cap_slots (
    user_id text NOT NULL,
    day date NOT NULL,
    category text NOT NULL,
    used int NOT NULL CHECK (used >= 0),
    PRIMARY KEY (user_id, day, category)
);
CREATE TABLE sandbox_messages (
    id bigserial PRIMARY KEY,
    notification_id bigint NOT NULL UNIQUE,
    channel text NOT NULL,
    user_id text NOT NULL,
    body text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
"""


def upgrade() -> None:
    run_ddl(op, DDL)
    create_plumbing(op)


def downgrade() -> None:
    for table in (
        "audit_log",
        "consumer_offsets",
        "sandbox_messages",
        "cap_slots",
        "notifications",
        "opt_outs",
        "policies",
        "templates",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
