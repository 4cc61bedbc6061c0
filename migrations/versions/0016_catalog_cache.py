"""Scale fixes from the benchmark (docs/performance.md): the evidence list's index, and the read
cache's "catalog" scope (the frameworks list's control counts and the framework page's first tree
level, invalidated by writes to frameworks and controls, as migration 0009 does for the dashboard).

- ix_evidence_live_created_at_id: the evidence list (live evidence, newest first, keyset on
  (created_at, id)) read 51 index entries instead of sorting every live row.

Revision ID: 0016_catalog_cache
Revises: 0015_reports
Create Date: 2026-12-02 11:45:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0016_catalog_cache'
down_revision = '0015_reports'
branch_labels = None
depends_on = None

# Frozen here (migrations never import the application): what the catalog scope's values read.
# governance.services.read_cache.SOURCES["catalog"] must say the same (tested).
CATALOG_SOURCES = {
    "frameworks": "INSERT OR UPDATE OR DELETE",
    "controls": "INSERT OR UPDATE OR DELETE",
}


def upgrade() -> None:
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.create_index('ix_evidence_live_created_at_id', ['created_at', 'id'], unique=False,
                              postgresql_where=sa.text('deleted_at IS NULL'))
    op.execute("INSERT INTO cache_generations (scope) VALUES ('catalog')")
    for table, events in CATALOG_SOURCES.items():
        op.execute(f"CREATE CONSTRAINT TRIGGER {table}_cache_catalog AFTER {events} ON {table} "
                   "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                   "EXECUTE FUNCTION bump_cache_generation('catalog')")
        op.execute(f"CREATE TRIGGER {table}_cache_catalog_truncate AFTER TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_generation('catalog')")


def downgrade() -> None:
    for table in CATALOG_SOURCES:
        op.execute(f"DROP TRIGGER {table}_cache_catalog_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_cache_catalog ON {table}")
    op.execute("DELETE FROM cache_entries WHERE scope = 'catalog'")
    op.execute("DELETE FROM cache_generations WHERE scope = 'catalog'")
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_index('ix_evidence_live_created_at_id', postgresql_where=sa.text('deleted_at IS NULL'))
