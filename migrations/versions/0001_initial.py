"""Initial schema: the whole data model of the seed (section 4, Database Design).

Hand-reviewed from autogenerate, plus what autogenerate cannot express:
- ENUM types created once up front (severity is shared by checks, alerts and tasks) and dropped
  on downgrade;
- set_updated_at() and a BEFORE UPDATE trigger on every table with updated_at;
- the DEFAULT partition and monthly partitions (this month + 3) of audit_logs and results.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26 01:05:46.056166

"""

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of governance.models.enums at this revision (migrations never import models).
ENUM_VALUES: dict[str, tuple[str, ...]] = {
    "framework_status": ("draft", "active", "retired"),
    "control_status": ("draft", "active", "deprecated"),
    "mapping_relationship": ("equivalent", "subset_of", "superset_of", "intersects", "related"),
    "severity": ("low", "medium", "high", "critical"),
    "probe_status": ("idle", "running", "succeeded", "failed"),
    "check_status": ("active", "disabled"),
    "result_outcome": ("compliant", "non_compliant", "partial", "error", "not_applicable"),
    "evidence_status": ("draft", "in_review", "approved", "rejected", "expired"),
    "score_scope": ("framework", "control", "user"),
    "audit_outcome": ("success", "denied", "error"),
    "alert_status": ("open", "acknowledged", "resolved"),
    "task_status": ("open", "in_progress", "done", "cancelled"),
}
ENUMS = {name: postgresql.ENUM(*values, name=name, create_type=False) for name, values in ENUM_VALUES.items()}

TABLES_WITH_UPDATED_AT = (
    "roles",
    "users",
    "permissions",
    "frameworks",
    "controls",
    "mappings",
    "probes",
    "checks",
    "results",
    "evidence",
    "evidence_links",
    "scores",
    "metrics",
    "audit_logs",
    "alerts",
    "tasks",
)
# The seed's access levels (section 4.3, "roles"): reference data every installation needs. Casbin
# names roles by `name`; what each may do lives in the permissions table.
ROLES = (
    ("admin", "Manages users, roles and settings; full access."),
    ("compliance_officer", "Manages frameworks, controls, crosswalks and evidence review."),
    ("engineer", "Runs probes and attaches evidence; works on remediation tasks."),
    ("auditor", "Reads frameworks, evidence and the audit log; approves or rejects evidence."),
)
PARTITIONED_TABLES = ("audit_logs", "results")
PARTITION_MONTHS_AHEAD = 3

# clock_timestamp(), not now(): updated_at must move even when the row was inserted earlier in the
# same transaction.
SET_UPDATED_AT = """
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$
"""


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def _create_partitions() -> None:
    """Same layout as governance.services.partitions.ensure_partitions, frozen here."""
    first = datetime.now(UTC).date().replace(day=1)
    for table in PARTITIONED_TABLES:
        op.execute(f"CREATE TABLE IF NOT EXISTS {table}_default PARTITION OF {table} DEFAULT")
        for offset in range(PARTITION_MONTHS_AHEAD + 1):
            lower = _add_months(first, offset)
            upper = _add_months(first, offset + 1)
            op.execute(
                f"CREATE TABLE IF NOT EXISTS {table}_p{lower.year:04d}_{lower.month:02d} "
                f"PARTITION OF {table} FOR VALUES FROM ('{lower.isoformat()} 00:00:00+00') "
                f"TO ('{upper.isoformat()} 00:00:00+00')"
            )


def upgrade() -> None:
    bind = op.get_bind()
    for enum in ENUMS.values():
        enum.create(bind, checkfirst=False)
    op.execute(SET_UPDATED_AT)
    _create_tables()
    for table in TABLES_WITH_UPDATED_AT:
        op.execute(
            f"CREATE TRIGGER {table}_set_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
        )
    _create_partitions()
    roles = sa.table("roles", sa.column("name", sa.String), sa.column("description", sa.Text))
    op.bulk_insert(roles, [{"name": name, "description": description} for name, description in ROLES])


def downgrade() -> None:
    # Dependants first; dropping a partitioned table drops its partitions, dropping a table drops its
    # indexes, constraints and triggers.
    for table in (
        "results",
        "evidence_links",
        "tasks",
        "checks",
        "scores",
        "probes",
        "mappings",
        "evidence",
        "audit_logs",
        "alerts",
        "users",
        "controls",
        "roles",
        "permissions",
        "metrics",
        "frameworks",
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION set_updated_at()")
    bind = op.get_bind()
    for enum in reversed(list(ENUMS.values())):
        enum.drop(bind, checkfirst=False)


def _create_tables() -> None:
    op.create_table(
        "frameworks",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("license", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", ENUMS["framework_status"], server_default="draft", nullable=False),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('english'::regconfig, coalesce(title, '') || ' ' || coalesce(description, ''))",
                persisted=True,
            ),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frameworks")),
        sa.UniqueConstraint("title", "version", name=op.f("uq_frameworks_title_version")),
    )
    op.create_index(
        "ix_frameworks_active",
        "frameworks",
        ["title"],
        unique=False,
        postgresql_where=sa.text("status = 'active' AND deleted_at IS NULL"),
    )
    op.create_index("ix_frameworks_search", "frameworks", ["search"], unique=False, postgresql_using="gin")

    op.create_table(
        "metrics",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column(
            "dimensions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_metrics_period_ordered")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
    )
    op.create_index("ix_metrics_dimensions", "metrics", ["dimensions"], unique=False, postgresql_using="gin")
    op.create_index(
        "uq_metrics_key_period_dimensions",
        "metrics",
        ["key", "period_start", "period_end", "dimensions"],
        unique=True,
    )

    op.create_table(
        "permissions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("ptype", sa.String(length=255), nullable=False),
        sa.Column("v0", sa.String(length=255), nullable=True),
        sa.Column("v1", sa.String(length=255), nullable=True),
        sa.Column("v2", sa.String(length=255), nullable=True),
        sa.Column("v3", sa.String(length=255), nullable=True),
        sa.Column("v4", sa.String(length=255), nullable=True),
        sa.Column("v5", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_permissions")),
    )
    op.create_index(
        "uq_permissions_rule",
        "permissions",
        ["ptype", "v0", "v1", "v2", "v3", "v4", "v5"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )

    op.create_table(
        "roles",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        sa.UniqueConstraint("name", name=op.f("uq_roles_name")),
    )
    op.create_table(
        "controls",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("framework_id", sa.UUID(), nullable=False),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("ref_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("assessable", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("weight", sa.Numeric(precision=6, scale=3), server_default=sa.text("1"), nullable=False),
        sa.Column("sort_order", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("status", ENUMS["control_status"], server_default="active", nullable=False),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('english'::regconfig, coalesce(ref_id, '') || ' ' || coalesce(title, '') || ' ' || coalesce(text, ''))",
                persisted=True,
            ),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("parent_id <> id", name=op.f("ck_controls_not_own_parent")),
        sa.CheckConstraint("weight >= 0", name=op.f("ck_controls_weight_non_negative")),
        sa.ForeignKeyConstraint(
            ["framework_id"],
            ["frameworks.id"],
            name=op.f("fk_controls_framework_id_frameworks"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["controls.id"], name=op.f("fk_controls_parent_id_controls"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_controls")),
        sa.UniqueConstraint("framework_id", "ref_id", name=op.f("uq_controls_framework_id_ref_id")),
    )
    op.create_index(
        "ix_controls_live_framework_id_sort_order",
        "controls",
        ["framework_id", "sort_order"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(op.f("ix_controls_parent_id"), "controls", ["parent_id"], unique=False)
    op.create_index("ix_controls_search", "controls", ["search"], unique=False, postgresql_using="gin")

    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role_id", sa.UUID(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["role_id"], ["roles.id"], name=op.f("fk_users_role_id_roles"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(op.f("ix_users_role_id"), "users", ["role_id"], unique=False)
    op.create_index(
        "uq_users_lower_email_live",
        "users",
        [sa.literal_column("lower(email)")],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.create_table(
        "alerts",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("severity", ENUMS["severity"], server_default="medium", nullable=False),
        sa.Column("status", ENUMS["alert_status"], server_default="open", nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("source_type", sa.String(length=64), nullable=True),
        sa.Column("source_id", sa.String(length=255), nullable=True),
        sa.Column("dedup_key", sa.String(length=255), nullable=True),
        sa.Column("acknowledged_by_id", sa.UUID(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_id"],
            ["users.id"],
            name=op.f("fk_alerts_acknowledged_by_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_acknowledged_by_id"), "alerts", ["acknowledged_by_id"], unique=False)
    op.create_index(
        "ix_alerts_open_severity_created_at",
        "alerts",
        ["severity", "created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index("ix_alerts_source_type_source_id", "alerts", ["source_type", "source_id"], unique=False)
    op.create_index(
        "uq_alerts_unresolved_dedup_key",
        "alerts",
        ["dedup_key"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved' AND dedup_key IS NOT NULL"),
    )

    op.create_table(
        "audit_logs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor_id", sa.UUID(), nullable=True),
        sa.Column("actor_name", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=True),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("outcome", ENUMS["audit_outcome"], nullable=False),
        sa.Column("ip", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_audit_logs_actor_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", "created_at", name=op.f("pk_audit_logs")),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_index("ix_audit_logs_action_created_at", "audit_logs", ["action", "created_at"], unique=False)
    op.create_index(
        "ix_audit_logs_actor_id_created_at", "audit_logs", ["actor_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_audit_logs_not_success_created_at",
        "audit_logs",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("outcome <> 'success'"),
    )
    op.create_index(
        "ix_audit_logs_object_type_object_id_created_at",
        "audit_logs",
        ["object_type", "object_id", "created_at"],
        unique=False,
    )
    op.create_index("ix_audit_logs_request_id", "audit_logs", ["request_id"], unique=False)

    op.create_table(
        "evidence",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("object_key", sa.String(length=1024), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "content_type",
            sa.String(length=255),
            server_default=sa.text("'application/octet-stream'"),
            nullable=False,
        ),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by_id", sa.UUID(), nullable=True),
        sa.Column("control_id", sa.UUID(), nullable=True),
        sa.Column("status", ENUMS["evidence_status"], server_default="draft", nullable=False),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('english'::regconfig, coalesce(name, '') || ' ' || coalesce(description, ''))",
                persisted=True,
            ),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_evidence_sha256_hex")),
        sa.CheckConstraint(
            "period_start IS NULL OR period_end IS NULL OR period_end >= period_start",
            name=op.f("ck_evidence_period_ordered"),
        ),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_evidence_size_non_negative")),
        sa.ForeignKeyConstraint(
            ["control_id"], ["controls.id"], name=op.f("fk_evidence_control_id_controls"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"],
            ["users.id"],
            name=op.f("fk_evidence_uploaded_by_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
        sa.UniqueConstraint("object_key", name=op.f("uq_evidence_object_key")),
    )
    op.create_index(
        "ix_evidence_approved_expires_at",
        "evidence",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'approved' AND deleted_at IS NULL AND expires_at IS NOT NULL"),
    )
    op.create_index(op.f("ix_evidence_control_id"), "evidence", ["control_id"], unique=False)
    op.create_index(
        "ix_evidence_live_status_created_at",
        "evidence",
        ["status", "created_at"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index("ix_evidence_search", "evidence", ["search"], unique=False, postgresql_using="gin")
    op.create_index(op.f("ix_evidence_uploaded_by_id"), "evidence", ["uploaded_by_id"], unique=False)

    op.create_table(
        "mappings",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("source_control_id", sa.UUID(), nullable=False),
        sa.Column("target_control_id", sa.UUID(), nullable=False),
        sa.Column("relationship", ENUMS["mapping_relationship"], server_default="related", nullable=False),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "source_control_id <> target_control_id", name=op.f("ck_mappings_distinct_controls")
        ),
        sa.ForeignKeyConstraint(
            ["source_control_id"],
            ["controls.id"],
            name=op.f("fk_mappings_source_control_id_controls"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_control_id"],
            ["controls.id"],
            name=op.f("fk_mappings_target_control_id_controls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mappings")),
        sa.UniqueConstraint(
            "source_control_id",
            "target_control_id",
            name=op.f("uq_mappings_source_control_id_target_control_id"),
        ),
    )
    op.create_index(op.f("ix_mappings_target_control_id"), "mappings", ["target_control_id"], unique=False)

    op.create_table(
        "probes",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("schedule", sa.String(length=128), nullable=True),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("status", ENUMS["probe_status"], server_default="idle", nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_probes_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probes")),
        sa.UniqueConstraint("name", name=op.f("uq_probes_name")),
    )
    op.create_index(
        "ix_probes_enabled_next_run_at",
        "probes",
        ["next_run_at"],
        unique=False,
        postgresql_where=sa.text("enabled"),
    )
    op.create_index(op.f("ix_probes_owner_id"), "probes", ["owner_id"], unique=False)

    op.create_table(
        "scores",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("scope", ENUMS["score_scope"], nullable=False),
        sa.Column("framework_id", sa.UUID(), nullable=True),
        sa.Column("control_id", sa.UUID(), nullable=True),
        sa.Column("user_id", sa.UUID(), nullable=True),
        sa.Column("value", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(scope = 'framework' AND framework_id IS NOT NULL AND control_id IS NULL AND user_id IS NULL) OR (scope = 'control' AND control_id IS NOT NULL AND framework_id IS NULL AND user_id IS NULL) OR (scope = 'user' AND user_id IS NOT NULL AND framework_id IS NULL AND control_id IS NULL)",
            name=op.f("ck_scores_scope_matches_subject"),
        ),
        sa.CheckConstraint(
            "passed IS NULL OR total IS NULL OR (passed >= 0 AND passed <= total)",
            name=op.f("ck_scores_passed_le_total"),
        ),
        sa.CheckConstraint("value >= 0 AND value <= 100", name=op.f("ck_scores_value_percentage")),
        sa.ForeignKeyConstraint(
            ["control_id"], ["controls.id"], name=op.f("fk_scores_control_id_controls"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["framework_id"],
            ["frameworks.id"],
            name=op.f("fk_scores_framework_id_frameworks"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_scores_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scores")),
    )
    op.create_index("ix_scores_control_id_computed_at", "scores", ["control_id", "computed_at"], unique=False)
    op.create_index(
        "ix_scores_framework_id_computed_at", "scores", ["framework_id", "computed_at"], unique=False
    )
    op.create_index("ix_scores_user_id_computed_at", "scores", ["user_id", "computed_at"], unique=False)

    op.create_table(
        "checks",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("probe_id", sa.UUID(), nullable=False),
        sa.Column("control_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("severity", ENUMS["severity"], server_default="medium", nullable=False),
        sa.Column("status", ENUMS["check_status"], server_default="active", nullable=False),
        sa.Column(
            "parameters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["control_id"], ["controls.id"], name=op.f("fk_checks_control_id_controls"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["probe_id"], ["probes.id"], name=op.f("fk_checks_probe_id_probes"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checks")),
        sa.UniqueConstraint("probe_id", "name", name=op.f("uq_checks_probe_id_name")),
    )
    op.create_index(
        "ix_checks_active_probe_id",
        "checks",
        ["probe_id"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(op.f("ix_checks_control_id"), "checks", ["control_id"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", ENUMS["task_status"], server_default="open", nullable=False),
        sa.Column("priority", ENUMS["severity"], server_default="medium", nullable=False),
        sa.Column("assignee_id", sa.UUID(), nullable=True),
        sa.Column("created_by_id", sa.UUID(), nullable=True),
        sa.Column("alert_id", sa.UUID(), nullable=True),
        sa.Column("evidence_id", sa.UUID(), nullable=True),
        sa.Column("control_id", sa.UUID(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_tasks_alert_id_alerts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["users.id"], name=op.f("fk_tasks_assignee_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["control_id"], ["controls.id"], name=op.f("fk_tasks_control_id_controls"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_tasks_created_by_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["evidence_id"], ["evidence.id"], name=op.f("fk_tasks_evidence_id_evidence"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(op.f("ix_tasks_alert_id"), "tasks", ["alert_id"], unique=False)
    op.create_index(op.f("ix_tasks_assignee_id"), "tasks", ["assignee_id"], unique=False)
    op.create_index(op.f("ix_tasks_control_id"), "tasks", ["control_id"], unique=False)
    op.create_index(op.f("ix_tasks_created_by_id"), "tasks", ["created_by_id"], unique=False)
    op.create_index(op.f("ix_tasks_evidence_id"), "tasks", ["evidence_id"], unique=False)
    op.create_index(
        "ix_tasks_open_assignee_id_due_date",
        "tasks",
        ["assignee_id", "due_date"],
        unique=False,
        postgresql_where=sa.text("status IN ('open', 'in_progress') AND deleted_at IS NULL"),
    )

    op.create_table(
        "evidence_links",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("evidence_id", sa.UUID(), nullable=False),
        sa.Column("control_id", sa.UUID(), nullable=True),
        sa.Column("check_id", sa.UUID(), nullable=True),
        sa.Column("task_id", sa.UUID(), nullable=True),
        sa.Column("linked_by_id", sa.UUID(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "num_nonnulls(control_id, check_id, task_id) = 1",
            name=op.f("ck_evidence_links_exactly_one_target"),
        ),
        sa.ForeignKeyConstraint(
            ["check_id"], ["checks.id"], name=op.f("fk_evidence_links_check_id_checks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["control_id"],
            ["controls.id"],
            name=op.f("fk_evidence_links_control_id_controls"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence.id"],
            name=op.f("fk_evidence_links_evidence_id_evidence"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["linked_by_id"],
            ["users.id"],
            name=op.f("fk_evidence_links_linked_by_id_users"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_evidence_links_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_links")),
    )
    op.create_index(op.f("ix_evidence_links_evidence_id"), "evidence_links", ["evidence_id"], unique=False)
    op.create_index(op.f("ix_evidence_links_linked_by_id"), "evidence_links", ["linked_by_id"], unique=False)
    op.create_index(
        "uq_evidence_links_check_id_evidence_id",
        "evidence_links",
        ["check_id", "evidence_id"],
        unique=True,
        postgresql_where=sa.text("check_id IS NOT NULL"),
    )
    op.create_index(
        "uq_evidence_links_control_id_evidence_id",
        "evidence_links",
        ["control_id", "evidence_id"],
        unique=True,
        postgresql_where=sa.text("control_id IS NOT NULL"),
    )
    op.create_index(
        "uq_evidence_links_task_id_evidence_id",
        "evidence_links",
        ["task_id", "evidence_id"],
        unique=True,
        postgresql_where=sa.text("task_id IS NOT NULL"),
    )

    op.create_table(
        "results",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("check_id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=True),
        sa.Column("outcome", ENUMS["result_outcome"], nullable=False),
        sa.Column("observed", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("expected", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("resource", sa.String(length=1024), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["check_id"], ["checks.id"], name=op.f("fk_results_check_id_checks"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", "created_at", name=op.f("pk_results")),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_index("ix_results_check_id_created_at", "results", ["check_id", "created_at"], unique=False)
    op.create_index(
        "ix_results_failing_check_id_created_at",
        "results",
        ["check_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("outcome IN ('non_compliant', 'partial', 'error')"),
    )
    op.create_index("ix_results_run_id", "results", ["run_id"], unique=False)
