"""API keys may be narrowed to listed event types (SPEC §14); NULL = every type its roles allow.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("event_types", sa.ARRAY(sa.Text), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "event_types")
