"""Settlement failures (SPEC §16): a (campaign, rule, period) whose settlement raised is recorded
with its reason and retried with backoff while every other one settles. Rule and period are '*'
when the campaign's periods could not even be listed. The row goes when the period settles.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE settlement_failures (
        campaign_id text NOT NULL REFERENCES campaigns,
        rule_id text NOT NULL,
        period text NOT NULL,
        version int NOT NULL,
        reason text NOT NULL,
        attempts int NOT NULL DEFAULT 1 CHECK (attempts >= 1),
        first_failed_at timestamptz NOT NULL,
        last_failed_at timestamptz NOT NULL,
        next_attempt_at timestamptz NOT NULL,
        PRIMARY KEY (campaign_id, rule_id, period)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE settlement_failures")
