"""One test per integrity rule of the seed (section 4.5), against the migrated database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.orm import Session, scoped_session

from governance.models import (
    Alert,
    AuditLog,
    AuditOutcome,
    Base,
    Check,
    Control,
    Evidence,
    EvidenceLink,
    Framework,
    FrameworkStatus,
    Mapping,
    MappingRelationship,
    Permission,
    Probe,
    Result,
    ResultOutcome,
    Role,
    Score,
    ScoreScope,
    Task,
    User,
)
from governance.services.partitions import PARTITIONED_TABLES, ensure_partitions, list_partitions

DBSession = scoped_session[Session]

# Association rows that mean nothing without either end (and whose ends are soft-deleted anyway).
CASCADE_FOREIGN_KEYS = {
    ("evidence_links", "evidence_id"),
    ("evidence_links", "control_id"),
    ("evidence_links", "check_id"),
    ("evidence_links", "task_id"),
    ("evidence_links", "ai_system_id"),
    ("ai_system_models", "system_id"),
    ("ai_system_datasets", "system_id"),
    ("ai_system_controls", "system_id"),
    ("check_controls", "check_id"),
    ("mappings", "source_control_id"),
    ("mappings", "target_control_id"),
}
SOFT_DELETED = {"users", "frameworks", "controls", "evidence", "tasks", "ai_systems", "ai_models", "datasets"}


def _role(session: DBSession, name: str = "admin") -> Role:
    return session.scalars(select(Role).where(Role.name == name)).one()


def _user(session: DBSession, **kw: Any) -> User:
    user = User(
        email=f"u-{uuid.uuid4().hex[:8]}@example.test", name="U", role=_role(session), password_hash="x", **kw
    )
    session.add(user)
    session.flush()
    return user


def _framework(session: DBSession, **kw: Any) -> Framework:
    values: dict[str, Any] = {"title": f"Framework {uuid.uuid4().hex[:8]}", "version": "1.0", **kw}
    framework = Framework(**values)
    session.add(framework)
    session.flush()
    return framework


def _control(session: DBSession, framework: Framework, ref_id: str = "GOVERN 1.1", **kw: Any) -> Control:
    control = Control(framework=framework, ref_id=ref_id, title="Legal requirements are understood", **kw)
    session.add(control)
    session.flush()
    return control


def _check(session: DBSession, control: Control) -> Check:
    probe = Probe(name=f"probe-{uuid.uuid4().hex[:8]}", kind="http")
    check = Check(probe=probe, control=control, name="tls")
    session.add(check)
    session.flush()
    return check


def _evidence(session: DBSession, **kw: Any) -> Evidence:
    values: dict[str, Any] = {
        "name": "Model card",
        "bucket": "evidence",
        "object_key": f"evidence/{uuid.uuid4()}",
        "size_bytes": 10,
        "sha256": "a" * 64,
        **kw,
    }
    evidence = Evidence(**values)
    session.add(evidence)
    session.flush()
    return evidence


def _refused(session: DBSession, statement: str, params: dict[str, Any] | None = None) -> Exception:
    """Run statement in a savepoint; return the database's refusal (the test goes on)."""
    with pytest.raises((IntegrityError, DataError)) as refused, session.begin_nested():
        session.execute(text(statement), params or {})
    return refused.value


# ON DELETE RESTRICT reports restrict_violation (23001); NO ACTION would report foreign_key_violation.
FK_REFUSED = {"23001", "23503"}


def _sqlstate(exc: Exception) -> str:
    return str(getattr(getattr(exc, "orig", None), "sqlstate", ""))


# --- UUID keys, indexed foreign keys, delete rules ----------------------------------------------------


def test_every_primary_key_is_a_database_generated_uuid() -> None:
    for table in Base.metadata.tables.values():
        id_column = table.c.id
        assert id_column.primary_key, table.name
        assert str(id_column.type) == "UUID", table.name
        assert "gen_random_uuid" in str(id_column.server_default.arg), table.name  # type: ignore[union-attr]


def test_every_foreign_key_is_indexed(db_session: DBSession) -> None:
    """Each FK column list is the leading columns of some index on its table (in the database)."""
    rows = db_session.execute(
        text("""
        SELECT c.conrelid::regclass::text,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)
          FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace AND NOT t.relispartition
           AND t.relname NOT LIKE 'procrastinate\\_%'
    """)
    ).all()
    indexes = db_session.execute(
        text("""
        SELECT i.indrelid::regclass::text,
               ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
          FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
         WHERE t.relnamespace = 'public'::regnamespace AND NOT t.relispartition
    """)
    ).all()
    assert len(rows) == sum(len(t.foreign_key_constraints) for t in Base.metadata.tables.values())
    unindexed = [
        (table, columns)
        for table, columns in rows
        if not any(t == table and list(cols[: len(columns)]) == list(columns) for t, cols in indexes)
    ]
    assert unindexed == []


def test_foreign_keys_restrict_deletes_except_association_rows() -> None:
    rules = {
        (fk.parent.table.name, fk.parent.name): fk.ondelete
        for table in Base.metadata.tables.values()
        for fk in table.foreign_keys
    }
    assert {key for key, rule in rules.items() if rule == "CASCADE"} == CASCADE_FOREIGN_KEYS
    assert {rule for key, rule in rules.items() if key not in CASCADE_FOREIGN_KEYS} == {"RESTRICT"}


def test_deleting_a_referenced_row_is_refused(db_session: DBSession) -> None:
    user = _user(db_session)
    framework = _framework(db_session)
    control = _control(db_session, framework)
    check = _check(db_session, control)
    evidence = _evidence(db_session, control=control)
    alert = Alert(rule="check_failed", title="TLS check failing")
    task = Task(title="Renew the report", evidence=evidence, alert=alert, assignee=user)
    db_session.add_all([alert, task])
    db_session.flush()
    refusals = [
        ("roles", user.role_id),  # users -> roles
        ("frameworks", framework.id),  # frameworks -> controls
        ("controls", control.id),  # controls -> checks, evidence
        ("probes", check.probe_id),  # probes -> checks
        ("evidence", evidence.id),  # tasks -> evidence
        ("alerts", alert.id),  # alerts -> tasks
        ("users", user.id),  # users -> tasks
    ]
    for table, row_id in refusals:
        refused = _refused(db_session, f"DELETE FROM {table} WHERE id = :id", {"id": row_id})  # noqa: S608
        assert _sqlstate(refused) in FK_REFUSED, table

    # The same through the ORM: nothing is silently nulled or cascaded.
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.delete(framework)
        db_session.flush()


def test_checks_with_results_and_users_with_audit_logs_cannot_be_deleted(db_session: DBSession) -> None:
    user = _user(db_session)
    check = _check(db_session, _control(db_session, _framework(db_session)))
    db_session.add_all(
        [
            Result(check=check, outcome=ResultOutcome.COMPLIANT),
            AuditLog(actor=user, actor_name=user.email, action="user.login", outcome=AuditOutcome.SUCCESS),
        ]
    )
    db_session.flush()
    assert (
        _sqlstate(_refused(db_session, "DELETE FROM checks WHERE id = :id", {"id": check.id})) in FK_REFUSED
    )
    # Tasks referring to nothing block nothing; audit rows keep their actor.
    db_session.execute(text("DELETE FROM tasks WHERE assignee_id = :id"), {"id": user.id})
    assert _sqlstate(_refused(db_session, "DELETE FROM users WHERE id = :id", {"id": user.id})) in FK_REFUSED


def test_association_rows_follow_their_evidence(db_session: DBSession) -> None:
    control = _control(db_session, _framework(db_session))
    evidence = _evidence(db_session)
    db_session.add(EvidenceLink(evidence=evidence, control=control))
    db_session.flush()
    # GDPR erasure of an evidence item takes its links with it.
    db_session.execute(text("DELETE FROM evidence WHERE id = :id"), {"id": evidence.id})
    remaining = db_session.execute(
        text("SELECT count(*) FROM evidence_links WHERE evidence_id = :id"), {"id": evidence.id}
    ).scalar_one()
    assert remaining == 0


# --- Unique and check constraints --------------------------------------------------------------------


def test_a_duplicate_framework_version_is_refused(db_session: DBSession) -> None:
    framework = _framework(db_session, title="NIST AI RMF", version="1.0")
    with pytest.raises(IntegrityError) as refused, db_session.begin_nested():
        db_session.add(Framework(title="NIST AI RMF", version="1.0"))
        db_session.flush()
    assert "uq_frameworks_title_version" in str(refused.value)
    _framework(db_session, title=framework.title, version="1.1")  # another version is fine


def test_a_control_ref_id_is_unique_within_its_framework(db_session: DBSession) -> None:
    framework, other = _framework(db_session), _framework(db_session)
    _control(db_session, framework, "AC-2(1)")
    _control(db_session, other, "AC-2(1)")
    with pytest.raises(IntegrityError), db_session.begin_nested():
        _control(db_session, framework, "AC-2(1)")


def test_email_is_unique_among_live_users_case_insensitively(db_session: DBSession) -> None:
    user = _user(db_session)
    with pytest.raises(IntegrityError), db_session.begin_nested():
        _user(db_session).email = user.email.upper()
        db_session.flush()
    user.deleted_at = datetime.now(UTC)
    db_session.flush()
    again = User(email=user.email, name="Returning", role=_role(db_session), password_hash="x")
    db_session.add(again)
    db_session.flush()


def test_a_casbin_rule_is_stored_once(db_session: DBSession) -> None:
    db_session.add(Permission(ptype="p", v0="auditor", v1="evidence", v2="read"))
    db_session.flush()
    # NULLs compare equal (NULLS NOT DISTINCT), so the same short rule is refused too.
    refused = _refused(
        db_session, "INSERT INTO permissions (ptype, v0, v1, v2) VALUES ('p', 'auditor', 'evidence', 'read')"
    )
    assert _sqlstate(refused) == "23505"
    assert str(Permission(ptype="g", v0="ada", v1="admin")) == "g, ada, admin"


def test_an_evidence_link_has_exactly_one_target_once(db_session: DBSession) -> None:
    control = _control(db_session, _framework(db_session))
    check = _check(db_session, control)
    evidence = _evidence(db_session)
    db_session.add(EvidenceLink(evidence=evidence, control=control))
    db_session.flush()
    insert = "INSERT INTO evidence_links (evidence_id, control_id, check_id) VALUES (:e, :c, :k)"
    both = _refused(db_session, insert, {"e": evidence.id, "c": control.id, "k": check.id})
    assert "ck_evidence_links_exactly_one_target" in str(both)
    neither = _refused(db_session, insert, {"e": evidence.id, "c": None, "k": None})
    assert "ck_evidence_links_exactly_one_target" in str(neither)
    twice = _refused(db_session, insert, {"e": evidence.id, "c": control.id, "k": None})
    assert _sqlstate(twice) == "23505"


def test_a_score_names_exactly_the_subject_of_its_scope(db_session: DBSession) -> None:
    framework = _framework(db_session)
    control = _control(db_session, framework)
    db_session.add(Score(scope=ScoreScope.CONTROL, control=control, value=Decimal("87.5")))
    db_session.flush()
    wrong = _refused(
        db_session,
        "INSERT INTO scores (scope, framework_id, value) VALUES ('control', :f, 50)",
        {"f": framework.id},
    )
    assert "ck_scores_scope_matches_subject" in str(wrong)
    assert "ck_scores_value_percentage" in str(
        _refused(
            db_session,
            "INSERT INTO scores (scope, framework_id, value) VALUES ('framework', :f, 101)",
            {"f": framework.id},
        )
    )


def test_a_mapping_pair_is_unique_and_frameworks_meet_through_it(db_session: DBSession) -> None:
    rmf, iso = _framework(db_session, title="NIST AI RMF"), _framework(db_session, title="ISO/IEC 42001")
    govern, clause = _control(db_session, rmf, "GOVERN 1.1"), _control(db_session, iso, "5.2")
    db_session.add(
        Mapping(source_control=govern, target_control=clause, relationship_type=MappingRelationship.SUBSET_OF)
    )
    db_session.flush()
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.add(Mapping(source_control=govern, target_control=clause))
        db_session.flush()
    source, target = Control.__table__.alias("source"), Control.__table__.alias("target")
    pairs = db_session.execute(
        select(source.c.framework_id, target.c.framework_id)
        .select_from(Mapping.__table__)
        .join(source, source.c.id == Mapping.source_control_id)
        .join(target, target.c.id == Mapping.target_control_id)
        .where(Mapping.source_control_id == govern.id)
    ).all()
    assert [tuple(p) for p in pairs] == [(rmf.id, iso.id)]


# --- ENUM types --------------------------------------------------------------------------------------


def test_an_enum_value_outside_the_set_is_refused(db_session: DBSession) -> None:
    framework = _framework(db_session)
    control = _control(db_session, framework)
    check = _check(db_session, control)
    cases = [
        ("UPDATE frameworks SET status = 'published' WHERE id = :id", framework.id),
        ("UPDATE checks SET severity = 'catastrophic' WHERE id = :id", check.id),
        ("INSERT INTO results (check_id, outcome) VALUES (:id, 'mostly_compliant')", check.id),
        ("INSERT INTO audit_logs (actor_name, action, outcome) VALUES (:id, 'x', 'maybe')", str(check.id)),
    ]
    for statement, row_id in cases:
        assert _sqlstate(_refused(db_session, statement, {"id": row_id})) == "22P02"  # invalid enum input
    # The ORM refuses before the database does.
    with pytest.raises(StatementError, match="not among the defined enum values"), db_session.begin_nested():
        db_session.add(Framework(title="T", version="9", status="published"))
        db_session.flush()


def test_result_and_audit_outcomes_are_the_seeds_sets() -> None:
    assert [o.value for o in ResultOutcome] == [
        "compliant",
        "non_compliant",
        "partial",
        "error",
        "not_applicable",
    ]
    assert [o.value for o in AuditOutcome] == ["success", "denied", "error"]


# --- Soft delete -------------------------------------------------------------------------------------


def test_soft_delete_columns_on_the_critical_records() -> None:
    assert {t.name for t in Base.metadata.tables.values() if "deleted_at" in t.c} == SOFT_DELETED


def test_a_soft_deleted_row_is_absent_from_default_queries(db_session: DBSession) -> None:
    framework = _framework(db_session)
    kept = _control(db_session, framework, "A.1")
    gone = _control(db_session, framework, "A.2")
    gone.deleted_at = datetime.now(UTC)
    db_session.flush()
    db_session.expunge_all()

    ids = set(db_session.scalars(select(Control.id).where(Control.framework_id == framework.id)))
    assert ids == {kept.id}
    # Relationship loads and joins are filtered too.
    loaded = db_session.scalars(select(Framework).where(Framework.id == framework.id)).one()
    assert [c.id for c in loaded.controls] == [kept.id]
    joined = db_session.scalars(
        select(Framework.id).join(Framework.controls).where(Control.id == gone.id)
    ).all()
    assert joined == []
    # Counting through the ORM agrees.
    count = db_session.scalar(
        select(func.count()).select_from(Control).where(Control.framework_id == framework.id)
    )
    assert count == 1
    # Asked for explicitly, it is still there.
    everything = db_session.scalars(
        select(Control).where(Control.framework_id == framework.id).execution_options(include_deleted=True)
    ).all()
    assert {c.id for c in everything} == {kept.id, gone.id}


def test_soft_deleting_a_framework_hides_it_and_keeps_its_controls_rows(db_session: DBSession) -> None:
    framework = _framework(db_session)
    control = _control(db_session, framework)
    framework.deleted_at = datetime.now(UTC)
    db_session.flush()
    db_session.expunge_all()
    assert db_session.scalars(select(Framework).where(Framework.id == framework.id)).first() is None
    assert (
        db_session.execute(
            text("SELECT count(*) FROM controls WHERE id = :id"), {"id": control.id}
        ).scalar_one()
        == 1
    )


# --- Timestamps --------------------------------------------------------------------------------------


def test_created_at_and_updated_at_are_kept_by_the_database(db_session: DBSession) -> None:
    framework = _framework(db_session)
    created, updated = framework.created_at, framework.updated_at
    assert created is not None and updated is not None

    framework.status = FrameworkStatus.ACTIVE
    db_session.flush()
    assert framework.updated_at > updated  # re-read after the trigger moved it
    assert framework.created_at == created

    # Also for plain SQL that does not mention updated_at, and on a partitioned table.
    before = framework.updated_at
    db_session.execute(text("UPDATE frameworks SET region = 'EU' WHERE id = :id"), {"id": framework.id})
    db_session.refresh(framework)
    assert framework.updated_at > before
    # Even a client that tries to set it gets the database's clock.
    db_session.execute(
        text("UPDATE frameworks SET updated_at = '2000-01-01' WHERE id = :id"), {"id": framework.id}
    )
    db_session.refresh(framework)
    assert framework.updated_at.year > 2000


def test_updated_at_moves_on_a_partitioned_table(db_session: DBSession) -> None:
    check = _check(db_session, _control(db_session, _framework(db_session)))
    result = Result(check=check, outcome=ResultOutcome.ERROR)
    db_session.add(result)
    db_session.flush()
    before = result.updated_at
    result.message = "timeout"
    db_session.flush()
    assert result.updated_at > before


# --- Partitioning ------------------------------------------------------------------------------------


def test_an_insert_far_in_the_future_lands_in_a_partition(admin_db_session: DBSession) -> None:
    db_session = admin_db_session  # creating partitions is DDL: the admin's
    far = datetime(2099, 7, 14, 12, 0, tzinfo=UTC)
    check = _check(db_session, _control(db_session, _framework(db_session)))
    entry = AuditLog(actor_name="system", action="probe.run", outcome=AuditOutcome.SUCCESS, created_at=far)
    result = Result(check=check, outcome=ResultOutcome.PARTIAL, created_at=far)
    db_session.add_all([entry, result])
    db_session.flush()

    def home(table: str, row_id: uuid.UUID) -> str:
        return str(
            db_session.execute(
                text(f"SELECT tableoid::regclass::text FROM {table} WHERE id = :id"),  # noqa: S608
                {"id": row_id},
            ).scalar_one()
        )

    # No partition for 2099 yet: the DEFAULT partition takes it, the insert does not fail.
    assert home("audit_logs", entry.id) == "audit_logs_default"
    assert home("results", result.id) == "results_default"

    # Creating that month's partitions moves the stranded rows into them.
    created = ensure_partitions(db_session, months_ahead=1, start=date(2099, 7, 1))
    assert created == ["audit_logs_p2099_07", "audit_logs_p2099_08", "results_p2099_07", "results_p2099_08"]
    assert home("audit_logs", entry.id) == "audit_logs_p2099_07"
    assert home("results", result.id) == "results_p2099_07"
    assert ensure_partitions(db_session, months_ahead=1, start=date(2099, 7, 1)) == []  # idempotent

    # New rows of that month go straight to it; the moved partitions carry the parent's indexes.
    later = AuditLog(
        actor_name="system",
        action="probe.run",
        outcome=AuditOutcome.DENIED,
        created_at=datetime(2099, 8, 1, tzinfo=UTC),
    )
    db_session.add(later)
    db_session.flush()
    assert home("audit_logs", later.id) == "audit_logs_p2099_08"
    indexes = db_session.execute(
        text("SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_logs_p2099_07'")
    ).scalar_one()
    assert indexes == len(AuditLog.__table__.indexes) + 1  # + the primary key


def test_partitioned_tables_are_range_partitioned_by_created_at(db_session: DBSession) -> None:
    for table in PARTITIONED_TABLES:
        key = db_session.execute(
            text("SELECT pg_get_partkeydef(CAST(:t AS regclass))"), {"t": table}
        ).scalar_one()
        assert key == "RANGE (created_at)"
        assert f"{table}_default" in list_partitions(db_session, table)
        pk = inspect(Base.metadata.tables[table]).primary_key
        assert [c.name for c in pk.columns] == ["id", "created_at"]


# --- Indexes -----------------------------------------------------------------------------------------


def test_partial_composite_and_full_text_indexes_exist(db_session: DBSession) -> None:
    definitions = dict(
        db_session.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
        ).all()
    )
    partial = [
        "ix_frameworks_active",
        "ix_controls_live_framework_id_sort_order",
        "ix_evidence_live_status_created_at",
        "ix_tasks_open_assignee_id_due_date",
        "ix_alerts_open_severity_created_at",
        "ix_probes_enabled_next_run_at",
        "uq_users_lower_email_live",
    ]
    for name in partial:
        assert " WHERE " in definitions[name], name
    assert "(framework_id, ref_id)" in definitions["uq_controls_framework_id_ref_id"]
    for name in ("ix_frameworks_search", "ix_controls_search", "ix_evidence_search"):
        assert "USING gin (search)" in definitions[name], name


def test_full_text_search_finds_frameworks_controls_and_evidence(db_session: DBSession) -> None:
    marker = "zyxquorum" + uuid.uuid4().hex[:6]
    framework = _framework(db_session, description=f"Managing {marker} risks of generative systems")
    control = _control(
        db_session, framework, "MAP 1.1", text=f"Context about {marker} deployments is documented"
    )
    evidence = _evidence(db_session, name=f"{marker} red-team report")
    query = func.websearch_to_tsquery("english", marker)
    assert db_session.scalars(select(Framework.id).where(Framework.search.bool_op("@@")(query))).all() == [
        framework.id
    ]
    assert db_session.scalars(select(Control.id).where(Control.search.bool_op("@@")(query))).all() == [
        control.id
    ]
    assert db_session.scalars(select(Evidence.id).where(Evidence.search.bool_op("@@")(query))).all() == [
        evidence.id
    ]
