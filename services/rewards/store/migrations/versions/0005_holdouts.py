"""Holdouts (SPEC §12): grants of held-out users are recorded `held_out` — evaluated, never
granted, published or notified, spending no budget — and each campaign's holdout seed is
committed at activation (only its SHA-256 readable until the campaign ends).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from shared.plumbing import run_ddl

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE grants DROP CONSTRAINT grants_status_check,
    ADD CONSTRAINT grants_status_check
        CHECK (status IN ('granted', 'budget_exhausted', 'revoked', 'held', 'excluded',
                          'held_out')),
    DROP CONSTRAINT grants_fulfilment_promised,
    ADD CONSTRAINT grants_fulfilment_promised
        CHECK ((status IN ('budget_exhausted', 'held', 'excluded', 'held_out'))
               = (fulfilment_status IS NULL));
CREATE TABLE holdout_seeds (
    campaign_id text PRIMARY KEY REFERENCES campaigns,
    seed text NOT NULL,
    seed_sha256 text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
)
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(
        op,
        """
        DROP TABLE IF EXISTS holdout_seeds;
        DELETE FROM grants WHERE status = 'held_out';
        ALTER TABLE grants DROP CONSTRAINT grants_fulfilment_promised,
            ADD CONSTRAINT grants_fulfilment_promised
                CHECK ((status IN ('budget_exhausted', 'held', 'excluded'))
                       = (fulfilment_status IS NULL)),
            DROP CONSTRAINT grants_status_check,
            ADD CONSTRAINT grants_status_check
                CHECK (status IN ('granted', 'budget_exhausted', 'revoked', 'held', 'excluded'))
        """,
    )
