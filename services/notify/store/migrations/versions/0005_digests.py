"""Reward digests, resends and true promises (SPEC §11): a notification records the digest it
went out in (the lead member's id), its priority when cap slots are short and the notification
it sends again; the reward_digest templates; the seeded reward_granted templates say
{fulfilment}, which the domain words truthfully for the day the notice is sent.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE notifications
    ADD COLUMN IF NOT EXISTS digest_id bigint,
    ADD COLUMN IF NOT EXISTS priority smallint NOT NULL DEFAULT 2,
    ADD COLUMN IF NOT EXISTS resent_from bigint REFERENCES notifications (id);
UPDATE notifications SET priority = CASE
    WHEN category <> 'reward' THEN 2
    WHEN strpos(params->>'rewards', '元话费') > 0 OR strpos(params->>'rewards', 'yuan credit') > 0
        THEN 0
    ELSE 1 END;
CREATE INDEX IF NOT EXISTS notifications_digest ON notifications (digest_id)
    WHERE digest_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_resent_from ON notifications (resent_from)
    WHERE resent_from IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_waiting_user ON notifications (user_id)
    WHERE status IN ('queued', 'deferred', 'sending');
INSERT INTO templates (name, channel, locale, category, text, placeholders, updated_by) VALUES
    ('reward_digest', 'im', 'zh-CN', 'reward', '恭喜！您获得{count}项奖励：{rewards}。',
     '{count,rewards}', 'migration'),
    ('reward_digest', 'sms', 'zh-CN', 'reward',
     '【飞信】恭喜！您获得{count}项奖励：{rewards}。回TD退订', '{count,rewards}', 'migration'),
    ('reward_digest', 'im', 'en', 'reward', 'Congratulations! You have {count} rewards: {rewards}.',
     '{count,rewards}', 'migration'),
    ('reward_digest', 'sms', 'en', 'reward',
     'Congratulations! You have {count} rewards: {rewards}.', '{count,rewards}', 'migration')
    ON CONFLICT (name, channel, locale) DO NOTHING;
UPDATE templates SET text = replace(replace(text, '将于{fulfil_by}前到账', '{fulfilment}'),
                                    'delivered by {fulfil_by}', '{fulfilment}'),
                     placeholders = '{campaign,rewards,fulfilment}'
    WHERE name = 'reward_granted' AND updated_by = 'migration'
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(op, """
    UPDATE templates SET text = replace(text, '{fulfilment}', CASE WHEN locale = 'en'
        THEN 'delivered by {fulfil_by}' ELSE '将于{fulfil_by}前到账' END),
        placeholders = '{campaign,rewards,fulfil_by}'
        WHERE name = 'reward_granted' AND updated_by = 'migration';
    DELETE FROM templates WHERE name = 'reward_digest' AND updated_by = 'migration';
    DROP INDEX IF EXISTS notifications_waiting_user;
    DROP INDEX IF EXISTS notifications_resent_from;
    DROP INDEX IF EXISTS notifications_digest;
    ALTER TABLE notifications DROP COLUMN IF EXISTS resent_from, DROP COLUMN IF EXISTS priority,
        DROP COLUMN IF EXISTS digest_id
    """)  # fmt: skip
