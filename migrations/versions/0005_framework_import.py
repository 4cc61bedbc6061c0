"""Framework import: a `withdrawn` control status (OSCAL catalogs mark withdrawn controls).

ALTER TYPE ... ADD VALUE runs outside the migration's transaction (older PostgreSQL refuses it in a
transaction block, and a value added in a transaction cannot be used before it commits). PostgreSQL
cannot drop an enum value, so the downgrade maps withdrawn controls to `deprecated` and rebuilds the
type with the old values.

Revision ID: 0005_framework_import
Revises: 0004_rbac_policy
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = '0005_framework_import'
down_revision = '0004_rbac_policy'
branch_labels = None
depends_on = None

OLD_VALUES = ("draft", "active", "deprecated")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("ALTER TYPE control_status ADD VALUE IF NOT EXISTS 'withdrawn'")


def downgrade() -> None:
    values = ", ".join(f"'{v}'" for v in OLD_VALUES)
    op.execute("UPDATE controls SET status = 'deprecated' WHERE status = 'withdrawn'")
    op.execute("ALTER TYPE control_status RENAME TO control_status_old")
    op.execute(f"CREATE TYPE control_status AS ENUM ({values})")
    op.execute("ALTER TABLE controls ALTER COLUMN status DROP DEFAULT")
    op.execute("ALTER TABLE controls ALTER COLUMN status TYPE control_status "
               "USING status::text::control_status")
    op.execute("ALTER TABLE controls ALTER COLUMN status SET DEFAULT 'active'")
    op.execute("DROP TYPE control_status_old")
