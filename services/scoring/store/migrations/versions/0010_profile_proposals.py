"""A change to the live `default` weight profile waits for a second principal (issue 18, four
eyes): `profile_proposals` holds it until approved (then applied) or rejected.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE profile_proposals (
    name text PRIMARY KEY,
    w_growth double precision NOT NULL,
    w_activity double precision NOT NULL,
    w_bonus double precision NOT NULL,
    proposed_by text NOT NULL,
    proposed_at timestamptz NOT NULL DEFAULT now()
)
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    op.execute("DROP TABLE profile_proposals")
