"""Prize integrity (SPEC §14): refused events, group owner transfers, and what the anomaly
flags read.

- `refused_events`: valid events a rule refused (a second `group_created`, a stranger's
  `group_dissolved`, a server-only type from a user token or relay), with the reason.
- `groups.creator_id`, `owner_changed_at`, `owner_changed_event_id`: `owner_id` is the latest
  transfer's user, else the creator (domain/group_facts.py).
- `user_minute_messages` and `user_day.peak_minute_messages` (message_rate),
  `user_day_source` (lockstep), `group_day_joins` (late_joins); `anomaly_flags` remembers which
  (record, flag) was first published when, so each is counted once.

Backfill: creators from `owner_id`; joins per group and local day from `membership_events`.
Message peaks and source fingerprints cannot be recovered from stored counters: days before
this revision start at zero for those two flags.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
from sqlalchemy import text

from shared.settings import CommonSettings

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE refused_events (
    event_id text PRIMARY KEY,
    type text NOT NULL,
    user_id text NOT NULL,
    group_id text,
    authority text NOT NULL,
    source text NOT NULL,
    occurred_at timestamptz NOT NULL,
    reason text NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refused_events_group ON refused_events (group_id);
ALTER TABLE groups ADD COLUMN creator_id text,
                   ADD COLUMN owner_changed_at timestamptz,
                   ADD COLUMN owner_changed_event_id text;
UPDATE groups SET creator_id = owner_id WHERE created_at IS NOT NULL;
ALTER TABLE user_day ADD COLUMN peak_minute_messages int NOT NULL DEFAULT 0;
CREATE TABLE user_minute_messages (
    user_id text NOT NULL,
    minute bigint NOT NULL,
    messages int NOT NULL,
    PRIMARY KEY (user_id, minute)
);
CREATE TABLE user_day_source (
    user_id text NOT NULL,
    day date NOT NULL,
    source text NOT NULL,
    events int NOT NULL,
    minute_sum bigint NOT NULL,
    PRIMARY KEY (user_id, day, source)
);
CREATE INDEX user_day_source_fingerprint ON user_day_source (day, source, events, minute_sum);
CREATE TABLE group_day_joins (
    group_id text NOT NULL,
    day date NOT NULL,
    joins int NOT NULL,
    PRIMARY KEY (group_id, day)
);
CREATE TABLE anomaly_flags (
    key text NOT NULL,
    flag text NOT NULL,
    first_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, flag)
);
"""


def upgrade() -> None:
    for statement in DDL.split(";"):  # asyncpg prepares one statement at a time
        if statement.strip():
            op.execute(statement)
    op.get_bind().execute(
        text("""
        INSERT INTO group_day_joins (group_id, day, joins)
        SELECT group_id, (occurred_at AT TIME ZONE :tz)::date, count(*)
        FROM membership_events WHERE joined GROUP BY 1, 2"""),
        {"tz": CommonSettings().timezone},
    )


def downgrade() -> None:
    for table in (
        "anomaly_flags",
        "group_day_joins",
        "user_day_source",
        "user_minute_messages",
        "refused_events",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("ALTER TABLE user_day DROP COLUMN IF EXISTS peak_minute_messages")
    op.execute(
        "ALTER TABLE groups DROP COLUMN IF EXISTS creator_id, "
        "DROP COLUMN IF EXISTS owner_changed_at, DROP COLUMN IF EXISTS owner_changed_event_id"
    )
