"""Delivery receipts, kept on their own: a receipt can arrive before the send that it confirms
has been recorded, so receipts and sends are matched whichever comes first.

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
    CREATE TABLE receipts (
        provider text NOT NULL,
        message_id text NOT NULL,
        delivered boolean NOT NULL,
        stat text NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (provider, message_id)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE receipts")
