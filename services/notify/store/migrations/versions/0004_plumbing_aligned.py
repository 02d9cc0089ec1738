"""The plumbing tables as shared/plumbing.py defines them: audit_log gains the (subject, id)
index it lacked here (it existed only in rewards).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from shared.plumbing import create_plumbing

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_plumbing(op)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS audit_log_subject")
