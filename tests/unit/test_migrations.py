"""The migration chain builds exactly the models' schema, and can be taken down and up again."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import flask_migrate
import psycopg
import pytest
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from psycopg import sql
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from extensions import db
from governance.models import Base
from governance.models.enums import PG_ENUM_NAMES
from governance.services.partitions import PARTITIONED_TABLES, add_months, partition_name

SEED_TABLES = {
    "users",
    "roles",
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
}

# Our own objects only (constraint triggers, contype 't', are the read cache's and are migration-only:
# tests/unit/test_read_cache.py checks them): partitions are created at run time, alembic_version is Alembic's, the job
# queue's procrastinate_* objects are procrastinate's (migration 0002, tested in test_jobs.py).
CATALOG = """
SELECT 'index', tablename, indexname, indexdef FROM pg_indexes
 WHERE schemaname = 'public' AND tablename = ANY(:tables)
UNION ALL
SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text = ANY(:tables) AND contype <> 't'
UNION ALL
SELECT 'column', table_name, column_name,
       concat_ws(' ', udt_name, character_maximum_length, numeric_precision, numeric_scale, is_nullable,
                 column_default, generation_expression)
  FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ANY(:tables)
UNION ALL
SELECT 'enum', t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder), ''
  FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
 WHERE t.typname NOT LIKE 'procrastinate\\_%' GROUP BY t.typname
UNION ALL
SELECT 'partitioned', c.relname, pg_get_partkeydef(c.oid), '' FROM pg_class c
 WHERE c.relkind = 'p' AND c.relnamespace = 'public'::regnamespace
ORDER BY 1, 2, 3
"""


def _catalog(url: str) -> list[tuple[str, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(CATALOG), {"tables": sorted(SEED_TABLES | SUPPORT_TABLES)}).all()
            return [tuple(str(value) for value in row) for row in rows]
    finally:
        engine.dispose()


def _check_no_drift() -> None:
    """`flask db check`: Flask-Migrate turns a detected difference into SystemExit."""
    try:
        flask_migrate.check()
    except SystemExit as exc:  # pragma: no cover - only on failure
        pytest.fail(f"flask db check found drift between the models and the migrations ({exc})")


def _leftovers(conn_url: str) -> dict[str, list[str]]:
    engine = create_engine(conn_url)
    try:
        with engine.connect() as conn:
            return {
                "tables": conn.execute(
                    text(
                        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                        "AND relkind IN ('r', 'p') AND relname <> 'alembic_version'"
                    )
                )
                .scalars()
                .all(),
                "types": conn.execute(
                    text(
                        "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace "
                        "AND typtype = 'e'"
                    )
                )
                .scalars()
                .all(),
                "functions": conn.execute(
                    text("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")
                )
                .scalars()
                .all(),
            }
    finally:
        engine.dispose()


@pytest.fixture
def other_scratch_database_url(pg_admin_url: str) -> Iterator[str]:
    name = f"gov_scratch_{uuid.uuid4().hex[:10]}"
    admin = make_url(pg_admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_one_head(app: Flask) -> None:
    with app.app_context():
        config = current_app.extensions["migrate"].migrate.get_config()
        assert len(ScriptDirectory.from_config(config).get_heads()) == 1


# Tables beyond the seed's, each named with the issue that needs it.
SUPPORT_TABLES = {
    "user_sessions",  # identity: sessions revocable on the server
    "recovery_codes",  # identity: MFA recovery codes
    "login_attempts",  # identity: throttling across workers
    "evidence_revisions",  # evidence: numbered uploads, each its own object version
    "evidence_reviews",  # evidence: the review history
    "notifications",  # in-app notices (and the e-mail outbox)
    "check_controls",  # probes: a check assesses one or more controls
    "probe_runs",  # probes: one row per run (queued, running, finished), results.run_id
    "attestations",  # probes: manual_attestation statements
    "current_scores",  # scoring: the current score per subject, kept incrementally
    "cache_generations",  # read cache: one generation per scope, bumped by the source tables' writes
    "cache_entries",  # read cache: values computed under a generation
    "alert_events",  # alerts: the history of each alert (raised, acknowledged, resolved)
    "audit_chain_heads",  # audit log: the hash chain's head (last seq and hash), locked by each insert
    "ai_systems",  # AI inventory: AI systems (use cases)
    "ai_models",  # AI inventory: models, many-to-many with systems
    "datasets",  # AI inventory: datasets, many-to-many with systems
    "ai_system_models",  # AI inventory: system uses model
    "ai_system_datasets",  # AI inventory: system uses dataset
    "ai_system_controls",  # AI inventory: controls that apply to a system (manual or by classification)
    "ai_classifications",  # AI inventory: versioned EU AI Act classifications
    "impact_assessments",  # AI inventory: versioned impact assessments and their approval
    "backups",  # data lifecycle: encrypted backups (the bytes are in the backup bucket)
    "restore_drills",  # data lifecycle: restores into a scratch database and their checks
    "legal_holds",  # data lifecycle: holds that block archival and deletion
    "audit_archives",  # data lifecycle: audit partitions exported to cold storage, then dropped
    "erasure_requests",  # data lifecycle: GDPR erasure requests, approvals and receipts
    "person_keys",  # data lifecycle: per-person keys sealing personal fields in audit entries
    "reports",  # reports: statements of applicability rendered by a job (PDF, CSV, OSCAL), hashed
}
# Derived rows with times of their own (computed_at, changed_at), never updated_at.
WITHOUT_UPDATED_AT = {"cache_generations", "cache_entries"}


def test_metadata_holds_every_table_of_the_seed() -> None:
    assert set(Base.metadata.tables) == SEED_TABLES | SUPPORT_TABLES


def test_upgrade_empty_database_no_drift_downgrade_and_upgrade_again(
    scratch_database_url: str, app_for: Callable[[str], Flask]
) -> None:
    application = app_for(scratch_database_url)
    with application.app_context():
        flask_migrate.upgrade()
        _check_no_drift()
        first = _catalog(scratch_database_url)
        # Every migration's DDL, also after 0005's autocommit block, is audited as expected: a fresh
        # install starts without a single "schema change outside a migration" alert.
        with db.engine.connect() as conn:
            expected = dict(conn.execute(text(
                "SELECT (details->>'expected')::boolean, count(*) FROM audit_logs"
                " WHERE action = 'schema.change' GROUP BY 1")).all())
            alerts = conn.execute(text("SELECT count(*) FROM alerts WHERE rule = 'schema.change'")).scalar_one()
            # ... and the setting does not outlive the migrations on the connection.
            leftover = conn.execute(text("SELECT current_setting('governance.expected_ddl', true)")).scalar()
        assert expected.get(True, 0) > 100 and expected.get(False, 0) == 0, expected
        assert alerts == 0
        assert not leftover

        flask_migrate.downgrade(revision="base")
        assert _leftovers(scratch_database_url) == {"tables": [], "types": [], "functions": []}

        flask_migrate.upgrade()
        _check_no_drift()
        assert _catalog(scratch_database_url) == first
        db.engine.dispose()


def test_migrations_build_exactly_what_the_models_declare(
    scratch_database_url: str, other_scratch_database_url: str, app_for: Callable[[str], Flask]
) -> None:
    """Stricter than `flask db check`, which ignores e.g. partial-index predicates and generated
    expressions: the catalog of a migrated database equals that of metadata.create_all()."""
    application = app_for(scratch_database_url)
    with application.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    engine = create_engine(other_scratch_database_url)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    migrated, declared = _catalog(scratch_database_url), _catalog(other_scratch_database_url)
    only_migrated = sorted(set(migrated) - set(declared))
    only_declared = sorted(set(declared) - set(migrated))
    assert (only_migrated, only_declared) == ([], [])


def test_enum_types_are_the_python_enums(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t "
                "JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = 'public'::regnamespace "
                "GROUP BY t.typname"
            )
        ).all()
    in_database = {name: list(labels) for name, labels in rows}
    expected = {name: [m.value for m in enum_cls] for enum_cls, name in PG_ENUM_NAMES.items()}
    assert {k: v for k, v in in_database.items() if k in expected} == expected


def test_every_table_with_updated_at_has_the_trigger(app: Flask) -> None:
    with_updated_at = {t.name for t in Base.metadata.tables.values() if "updated_at" in t.c}
    with app.app_context(), db.engine.connect() as conn:
        triggered = set(
            conn.execute(
                text(
                    "SELECT tgrelid::regclass::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                    "WHERE p.proname = 'set_updated_at' AND NOT t.tgisinternal AND t.tgparentid = 0"
                )
            ).scalars()
        )
    assert with_updated_at == (SEED_TABLES | SUPPORT_TABLES) - WITHOUT_UPDATED_AT
    assert triggered == with_updated_at


def test_migration_creates_default_and_upcoming_partitions(app: Flask) -> None:
    this_month = datetime.now(UTC).date().replace(day=1)
    with app.app_context(), db.engine.connect() as conn:
        for table in PARTITIONED_TABLES:
            children = set(
                conn.execute(
                    text(
                        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = CAST(:t AS regclass)"
                    ),
                    {"t": table},
                ).scalars()
            )
            months = [add_months(this_month, n) for n in range(4)]
            expected = {f"{table}_default"} | {partition_name(table, month) for month in months}
            assert expected <= children
