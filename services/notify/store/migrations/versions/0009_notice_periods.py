"""Notices per rule and period (SPEC §12): a reward notice also records the rule and period of
the grant that asked for it (a resend, its original's), so a campaign report counts each
period's notices and the users it told. Notices queued before this migration have neither:
they count in their campaign's totals and in no period.

The campaign index gives way to one led by the campaign that also serves the per-period counts
(status, reason and user included: the counts read the index alone once it is vacuumed).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS rule_id text;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS period text;
CREATE INDEX IF NOT EXISTS notifications_campaign_period
    ON notifications (campaign_id, rule_id, period, status) INCLUDE (reason, user_id)
    WHERE campaign_id IS NOT NULL;
DROP INDEX IF EXISTS notifications_campaign
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op,
        "CREATE INDEX IF NOT EXISTS notifications_campaign ON notifications (campaign_id, status) "
        "WHERE campaign_id IS NOT NULL; "
        "DROP INDEX IF EXISTS notifications_campaign_period; "
        "ALTER TABLE notifications DROP COLUMN IF EXISTS period; "
        "ALTER TABLE notifications DROP COLUMN IF EXISTS rule_id",
    )
