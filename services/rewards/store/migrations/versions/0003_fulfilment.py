"""Fulfilment of grants (SPEC §11): each grant that promises a reward is `pending` until the
system that credits it reports `fulfilled` (with its reference) or `failed` (with a reason).
Grants recorded before this migration were granted at first, so they start pending too; a
budget-exhausted grant promises nothing and has no fulfilment.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE grants
    ADD COLUMN fulfilment_status text
        CHECK (fulfilment_status IN ('pending', 'fulfilled', 'failed')),
    ADD COLUMN fulfilment_reference text,
    ADD COLUMN fulfilment_reason text,
    ADD COLUMN fulfilment_at timestamptz;
UPDATE grants SET fulfilment_status = 'pending' WHERE status <> 'budget_exhausted';
ALTER TABLE grants
    ADD CONSTRAINT grants_fulfilment_promised
        CHECK ((status = 'budget_exhausted') = (fulfilment_status IS NULL)),
    ADD CONSTRAINT grants_fulfilment_reported
        CHECK (fulfilment_status NOT IN ('fulfilled', 'failed')
               OR (fulfilment_reference IS NOT NULL AND fulfilment_at IS NOT NULL));
CREATE INDEX grants_unfulfilled ON grants (fulfil_by)
    WHERE status = 'granted' AND fulfilment_status <> 'fulfilled'
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op,
        """
        DROP INDEX IF EXISTS grants_unfulfilled;
        ALTER TABLE grants DROP CONSTRAINT IF EXISTS grants_fulfilment_reported,
            DROP CONSTRAINT IF EXISTS grants_fulfilment_promised,
            DROP COLUMN fulfilment_at, DROP COLUMN fulfilment_reason,
            DROP COLUMN fulfilment_reference, DROP COLUMN fulfilment_status
        """,
    )
