"""RBAC policy: the default role-by-permission matrix as Casbin rules in `permissions`.

Data only. The matrix is frozen here (a migration must not change when the code does) and written
out in docs/security.md. Each rule is (role, resource, action, effect); FastEnforcer matches role
and resource by equality, so there are no wildcards: admin's "everything" is the whole catalogue.
Downgrade removes exactly the rows this migration inserted.

Revision ID: 0004_rbac_policy
Revises: 0003_identity
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0004_rbac_policy'
down_revision = '0003_identity'
branch_labels = None
depends_on = None

# Every resource of the product and the actions it knows, including areas whose pages come later.
CATALOGUE = {
    "dashboard": ("read",),
    "account": ("read", "update"),
    "session": ("delete",),
    "frameworks": ("read", "create", "update", "delete"),
    "controls": ("read", "create", "update", "delete"),
    "mappings": ("read", "create", "update", "delete"),
    "probes": ("read", "create", "update", "delete", "run"),
    "checks": ("read", "create", "update", "delete"),
    "results": ("read", "review"),
    "evidence": ("read", "upload", "link", "review", "delete"),
    "tasks": ("read", "create", "update", "delete", "work"),
    "alerts": ("read", "update"),
    "audit_log": ("read", "export"),
    "users": ("read", "manage"),
    "roles": ("read", "manage"),
}

EVERYONE = {"dashboard": ("read",), "account": ("read", "update"), "session": ("delete",),
            "frameworks": ("read",)}

MATRIX: dict[str, dict[str, tuple[str, ...]]] = {
    "admin": CATALOGUE,
    "compliance_officer": {
        **EVERYONE,
        "frameworks": CATALOGUE["frameworks"],
        "controls": CATALOGUE["controls"],
        "mappings": CATALOGUE["mappings"],
        "probes": CATALOGUE["probes"],
        "checks": CATALOGUE["checks"],
        "results": ("read", "review"),
        "evidence": ("read",),
        "tasks": CATALOGUE["tasks"],
        "alerts": ("read", "update"),
    },
    "engineer": {
        **EVERYONE,
        "controls": ("read",),
        "mappings": ("read",),
        "probes": ("read", "run"),
        "checks": ("read",),
        "results": ("read",),
        "evidence": ("read", "upload", "link"),
        "tasks": ("read", "work"),
        "alerts": ("read",),
    },
    "auditor": {
        **EVERYONE,
        **{resource: ("read",) for resource in CATALOGUE if "read" in CATALOGUE[resource]},
        "account": ("read", "update"),
        "evidence": ("read", "review"),
        "audit_log": ("read", "export"),
    },
}

# Nobody edits or deletes audit entries: explicit denies win over any allow added later.
DENIED_TO_EVERYONE = (("audit_log", "update"), ("audit_log", "delete"))


def rules() -> list[tuple[str, str, str, str]]:
    out = []
    for role, grants in MATRIX.items():
        for resource, actions in grants.items():
            out.extend((role, resource, action, "allow") for action in actions)
        out.extend((role, resource, action, "deny") for resource, action in DENIED_TO_EVERYONE)
    return out


permissions = sa.table(
    "permissions",
    sa.column("ptype", sa.String), sa.column("v0", sa.String), sa.column("v1", sa.String),
    sa.column("v2", sa.String), sa.column("v3", sa.String),
)


def upgrade() -> None:
    op.bulk_insert(permissions, [
        {"ptype": "p", "v0": role, "v1": resource, "v2": action, "v3": effect}
        for role, resource, action, effect in rules()
    ])


def downgrade() -> None:
    for role, resource, action, effect in rules():
        op.execute(
            permissions.delete().where(
                permissions.c.ptype == "p", permissions.c.v0 == role, permissions.c.v1 == resource,
                permissions.c.v2 == action, permissions.c.v3 == effect,
            )
        )
