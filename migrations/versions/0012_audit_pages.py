"""The audit-log pages' unfiltered order: an index on audit_logs (created_at, id).

The list pages newest first by keyset on (created_at, id) (governance.services.audit_queries). The
filtered views have their index already (actor, action, object, not-success, each with created_at);
the plain list and a time range alone had none, so PostgreSQL sorted a whole partition for the first
page and more for a deep one. With this index each page reads its 51 rows from the newest partition
down and stops, at any depth.

On a large existing log, build it ahead of the deploy with CREATE INDEX ... ON ONLY plus CONCURRENTLY
per partition and ATTACH (docs/audit-log-pages.md); this migration's plain CREATE INDEX locks the
table against writes while it builds.

Revision ID: 0012_audit_pages
Revises: 0011_audit_chain
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = '0012_audit_pages'
down_revision = '0011_audit_chain'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_logs_created_at_id", "audit_logs", ["created_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_logs_created_at_id", table_name="audit_logs")
