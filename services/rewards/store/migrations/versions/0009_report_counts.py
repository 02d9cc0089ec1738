"""The campaign report's counts, kept as the ledger changes (SPEC §12; issue 16): the report
reads them instead of scanning a campaign's grants.

- `report_counts`: items, grants (counted once, with their first item) and units by campaign,
  rule, period, status, raw fulfilment status, fulfilment date (kept only while the grant could
  become overdue: granted and not fulfilled — `overdue` depends on the reader's today, so it is
  derived at read), the quarter hour it was recorded (its local day in any time zone: every
  zone's offset is a multiple of 15 minutes) and kind.
- `report_people`: grants, granted, held_out and fulfilled by campaign, user and the month after
  the grant's period (NULL for `campaign`) — the funnel and the uplift's groups per user;
- `report_users`: one row per campaign and user summing them (won, held out, fulfilled, the
  first month after a period won), rebuilt by `compact` for the users whose counts changed —
  the only writer, so no grant write ever waits on it;
- `report_reach`: users by month and the month before it they last had metrics in (NULL: none)
  — kept by a trigger on `user_month` inserts (new user-months only). The users with metrics in
  some month of [m0, m1] are those of the rows in it whose previous month is before m0: each
  user's first month in the range, once. Writers of one user's months are serialised by
  store/snapshots.py's per-user lock, so each sees the months before it.

Both are append-only deltas (+1 for a new row, −1/+1 for a changed one), written by
statement-level triggers with transition tables in the transaction of every statement that
writes `grants` — whichever code path it comes from — and summed at read time. Nothing is
updated in place, so concurrent writers (consumption, settlement, review, fulfilment,
revocation) never wait on one another's counter rows and cannot deadlock on them;
store/report.py `compact` folds a campaign's deltas into one row per key. Existing grants are
counted by the migration.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE IF NOT EXISTS report_counts (
    campaign_id text NOT NULL,
    rule_id text NOT NULL,
    period text NOT NULL,
    status text NOT NULL,
    fulfilment_status text,
    fulfil_by date,
    recorded_at timestamptz NOT NULL,
    kind text NOT NULL,
    items bigint NOT NULL,
    grants bigint NOT NULL,
    units bigint NOT NULL,
    compact boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS report_counts_campaign ON report_counts (campaign_id, period);
CREATE INDEX IF NOT EXISTS report_counts_fresh ON report_counts (campaign_id) WHERE NOT compact;
CREATE TABLE IF NOT EXISTS report_people (
    campaign_id text NOT NULL,
    user_id text NOT NULL,
    next_month date,
    grants int NOT NULL,
    granted int NOT NULL,
    held_out int NOT NULL,
    fulfilled int NOT NULL,
    compact boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS report_people_user ON report_people (campaign_id, user_id, next_month);
CREATE INDEX IF NOT EXISTS report_people_fresh ON report_people (campaign_id) WHERE NOT compact;
CREATE TABLE IF NOT EXISTS report_users (
    campaign_id text NOT NULL,
    user_id text NOT NULL,
    grants int NOT NULL,
    won boolean NOT NULL,
    held_out boolean NOT NULL,
    fulfilled boolean NOT NULL,
    first_next date,
    PRIMARY KEY (campaign_id, user_id)
);
CREATE TABLE IF NOT EXISTS report_reach (
    month date NOT NULL,
    prev date,
    users int NOT NULL,
    compact boolean NOT NULL DEFAULT false
)
"""

# The first day of the month after the one a period label starts in (day, week, month or year
# labels; `campaign` → NULL: a once-per-campaign grant has no next period of its own).
NEXT_MONTH = r"""
CREATE OR REPLACE FUNCTION report_next_month(label text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CAST(CASE
        WHEN label ~ '^\d{4}-\d{2}' THEN
            CAST(substr(label, 1, 7) || '-01' AS date) + interval '1 month'
        WHEN label ~ '^\d{4}-W\d{2}$' THEN
            date_trunc('month', to_date(label, 'IYYY-"W"IW')) + interval '1 month'
        WHEN label ~ '^\d{4}$' THEN CAST(label || '-01-01' AS date) + interval '1 year'
        END AS date)
$fn$
"""

# One row of deltas per changed grant: +1 for its new state, -1 for its old one. `{rows}` is a
# query over the transition tables giving (sign, grant columns).
_COUNT = """
    INSERT INTO report_counts (campaign_id, rule_id, period, status, fulfilment_status,
        fulfil_by, recorded_at, kind, items, grants, units, compact)
    SELECT g.campaign_id, g.rule_id, g.period, g.status, g.fulfilment_status,
        CASE WHEN g.status = 'granted' AND g.fulfilment_status IS DISTINCT FROM 'fulfilled'
            THEN g.fulfil_by END,
        date_bin('15 minutes', g.created_at, timestamptz 'epoch'), i.e->>'kind',
        sum(g.sign), coalesce(sum(g.sign) FILTER (WHERE i.n = 1), 0),
        sum(g.sign * CAST(i.e->>'amount' AS bigint)), {compact}
    FROM ({rows}) g CROSS JOIN LATERAL jsonb_array_elements(g.items) WITH ORDINALITY AS i(e, n)
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    HAVING sum(g.sign) <> 0 OR sum(g.sign * CAST(i.e->>'amount' AS bigint)) <> 0
        OR coalesce(sum(g.sign) FILTER (WHERE i.n = 1), 0) <> 0;
    INSERT INTO report_people (campaign_id, user_id, next_month, grants, granted, held_out,
        fulfilled, compact)
    SELECT g.campaign_id, g.user_id, report_next_month(g.period), sum(g.sign),
        coalesce(sum(g.sign) FILTER (WHERE g.status = 'granted'), 0),
        coalesce(sum(g.sign) FILTER (WHERE g.status = 'held_out'), 0),
        coalesce(sum(g.sign) FILTER (WHERE g.fulfilment_status = 'fulfilled'), 0), {compact}
    FROM ({rows}) g
    GROUP BY 1, 2, 3
    HAVING sum(g.sign) <> 0
        OR coalesce(sum(g.sign) FILTER (WHERE g.status = 'granted'), 0) <> 0
        OR coalesce(sum(g.sign) FILTER (WHERE g.status = 'held_out'), 0) <> 0
        OR coalesce(sum(g.sign) FILTER (WHERE g.fulfilment_status = 'fulfilled'), 0) <> 0;
"""
_COLUMNS = "campaign_id, rule_id, user_id, period, status, fulfilment_status, fulfil_by, "
_COLUMNS += "created_at, items"
_INSERTED = f"SELECT 1 AS sign, {_COLUMNS} FROM new_grants"
_DELETED = f"SELECT -1 AS sign, {_COLUMNS} FROM old_grants"


# Each affected user's (month, previous month) pairs after the statement, +1, and before it, -1.
# `{before}`: the user's months before the statement, from `current_months` (after it).
_REACH = """
    WITH touched AS (SELECT DISTINCT user_id FROM {changed}),
    current_months AS (
        SELECT um.user_id, um.month FROM user_month um JOIN touched t USING (user_id)),
    pairs AS (
        SELECT 1 AS sign, month, lag(month) OVER (PARTITION BY user_id ORDER BY month) AS prev
        FROM current_months
        UNION ALL
        SELECT -1, month, lag(month) OVER (PARTITION BY user_id ORDER BY month)
        FROM ({before}) b)
    INSERT INTO report_reach (month, prev, users, compact)
    SELECT month, prev, sum(sign), {compact} FROM pairs GROUP BY month, prev
    HAVING sum(sign) <> 0;
"""
_REACH_INSERTED = _REACH.format(
    changed="new_months",
    before="SELECT user_id, month FROM current_months "
    "EXCEPT ALL SELECT user_id, month FROM new_months",
    compact="false",
)
_REACH_DELETED = _REACH.format(
    changed="old_months",
    before="SELECT user_id, month FROM current_months "
    "UNION ALL SELECT user_id, month FROM old_months",
    compact="false",
)


def _function(name: str, body: str) -> str:
    # `SET search_path FROM CURRENT`: the tables of the schema this migration runs in, whatever
    # the search path of the statement that fired the trigger (e.g. a schema-qualified bulk load).
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
    {body}
    RETURN NULL;
END
$fn$
"""


FUNCTIONS = {"report_reach_inserted": _REACH_INSERTED, "report_reach_deleted": _REACH_DELETED}


FUNCTIONS = {
    "report_count_inserted": _COUNT.format(rows=_INSERTED, compact="false"),
    "report_count_updated": _COUNT.format(
        rows=f"{_INSERTED} UNION ALL {_DELETED}", compact="false"
    ),
    "report_count_deleted": _COUNT.format(rows=_DELETED, compact="false"),
    "report_reach_inserted": _REACH_INSERTED,
    "report_reach_deleted": _REACH_DELETED,
}
TRIGGERS = (
    "CREATE TRIGGER report_count_inserted AFTER INSERT ON grants "
    "REFERENCING NEW TABLE AS new_grants FOR EACH STATEMENT "
    "EXECUTE FUNCTION report_count_inserted()",
    "CREATE TRIGGER report_count_updated AFTER UPDATE ON grants "
    "REFERENCING OLD TABLE AS old_grants NEW TABLE AS new_grants FOR EACH STATEMENT "
    "EXECUTE FUNCTION report_count_updated()",
    "CREATE TRIGGER report_count_deleted AFTER DELETE ON grants "
    "REFERENCING OLD TABLE AS old_grants FOR EACH STATEMENT "
    "EXECUTE FUNCTION report_count_deleted()",
    "CREATE TRIGGER report_reach_inserted AFTER INSERT ON user_month "
    "REFERENCING NEW TABLE AS new_months FOR EACH STATEMENT "
    "EXECUTE FUNCTION report_reach_inserted()",
    "CREATE TRIGGER report_reach_deleted AFTER DELETE ON user_month "
    "REFERENCING OLD TABLE AS old_months FOR EACH STATEMENT "
    "EXECUTE FUNCTION report_reach_deleted()",
)
# The grants already recorded, as one compacted row per key, and each user's summary.
BACKFILL = _COUNT.format(rows=f"SELECT 1 AS sign, {_COLUMNS} FROM grants", compact="true")
BACKFILL_REACH = """
    INSERT INTO report_reach (month, prev, users, compact)
    SELECT month, prev, count(*), true FROM (
        SELECT month, lag(month) OVER (PARTITION BY user_id ORDER BY month) AS prev
        FROM user_month) p
    GROUP BY month, prev
"""
BACKFILL_USERS = """
    INSERT INTO report_users (campaign_id, user_id, grants, won, held_out, fulfilled, first_next)
    SELECT campaign_id, user_id, sum(grants), bool_or(granted > 0), bool_or(held_out > 0),
        bool_or(fulfilled > 0), min(next_month) FILTER (WHERE granted + held_out > 0)
    FROM report_people GROUP BY campaign_id, user_id ORDER BY campaign_id, user_id
"""


def upgrade() -> None:
    run_ddl(op, TABLES)
    op.execute(NEXT_MONTH)
    for name, body in FUNCTIONS.items():
        op.execute(_function(name, body))
    # Counted under locks that keep grants and month metrics from changing between the backfill
    # and the triggers taking over.
    op.execute("LOCK TABLE grants, user_month IN SHARE ROW EXCLUSIVE MODE")
    run_ddl(op, BACKFILL)
    op.execute(BACKFILL_USERS)
    op.execute(BACKFILL_REACH)
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    for name in FUNCTIONS:
        table = "user_month" if name.startswith("report_reach") else "grants"
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DROP TABLE IF EXISTS report_reach")
    op.execute("DROP FUNCTION IF EXISTS report_next_month(text)")
    op.execute("DROP TABLE IF EXISTS report_users")
    op.execute("DROP TABLE IF EXISTS report_people")
    op.execute("DROP TABLE IF EXISTS report_counts")
