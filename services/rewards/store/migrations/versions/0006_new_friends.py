"""New users among a user's friends (SPEC §10, `user.campaign.new_friends_added`): the friends
each user made each day (scoring's `friend_ids` of a user-day: pairs whose first add is theirs)
and every user's `first_seen` (the earliest scoring published; it only moves earlier).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE user_day ADD COLUMN friend_ids jsonb NOT NULL DEFAULT '[]';
CREATE INDEX user_day_friend_ids ON user_day USING gin (friend_ids);
CREATE TABLE user_first_seen (
    user_id text PRIMARY KEY,
    first_seen date NOT NULL
)
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(op, "DROP TABLE user_first_seen; ALTER TABLE user_day DROP COLUMN friend_ids")
