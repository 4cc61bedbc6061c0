"""The job queue's schema (procrastinate 3.10.0), frozen in migrations/sql/.

procrastinate keeps its own tables, types and functions (all named procrastinate_*); env.py leaves
them out of autogenerate. A later procrastinate upgrade adds a revision that applies the
package's own migration files between the two versions.

Revision ID: 0002_job_queue
Revises: 0001_initial
"""

from pathlib import Path

from alembic import op

revision = "0002_job_queue"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

SCHEMA = Path(__file__).resolve().parent.parent / "sql" / "procrastinate-3.10.0-schema.sql"


def upgrade() -> None:
    # op.execute runs the text as one driver-level script; `%` must be doubled for psycopg.
    op.get_bind().exec_driver_sql(SCHEMA.read_text(encoding="utf-8").replace("%", "%%"))


def downgrade() -> None:
    op.execute("""
        DO $$
        DECLARE item record;
        BEGIN
            FOR item IN SELECT tablename FROM pg_tables
                        WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate\\_%' LOOP
                EXECUTE format('DROP TABLE %I CASCADE', item.tablename);
            END LOOP;
            FOR item IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%' LOOP
                EXECUTE format('DROP FUNCTION %s CASCADE', item.fn);
            END LOOP;
            FOR item IN SELECT t.typname FROM pg_type t
                        JOIN pg_namespace n ON n.oid = t.typnamespace
                        WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%'
                          AND t.typtype IN ('e', 'c') LOOP
                EXECUTE format('DROP TYPE %I CASCADE', item.typname);
            END LOOP;
        END $$;
    """)
