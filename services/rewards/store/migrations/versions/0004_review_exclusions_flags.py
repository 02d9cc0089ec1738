"""Prize integrity (SPEC §10, §14): anomaly flags stored with the metric values they came with;
grants `held` for review (reserving budget like granted ones) and `excluded` by an approver;
per-campaign exclusion lists; and the changes a settled period's inputs received after it
settled (`changed_after_settlement`).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE user_day ADD COLUMN flags jsonb NOT NULL DEFAULT '[]';
ALTER TABLE group_month ADD COLUMN flags jsonb NOT NULL DEFAULT '[]';
ALTER TABLE grants DROP CONSTRAINT grants_status_check,
    ADD CONSTRAINT grants_status_check
        CHECK (status IN ('granted', 'budget_exhausted', 'revoked', 'held', 'excluded')),
    DROP CONSTRAINT grants_fulfilment_promised,
    ADD CONSTRAINT grants_fulfilment_promised
        CHECK ((status IN ('budget_exhausted', 'held', 'excluded')) = (fulfilment_status IS NULL)),
    ADD COLUMN reviewed_by text,
    ADD COLUMN reviewed_at timestamptz,
    ADD COLUMN review_reason text;
CREATE INDEX grants_held ON grants (campaign_id, period, grant_id) WHERE status = 'held';
CREATE TABLE exclusions (
    campaign_id text NOT NULL REFERENCES campaigns,
    subject text NOT NULL CHECK (subject IN ('user', 'group')),
    subject_id text NOT NULL,
    PRIMARY KEY (campaign_id, subject, subject_id)
);
CREATE TABLE settlement_changes (
    campaign_id text NOT NULL,
    rule_id text NOT NULL,
    period text NOT NULL,
    subject_id text NOT NULL,
    settled_values jsonb NOT NULL,
    new_subject boolean NOT NULL,
    max_abs_delta double precision NOT NULL,
    first_changed_at timestamptz NOT NULL,
    last_changed_at timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, rule_id, period, subject_id),
    FOREIGN KEY (campaign_id, rule_id, period) REFERENCES settlements
);
CREATE INDEX settlements_period ON settlements (period)
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op,
        """
        DROP INDEX IF EXISTS settlements_period;
        DROP TABLE IF EXISTS settlement_changes;
        DROP TABLE IF EXISTS exclusions;
        DROP INDEX IF EXISTS grants_held;
        DELETE FROM grants WHERE status IN ('held', 'excluded');
        ALTER TABLE grants DROP COLUMN review_reason, DROP COLUMN reviewed_at,
            DROP COLUMN reviewed_by,
            DROP CONSTRAINT grants_fulfilment_promised,
            ADD CONSTRAINT grants_fulfilment_promised
                CHECK ((status = 'budget_exhausted') = (fulfilment_status IS NULL)),
            DROP CONSTRAINT grants_status_check,
            ADD CONSTRAINT grants_status_check
                CHECK (status IN ('granted', 'budget_exhausted', 'revoked'));
        ALTER TABLE group_month DROP COLUMN flags;
        ALTER TABLE user_day DROP COLUMN flags
        """,
    )
