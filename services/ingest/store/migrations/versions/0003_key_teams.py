"""API keys carry a team (issue 18, ownership): campaigns, broadcasts and templates belong to
the team of the key that created them, and a key acts only on its team's objects unless it is
an admin. NULL = no team (keys issued before; they share the objects that have none).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("team", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "team")
