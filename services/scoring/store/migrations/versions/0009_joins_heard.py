"""`group_day_joins` learns when a join was heard (SPEC §14, late_joins): a client's join dated
into a month but sent in its last days or after it counts as late, whatever date it claims.

Rows written before this revision were heard on the day they are dated (`heard_day` = `day`):
what was stored does not say otherwise.

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
ALTER TABLE group_day_joins ADD COLUMN heard_day date;
UPDATE group_day_joins SET heard_day = day;
ALTER TABLE group_day_joins ALTER COLUMN heard_day SET NOT NULL;
ALTER TABLE group_day_joins DROP CONSTRAINT group_day_joins_pkey;
ALTER TABLE group_day_joins ADD PRIMARY KEY (group_id, day, heard_day)
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op,
        """
        CREATE TABLE group_day_joins_merged AS
            SELECT group_id, day, sum(joins)::int AS joins FROM group_day_joins
            GROUP BY group_id, day;
        DROP TABLE group_day_joins;
        ALTER TABLE group_day_joins_merged RENAME TO group_day_joins;
        ALTER TABLE group_day_joins ADD PRIMARY KEY (group_id, day)
        """,
    )
