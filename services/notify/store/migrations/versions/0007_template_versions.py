"""Template versions and frozen broadcast texts (SPEC §15): every save of a template is a new
numbered version, never overwritten; a change to a `reward_*` template or one in use by a
broadcast waits as `pending` until a second principal approves it. `templates` keeps the live
version (what reward notices and send requests render); `broadcast_texts` holds what each
broadcast's approver approved, per channel and locale, which is what its recipients get.

The existing templates become version 1, live. Broadcasts approved before this migration have
no frozen texts and keep rendering the live template.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE IF NOT EXISTS template_versions (
    name text NOT NULL,
    channel text NOT NULL,
    locale text NOT NULL,
    version int NOT NULL CHECK (version >= 1),
    category text NOT NULL,
    text text NOT NULL,
    placeholders text[] NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'live', 'superseded', 'rejected')),
    review text,
    authored_by text NOT NULL,
    authored_at timestamptz NOT NULL DEFAULT now(),
    decided_by text,
    decided_at timestamptz,
    PRIMARY KEY (name, channel, locale, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS template_versions_live
    ON template_versions (name, channel, locale) WHERE status = 'live';
CREATE UNIQUE INDEX IF NOT EXISTS template_versions_pending
    ON template_versions (name, channel, locale) WHERE status = 'pending';
ALTER TABLE templates ADD COLUMN IF NOT EXISTS version int NOT NULL DEFAULT 1;
ALTER TABLE templates ADD COLUMN IF NOT EXISTS approved_by text;
INSERT INTO template_versions (name, channel, locale, version, category, text, placeholders,
                               status, authored_by, authored_at)
    SELECT name, channel, locale, version, category, text, placeholders, 'live', updated_by,
           updated_at
    FROM templates ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS broadcast_texts (
    broadcast_id bigint NOT NULL REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    channel text NOT NULL,
    locale text NOT NULL,
    template_version int NOT NULL,
    text text NOT NULL,
    PRIMARY KEY (broadcast_id, channel, locale)
)
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op,
        "DROP TABLE IF EXISTS broadcast_texts; DROP TABLE IF EXISTS template_versions; "
        "ALTER TABLE templates DROP COLUMN IF EXISTS approved_by; "
        "ALTER TABLE templates DROP COLUMN IF EXISTS version",
    )
