"""Friendships count once (SPEC §9): the first `friend_added` of every pair of users.

`user_day.friends_added` / `user_month.friends_added` are no longer incremented per event: a
user's friends added on a day are the pairs whose first add they made that day
(domain/friends.py), read from `friend_pairs` where counters are read and published. Counts
stored before this revision stay in the columns but are no longer read (events are not kept, so
they cannot be folded into pairs).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


DDL = """
        CREATE TABLE friend_pairs (
            user_lo text NOT NULL,
            user_hi text NOT NULL,
            first_at timestamptz NOT NULL,
            first_event_id text NOT NULL,
            adder text NOT NULL,
            first_day date NOT NULL,
            PRIMARY KEY (user_lo, user_hi),
            CHECK (user_lo <= user_hi),
            CHECK (adder IN (user_lo, user_hi))
        );
        CREATE INDEX friend_pairs_adder ON friend_pairs (adder, first_day);
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    op.execute("DROP TABLE friend_pairs")
