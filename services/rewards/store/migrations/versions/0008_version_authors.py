"""Every principal who edited a version (SPEC §15 four eyes): `authors` holds the saver of the
version and every author of the content it was saved from, so re-saving someone else's edit
does not make it yours to approve. Versions saved before keep their one author.

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
ALTER TABLE campaign_versions ADD COLUMN IF NOT EXISTS authors text[];
UPDATE campaign_versions SET authors = ARRAY[author] WHERE authors IS NULL;
ALTER TABLE campaign_versions ALTER COLUMN authors SET NOT NULL
"""


def upgrade() -> None:
    run_ddl(op, DDL)


def downgrade() -> None:
    run_ddl(op, "ALTER TABLE campaign_versions DROP COLUMN IF EXISTS authors")
