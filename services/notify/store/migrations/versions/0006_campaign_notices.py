"""Notices per campaign (SPEC §12): a reward notice records the campaign of the grant that asked
for it (a resend, its original's), so a campaign report counts its notices by status and reason
without listing grant ids. Notices queued before this migration have none.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS campaign_id text;
CREATE INDEX IF NOT EXISTS notifications_campaign ON notifications (campaign_id, status)
    WHERE campaign_id IS NOT NULL
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op,
        "DROP INDEX IF EXISTS notifications_campaign; "
        "ALTER TABLE notifications DROP COLUMN IF EXISTS campaign_id",
    )
