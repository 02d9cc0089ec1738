"""user_day.messages_mobile: the mobile client's share of `messages` (rewards' "first message
from the mobile client", SPEC §1).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE user_day ADD COLUMN messages_mobile int NOT NULL DEFAULT 0")


def downgrade() -> None:
    op.execute("ALTER TABLE user_day DROP COLUMN messages_mobile")
