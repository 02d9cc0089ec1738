"""What scoring has seen (SPEC §9, §10): `users` with their `first_seen` local day; a `groups`
row for every group any event named; group months' `members` as of each month's end again.

Backfill from what is stored: a user's first day is their earliest user day or join/leave (a
user whose only events were lone logouts, bonus cards or dissolutions left no trace to find);
every group with a membership or a month becomes known. Month rows written before this revision
counted members only through the joins and leaves processed while the month was current or
later, so `members` is recounted from the membership spans.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
from sqlalchemy import text

from shared.settings import CommonSettings

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE users (
    user_id text PRIMARY KEY,
    first_seen date NOT NULL
);
"""


def upgrade() -> None:
    op.execute(DDL)
    tz = CommonSettings().timezone  # local days and months of the deployment (SPEC §4)
    op.get_bind().execute(
        text("""
        INSERT INTO users (user_id, first_seen)
        SELECT user_id, min(day) FROM (
            SELECT user_id, min(day) AS day FROM user_day GROUP BY user_id
            UNION ALL
            SELECT user_id, min((occurred_at AT TIME ZONE :tz)::date) FROM membership_events
            GROUP BY user_id
        ) seen GROUP BY user_id"""),
        {"tz": tz},
    )
    op.execute(
        "INSERT INTO groups (group_id) SELECT group_id FROM membership_events "
        "UNION SELECT group_id FROM group_month ON CONFLICT DO NOTHING"
    )
    op.get_bind().execute(
        text("""
        UPDATE group_month gm SET members = (
            SELECT count(DISTINCT s.user_id) FROM membership_spans s
            WHERE s.group_id = gm.group_id
              AND s.joined_at < ((gm.month + interval '1 month')::timestamp AT TIME ZONE :tz)
              AND (s.left_at IS NULL
                   OR s.left_at >= ((gm.month + interval '1 month')::timestamp AT TIME ZONE :tz)))
        """),
        {"tz": tz},
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS users")
