"""The processed-event ledger, partitioned by the UTC day of `occurred_at` (SPEC §4, §9).

An expired day is dropped as a whole partition (O(1), no DELETE scan, no bloat). `ledger_days`
knows every day the ledger has had: `open` while its partition exists, `sealed` once dropped —
events of a sealed day are refused, because their repeats could no longer be recognised
(services/scoring/domain/retention.py says when a day expires; docs/operations.md, retention).

Rows of the unpartitioned ledger move into one partition per day they occupy.

Revision ID: 0005
Revises: 0004
"""

from alembic import op
from sqlalchemy import text

from shared.plumbing import run_ddl

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE processed_events RENAME TO processed_events_unpartitioned;
CREATE TABLE processed_events (
    event_id uuid NOT NULL,
    occurred_day date NOT NULL,
    occurred_at timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, occurred_day)
) PARTITION BY RANGE (occurred_day);
CREATE TABLE ledger_days (
    day date PRIMARY KEY,
    sealed_at timestamptz,
    last_old_event_at timestamptz
);
COMMENT ON TABLE ledger_days IS
    'Days of the processed-event ledger: open while sealed_at IS NULL (partition exists), '
    'last_old_event_at = the last batch that wrote an event older than the live horizon '
    '(an import), which keeps the day open for the import hold.';
"""


def partition_name(day: str) -> str:
    return "processed_events_" + day.replace("-", "")


def upgrade() -> None:
    run_ddl(op, DDL)
    bind = op.get_bind()
    days = [
        str(r[0])
        for r in bind.execute(
            text(
                "SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date "
                "FROM processed_events_unpartitioned ORDER BY 1"
            )
        )
    ]
    for day in days:
        op.execute(
            f"CREATE TABLE {partition_name(day)} PARTITION OF processed_events "
            f"FOR VALUES FROM ('{day}') TO ('{day}'::date + 1)"
        )
        bind.execute(text("INSERT INTO ledger_days (day) VALUES (CAST(:d AS date))"), {"d": day})
    op.execute(
        "INSERT INTO processed_events (event_id, occurred_day, occurred_at, processed_at) "
        "SELECT event_id, (occurred_at AT TIME ZONE 'UTC')::date, occurred_at, processed_at "
        "FROM processed_events_unpartitioned"
    )
    op.execute("DROP TABLE processed_events_unpartitioned")


def downgrade() -> None:
    op.execute("ALTER TABLE processed_events RENAME TO processed_events_partitioned")
    op.execute(
        "CREATE TABLE processed_events (event_id uuid PRIMARY KEY, "
        "occurred_at timestamptz NOT NULL, processed_at timestamptz NOT NULL DEFAULT now())"
    )
    op.execute(
        "INSERT INTO processed_events SELECT event_id, occurred_at, processed_at "
        "FROM processed_events_partitioned ON CONFLICT DO NOTHING"
    )
    op.execute("DROP TABLE processed_events_partitioned")  # drops its partitions too
    op.execute("DROP TABLE ledger_days")
