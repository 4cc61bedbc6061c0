"""Mappings: the NIST OLIR relationship words and an optional strength.

The `mapping_relationship` values become the OLIR vocabulary (equal, subset_of, superset_of,
intersects_with, related_to) by renaming in place (existing rows keep their meaning), and mappings gain
`strength`, an optional integer 1..10 (how strongly the two controls relate; 10 = fully).

Revision ID: 0006_mapping_vocabulary
Revises: 0005_framework_import
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006_mapping_vocabulary'
down_revision = '0005_framework_import'
branch_labels = None
depends_on = None

RENAMES = (("equivalent", "equal"), ("intersects", "intersects_with"), ("related", "related_to"))


def upgrade() -> None:
    for old, new in RENAMES:
        op.execute(f"ALTER TYPE mapping_relationship RENAME VALUE '{old}' TO '{new}'")
    op.execute("ALTER TABLE mappings ALTER COLUMN relationship SET DEFAULT 'related_to'")
    op.add_column("mappings", sa.Column("strength", sa.SmallInteger(), nullable=True))
    op.create_check_constraint("strength_range", "mappings", "strength BETWEEN 1 AND 10")


def downgrade() -> None:
    op.drop_column("mappings", "strength")  # drops ck_mappings_strength_range with it
    for old, new in RENAMES:
        op.execute(f"ALTER TYPE mapping_relationship RENAME VALUE '{new}' TO '{old}'")
    op.execute("ALTER TABLE mappings ALTER COLUMN relationship SET DEFAULT 'related'")
