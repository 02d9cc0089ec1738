"""Broadcasts: a template to a segment, approved by a second principal, fanned out paced.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE broadcasts (
        broadcast_id bigserial PRIMARY KEY,
        name text NOT NULL,
        template text NOT NULL,
        category text NOT NULL,
        channel text NOT NULL,
        locale text NOT NULL,
        params jsonb NOT NULL,
        segment jsonb NOT NULL,
        rate_per_s double precision NOT NULL,
        status text NOT NULL CHECK (status IN ('pending_approval', 'approved', 'cancelled')),
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        approved_by text,
        approved_at timestamptz,
        recipients int
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE broadcasts")
