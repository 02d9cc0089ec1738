"""Owning teams (SPEC §15): a campaign belongs to the team of the key that created it; its
grants belong to it through their campaign (no column of their own). Campaigns made before
teams belong to no team (NULL): keys without a team and admins act on them.

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
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS team text;
CREATE INDEX IF NOT EXISTS campaigns_team ON campaigns (team, campaign_id)
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op, "DROP INDEX IF EXISTS campaigns_team; ALTER TABLE campaigns DROP COLUMN IF EXISTS team"
    )
