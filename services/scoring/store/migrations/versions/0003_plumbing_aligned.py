"""The plumbing tables as shared/plumbing.py defines them: audit_log gains the (subject, id)
index it lacked here (it existed only in rewards).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from shared.plumbing import create_plumbing

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_plumbing(op)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS audit_log_subject")
