"""Owning teams (SPEC §15): a broadcast belongs to the team of the key that created it; a
template name (every channel and locale of it) to the team of its first author, in
`template_teams`. Rows made before teams belong to no team (NULL): keys without a team and admins
act on them. `reward_*` templates always belong to no team: they are global.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE broadcasts ADD COLUMN IF NOT EXISTS team text;
CREATE INDEX IF NOT EXISTS broadcasts_team ON broadcasts (team, broadcast_id);
CREATE TABLE IF NOT EXISTS template_teams (
    name text PRIMARY KEY,
    team text
);
INSERT INTO template_teams (name, team)
    SELECT DISTINCT name, NULL::text FROM template_versions ON CONFLICT DO NOTHING;
INSERT INTO template_teams (name, team)
    SELECT DISTINCT name, NULL::text FROM templates ON CONFLICT DO NOTHING
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op,
        "DROP TABLE IF EXISTS template_teams; DROP INDEX IF EXISTS broadcasts_team; "
        "ALTER TABLE broadcasts DROP COLUMN IF EXISTS team",
    )
