"""The shared read cache: cache_generations (one row per scope) bumped by triggers on the source
tables when a writing transaction commits, and cache_entries (UNLOGGED) holding values computed
under a generation.

The triggers are deferred constraint triggers, so the generation row is locked only inside COMMIT,
after every other lock the transaction takes (no deadlock with the writers' own row locks), and
the function bumps once per scope per statement (at COMMIT every deferred event shares that
statement), not once per row.

Revision ID: 0009_read_cache
Revises: 0008_probes
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0009_read_cache'
down_revision = '0008_probes'
branch_labels = None
depends_on = None

# Frozen here (migrations never import the application): what the dashboard widgets read, and
# which writes change it. governance.services.read_cache.SOURCES must say the same (tested).
DASHBOARD_SOURCES = {
    "frameworks": "INSERT OR UPDATE OR DELETE",
    "controls": "INSERT OR UPDATE OR DELETE",
    "evidence": "INSERT OR UPDATE OR DELETE",
    "users": "INSERT OR UPDATE OF deleted_at OR DELETE",  # the count only; not every login
    "tasks": "INSERT OR UPDATE OR DELETE",
    "alerts": "INSERT OR UPDATE OR DELETE",
    "current_scores": "INSERT OR UPDATE OR DELETE",
    "metrics": "INSERT OR UPDATE OR DELETE",
    "probes": "INSERT OR UPDATE OR DELETE",
    "checks": "INSERT OR UPDATE OR DELETE",
    "check_controls": "INSERT OR UPDATE OR DELETE",
}

BUMP_FUNCTION = """
CREATE FUNCTION bump_cache_generation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    marker text := 'governance.cache_bumped_' || TG_ARGV[0];
BEGIN
    -- Once per scope and statement: deferred events all fire inside COMMIT (one statement); with
    -- SET CONSTRAINTS ALL IMMEDIATE every statement bumps on its own.
    IF current_setting(marker, true) IS NOT DISTINCT FROM statement_timestamp()::text THEN
        RETURN NULL;
    END IF;
    UPDATE cache_generations SET generation = generation + 1, changed_at = clock_timestamp()
     WHERE scope = TG_ARGV[0];
    PERFORM set_config(marker, statement_timestamp()::text, true);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table('cache_generations',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('generation', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cache_generations')),
    sa.UniqueConstraint('scope', name=op.f('uq_cache_generations_scope'))
    )
    op.create_table('cache_entries',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('generation', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cache_entries')),
    sa.UniqueConstraint('scope', 'key', name=op.f('uq_cache_entries_scope_key')),
    prefixes=['UNLOGGED']
    )
    op.execute("INSERT INTO cache_generations (scope) VALUES ('dashboard')")
    op.execute(BUMP_FUNCTION)
    for table, events in DASHBOARD_SOURCES.items():
        op.execute(f"CREATE CONSTRAINT TRIGGER {table}_cache_dashboard AFTER {events} ON {table} "
                   "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                   "EXECUTE FUNCTION bump_cache_generation('dashboard')")
        op.execute(f"CREATE TRIGGER {table}_cache_dashboard_truncate AFTER TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_generation('dashboard')")


def downgrade() -> None:
    for table in DASHBOARD_SOURCES:
        op.execute(f"DROP TRIGGER {table}_cache_dashboard_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_cache_dashboard ON {table}")
    op.execute("DROP FUNCTION bump_cache_generation()")
    op.drop_table('cache_entries')
    op.drop_table('cache_generations')
