"""Lifecycle stages and business KPIs (SPEC §12).

- `user_day.sessions_pc|mobile|sms`: counted sessions by the day of their start and their
  client; `user_month` sums them and `messages_mobile`.
- `user_month.lifecycle`, `loyal` (domain/lifecycle.py) and `top_group` (the group the user
  sent most messages to that month: their province, domain/kpis.py); a month with a stage but
  no activity (`new` without counters, `dormant`) is a row of zeros.
- `user_group_messages`: pc/mobile messages per (user, month, group), to find `top_group`.
- `kpi_day`, `kpi_month`: the KPIs per (period, province key, client), kept by deltas.

Backfill: sessions from `sessions`, lifecycle from stored months, KPIs from the stored days and
months. Messages per group were never stored per user: earlier months count under `unknown`.

Revision ID: 0007
Revises: 0006
"""

from alembic import op
from sqlalchemy import text

from shared.settings import CommonSettings

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_KPIS = """active_users int NOT NULL DEFAULT 0,
    new_users int NOT NULL DEFAULT 0,
    messages bigint NOT NULL DEFAULT 0,
    online_seconds bigint NOT NULL DEFAULT 0,
    sessions int NOT NULL DEFAULT 0,
    checkins int NOT NULL DEFAULT 0"""

DDL = f"""
ALTER TABLE user_day ADD COLUMN sessions_pc int NOT NULL DEFAULT 0,
    ADD COLUMN sessions_mobile int NOT NULL DEFAULT 0,
    ADD COLUMN sessions_sms int NOT NULL DEFAULT 0;
ALTER TABLE user_month ADD COLUMN messages_mobile int NOT NULL DEFAULT 0,
    ADD COLUMN sessions_pc int NOT NULL DEFAULT 0,
    ADD COLUMN sessions_mobile int NOT NULL DEFAULT 0,
    ADD COLUMN sessions_sms int NOT NULL DEFAULT 0,
    ADD COLUMN lifecycle text,
    ADD COLUMN loyal boolean NOT NULL DEFAULT false,
    ADD COLUMN top_group text,
    ALTER COLUMN messages SET DEFAULT 0, ALTER COLUMN messages_sms SET DEFAULT 0,
    ALTER COLUMN online_seconds_pc SET DEFAULT 0, ALTER COLUMN online_seconds_mobile SET DEFAULT 0,
    ALTER COLUMN online_points SET DEFAULT 0, ALTER COLUMN message_points SET DEFAULT 0,
    ALTER COLUMN activity_points SET DEFAULT 0, ALTER COLUMN points_delta SET DEFAULT 0,
    ALTER COLUMN friends_added SET DEFAULT 0, ALTER COLUMN checkins SET DEFAULT 0,
    ALTER COLUMN logins SET DEFAULT 0, ALTER COLUMN active_days SET DEFAULT 0;
CREATE TABLE user_group_messages (
    user_id text NOT NULL,
    month date NOT NULL,
    group_id text NOT NULL,
    messages int NOT NULL,
    PRIMARY KEY (user_id, month, group_id)
);
CREATE INDEX user_month_top_group ON user_month (top_group) WHERE top_group IS NOT NULL;
CREATE TABLE kpi_day (
    day date NOT NULL,
    province text NOT NULL,
    client text NOT NULL,
    {_KPIS},
    PRIMARY KEY (day, province, client)
);
CREATE TABLE kpi_month (
    month date NOT NULL,
    province text NOT NULL,
    client text NOT NULL,
    {_KPIS},
    returning_users int NOT NULL DEFAULT 0,
    resurrecting_users int NOT NULL DEFAULT 0,
    dormant_users int NOT NULL DEFAULT 0,
    loyal_users int NOT NULL DEFAULT 0,
    PRIMARY KEY (month, province, client)
)
"""

# The backfill, statement by statement (`:tz` the deployment's time zone).
BACKFILL = (
    """UPDATE user_day d SET sessions_pc = s.pc, sessions_mobile = s.mobile, sessions_sms = s.sms
    FROM (SELECT user_id, (start_at AT TIME ZONE :tz)::date AS day,
                 count(*) FILTER (WHERE start_client = 'pc') AS pc,
                 count(*) FILTER (WHERE start_client = 'mobile') AS mobile,
                 count(*) FILTER (WHERE start_client = 'sms') AS sms
          FROM sessions WHERE start_at IS NOT NULL AND end_at >= start_at GROUP BY 1, 2) s
    WHERE d.user_id = s.user_id AND d.day = s.day""",
    """UPDATE user_month m SET messages_mobile = s.mm, sessions_pc = s.pc,
           sessions_mobile = s.mob, sessions_sms = s.sms
    FROM (SELECT user_id, date_trunc('month', day)::date AS month, sum(messages_mobile) AS mm,
                 sum(sessions_pc) AS pc, sum(sessions_mobile) AS mob, sum(sessions_sms) AS sms
          FROM user_day GROUP BY 1, 2) s
    WHERE m.user_id = s.user_id AND m.month = s.month""",
    # Rows for months with a stage but no activity: first_seen's, and the month after an
    # active one.
    """INSERT INTO user_month (user_id, month)
    SELECT user_id, date_trunc('month', first_seen)::date FROM users
    UNION SELECT user_id, (month + interval '1 month')::date FROM user_month WHERE messages >= 1
    ON CONFLICT DO NOTHING""",
    """UPDATE user_month m SET
        lifecycle = CASE
            WHEN x.first_month = m.month THEN 'new'
            WHEN x.first_month > m.month THEN NULL
            WHEN m.messages >= 1 AND x.last THEN 'returning'
            WHEN m.messages >= 1 THEN 'resurrecting'
            WHEN x.last THEN 'dormant' END,
        loyal = m.messages >= 1 AND x.last AND x.before_last
    FROM (SELECT c.user_id, c.month, date_trunc('month', u.first_seen)::date AS first_month,
                 coalesce(p.messages, 0) >= 1 AS last, coalesce(pp.messages, 0) >= 1 AS before_last
          FROM user_month c JOIN users u ON u.user_id = c.user_id
          LEFT JOIN user_month p ON p.user_id = c.user_id AND p.month = c.month - interval '1 month'
          LEFT JOIN user_month pp ON pp.user_id = c.user_id
                                AND pp.month = c.month - interval '2 months') x
    WHERE m.user_id = x.user_id AND m.month = x.month""",
    """INSERT INTO kpi_day (day, province, client, active_users, new_users, messages,
                            online_seconds, sessions, checkins)
    SELECT d.day, 'unknown', c.client, sum(c.a), sum(c.n), sum(c.msg), sum(c.secs), sum(c.ses),
           sum(c.chk)
    FROM user_day d JOIN users u ON u.user_id = d.user_id
    CROSS JOIN LATERAL (VALUES
        ('all', (d.messages >= 1)::int, (u.first_seen = d.day)::int,
         d.messages + d.messages_sms, d.online_seconds_pc + d.online_seconds_mobile,
         d.sessions_pc + d.sessions_mobile + d.sessions_sms, d.checkins),
        ('pc', (d.messages - d.messages_mobile >= 1)::int, 0, d.messages - d.messages_mobile,
         d.online_seconds_pc, d.sessions_pc, 0),
        ('mobile', (d.messages_mobile >= 1)::int, 0, d.messages_mobile,
         d.online_seconds_mobile, d.sessions_mobile, 0),
        ('sms', (d.messages_sms >= 1)::int, 0, d.messages_sms, 0, d.sessions_sms, 0)
    ) AS c(client, a, n, msg, secs, ses, chk)
    GROUP BY 1, 2, 3""",
    # A user first seen on a day without counters (a join, a logout) is new that day too.
    """INSERT INTO kpi_day (day, province, client, new_users)
    SELECT u.first_seen, 'unknown', 'all', count(*) FROM users u
    WHERE NOT EXISTS (SELECT 1 FROM user_day d WHERE d.user_id = u.user_id AND d.day = u.first_seen)
    GROUP BY 1
    ON CONFLICT (day, province, client) DO UPDATE
    SET new_users = kpi_day.new_users + excluded.new_users""",
    """INSERT INTO kpi_month (month, province, client, active_users, new_users, messages,
        online_seconds, sessions, checkins, returning_users, resurrecting_users, dormant_users,
        loyal_users)
    SELECT m.month, 'unknown', c.client, sum(c.a), sum(c.n), sum(c.msg), sum(c.secs), sum(c.ses),
           sum(c.chk), sum(c.ret), sum(c.res), sum(c.dor), sum(c.loy)
    FROM user_month m
    CROSS JOIN LATERAL (VALUES
        ('all', (m.messages >= 1)::int, (m.lifecycle = 'new')::int,
         m.messages + m.messages_sms, m.online_seconds_pc + m.online_seconds_mobile,
         m.sessions_pc + m.sessions_mobile + m.sessions_sms, m.checkins,
         (m.lifecycle = 'returning')::int, (m.lifecycle = 'resurrecting')::int,
         (m.lifecycle = 'dormant')::int, m.loyal::int),
        ('pc', (m.messages - m.messages_mobile >= 1)::int, 0, m.messages - m.messages_mobile,
         m.online_seconds_pc, m.sessions_pc, 0, 0, 0, 0, 0),
        ('mobile', (m.messages_mobile >= 1)::int, 0, m.messages_mobile,
         m.online_seconds_mobile, m.sessions_mobile, 0, 0, 0, 0, 0),
        ('sms', (m.messages_sms >= 1)::int, 0, m.messages_sms, 0, m.sessions_sms, 0, 0, 0, 0, 0)
    ) AS c(client, a, n, msg, secs, ses, chk, ret, res, dor, loy)
    GROUP BY 1, 2, 3""",
    "DELETE FROM kpi_day WHERE active_users = 0 AND new_users = 0 AND messages = 0 "
    "AND online_seconds = 0 AND sessions = 0 AND checkins = 0",
    "DELETE FROM kpi_month WHERE active_users = 0 AND new_users = 0 AND messages = 0 "
    "AND online_seconds = 0 AND sessions = 0 AND checkins = 0 AND returning_users = 0 "
    "AND resurrecting_users = 0 AND dormant_users = 0 AND loyal_users = 0",
)


def upgrade() -> None:
    for statement in DDL.split(";"):  # asyncpg prepares one statement at a time
        if statement.strip():
            op.execute(statement)
    bind = op.get_bind()
    for statement in BACKFILL:
        bind.execute(text(statement), {"tz": CommonSettings().timezone})


def downgrade() -> None:
    for table in ("kpi_month", "kpi_day", "user_group_messages"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute(
        "DELETE FROM user_month WHERE lifecycle IS NOT NULL AND messages = 0 "
        "AND messages_sms = 0 AND logins = 0 AND points_delta = 0 AND checkins = 0 "
        "AND friends_added = 0 AND online_seconds_pc = 0 AND online_seconds_mobile = 0"
    )
    op.execute(
        "ALTER TABLE user_month DROP COLUMN IF EXISTS messages_mobile, "
        "DROP COLUMN IF EXISTS sessions_pc, DROP COLUMN IF EXISTS sessions_mobile, "
        "DROP COLUMN IF EXISTS sessions_sms, DROP COLUMN IF EXISTS lifecycle, "
        "DROP COLUMN IF EXISTS loyal, DROP COLUMN IF EXISTS top_group"
    )
    op.execute(
        "ALTER TABLE user_day DROP COLUMN IF EXISTS sessions_pc, "
        "DROP COLUMN IF EXISTS sessions_mobile, DROP COLUMN IF EXISTS sessions_sms"
    )
