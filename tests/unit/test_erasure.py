"""GDPR erasure (governance.services.erasure): the workflow's refusals, an execution that leaves the
person's e-mail and name nowhere in the database while the audit chain still verifies, the receipt,
the ledger outside the database, and its re-application to a database restored from before."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import flask_migrate
import psycopg
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from extensions import db
from governance import context
from governance.models.audit import AuditLog
from governance.models.enums import ErasureStatus, Severity
from governance.models.identity import User
from governance.models.lifecycle import ErasureRequest, PersonKey
from governance.services import alerts, audit, audit_chain, erasure, identity, notifications, personal_data, sessions
from governance.storage import Storage
from tests.conftest import TEST_PASSWORD

NAME = "Quentin Marblewhisk"


@pytest.fixture
def ledger_settings(app: Any, s3_server: Any) -> Iterator[Any]:
    """The session app's settings with a backup bucket of this test's own (the ledger's home)."""
    original = app.config["SETTINGS"]
    settings = dataclasses.replace(original, backup_bucket="erasure-" + uuid.uuid4().hex[:12])
    app.config["SETTINGS"] = settings
    try:
        yield settings
    finally:
        app.config["SETTINGS"] = original
        store = Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket=settings.backup_bucket)
        if store.client.bucket_exists(settings.backup_bucket):
            store.purge_bucket()


def _user(db_session: Any, role: str, email: str | None = None, name: str | None = None) -> User:
    user = identity.create_user(db_session(), email=email or f"{role}-{uuid.uuid4().hex[:8]}@example.test",
                                name=name or role.title(), role_name=role, password=TEST_PASSWORD)
    db_session.flush()
    return user


@pytest.fixture
def staff(db_session: Any) -> dict[str, User]:
    return {"officer": _user(db_session, "compliance_officer"), "admin": _user(db_session, "admin"),
            "admin2": _user(db_session, "admin")}


def _acting(user: User, ip: str = "203.0.113.50", agent: str = "Firefox/Quentin") -> Any:
    return context.acting_as(context.ActionContext(actor_id=user.id, actor_name=user.email, ip=ip, user_agent=agent))


def _refused(field: str, call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(erasure.ErasureError) as caught:
        call(*args, **kwargs)
    assert caught.value.field == field, caught.value.message
    return caught.value.message


# --- refusals -------------------------------------------------------------------------------------------------


def test_requests_are_refused_for_unknown_self_open_last_admin_or_no_reason(db_session: Any, staff: Any) -> None:
    subject = _user(db_session, "engineer")
    officer, admin = staff["officer"], staff["admin"]
    assert "No user" in _refused("email", erasure.request, db_session, uuid.uuid4(), "asked", officer.id)
    assert "own erasure" in _refused("email", erasure.request, db_session, officer.id, "asked", officer.id)
    assert "why" in _refused("reason", erasure.request, db_session, subject.id, "  ", officer.id)
    first = erasure.request(db_session, subject.id, "Asked by letter", officer.id)
    assert first.status == ErasureStatus.REQUESTED
    assert "already open" in _refused("email", erasure.request, db_session, subject.id, "again", admin.id)
    # The only active admin cannot be erased (the installation would have nobody to manage it).
    staff["admin2"].is_active = False
    db_session.flush()
    assert "last active admin" in _refused("email", erasure.request, db_session, admin.id, "asked", officer.id)


def test_decisions_need_another_admin_and_executions_an_approval(db_session: Any, staff: Any,
                                                                 ledger_settings: Any) -> None:
    subject = _user(db_session, "engineer")
    officer, admin, admin2 = staff["officer"], staff["admin"], staff["admin2"]
    found = erasure.request(db_session, subject.id, "Asked by e-mail", admin.id)
    assert "another administrator" in _refused("decision", erasure.approve, db_session, found.id, admin.id)
    assert "Only an administrator" in _refused("decision", erasure.approve, db_session, found.id, officer.id)
    assert "Only an administrator" in _refused("decision", erasure.approve, db_session, found.id, subject.id)
    assert "approved" in _refused("execute", erasure.execute, db_session, found.id, admin2.id,
                                  settings=ledger_settings)
    assert "why" in _refused("comment", erasure.reject, db_session, found.id, admin2.id, "")
    erasure.approve(db_session, found.id, admin2.id, "Checked the identity")
    assert "no longer be decided" in _refused("decision", erasure.reject, db_session, found.id, admin2.id, "no")
    assert "Only an administrator" in _refused("execute", erasure.execute, db_session, found.id, officer.id,
                                               settings=ledger_settings)
    erasure.execute(db_session, found.id, admin.id, settings=ledger_settings)
    assert "already executed" in _refused("execute", erasure.execute, db_session, found.id, admin.id,
                                          settings=ledger_settings)
    assert "no such" in _refused("request", erasure.approve, db_session, uuid.uuid4(), admin2.id).lower()


def test_a_rejected_request_keeps_the_person_and_frees_the_next_request(db_session: Any, staff: Any) -> None:
    subject = _user(db_session, "auditor")
    found = erasure.request(db_session, subject.id, "Asked", staff["officer"].id)
    erasure.reject(db_session, found.id, staff["admin"].id, "Identity not confirmed")
    assert found.status == ErasureStatus.REJECTED and found.decision_comment == "Identity not confirmed"
    again = erasure.request(db_session, subject.id, "Asked again with ID", staff["officer"].id)
    assert again.status == ErasureStatus.REQUESTED and db_session.get(User, subject.id).email.startswith("auditor-")


# --- execution, end to end (committed: the chain is verified from a connection of its own) ------------------------


def _text_columns(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT quote_ident(c.relname), quote_ident(a.attname) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND a.attnum > 0 AND NOT a.attisdropped AND t.typname IN ('text', 'varchar', 'bpchar', 'json', 'jsonb')"
    ).fetchall()


def _everywhere(database_url: str, needle: str) -> list[str]:
    """Every table.column (audit_logs included) whose text holds `needle`, case-insensitively."""
    found = []
    with psycopg.connect(audit_chain.libpq_url(database_url)) as conn:
        for table, column in _text_columns(conn):
            hits = conn.execute(f"SELECT count(*) FROM {table} WHERE {column}::text ILIKE %s",  # noqa: S608
                                (f"%{needle}%",)).fetchone()
            if hits and hits[0]:
                found.append(f"{table}.{column}")
    return found


def _leave_traces(subject: User, other: User) -> None:
    """What a person leaves behind by using the portal: sessions, sign-in attempts, audited actions,
    a denial-burst alert, notifications to them and about them."""
    session = db.session()
    with _acting(subject):
        sessions.start(session, subject, sessions.Lifetimes(), ip="203.0.113.50", user_agent="Firefox/Quentin")
        audit.record(session, "framework.update", object_type="framework", object_id="f-1", details={"x": 1})
    identity.attempt_login(session, subject.email, "wrong password", ip="203.0.113.50")
    alerts.raise_alert(session, rule=alerts.DENIAL_BURST, subject_type="user", subject_id=subject.id,
                       title="5 refused requests", severity=Severity.HIGH,
                       details={"actor_id": str(subject.id), "actor_name": subject.email})
    notifications.notify(session, subject.id, kind="test", title="For you", body="Hello")
    notifications.notify(session, other.id, kind="test", title=f"About {subject.email}", body=f"Ask {subject.email}")


def test_execution_erases_the_person_everywhere_and_the_chain_still_verifies(
        app: Any, clean_database: Any, ledger_settings: Any, test_settings: Any) -> None:
    session = db.session()
    email = f"quentin.{uuid.uuid4().hex[:6]}@example.test"
    subject = identity.create_user(session, email=email, name=NAME, role_name="engineer", password=TEST_PASSWORD)
    officer = identity.create_user(session, email="officer-e2e@example.test", name="Olga",
                                   role_name="compliance_officer", password=TEST_PASSWORD)
    admin = identity.create_user(session, email="admin-e2e@example.test", name="Ada", role_name="admin",
                                 password=TEST_PASSWORD)
    _leave_traces(subject, officer)
    session.commit()
    with _acting(officer):
        found = erasure.request(session, subject.id, f"{NAME} asked on 2026-11-02", officer.id)
    session.commit()
    with _acting(admin):
        erasure.approve(session, found.id, admin.id, "ok")
        session.commit()
        erasure.execute(session, found.id, admin.id, settings=ledger_settings)
    session.commit()

    url = test_settings.admin_database_url  # the tables' owner reads every table
    assert _everywhere(url, email) == []
    assert _everywhere(url, NAME) == []
    assert _everywhere(url, "Quentin") == []  # the user agent was sealed too
    result = audit_chain.verify_database(url)
    assert result.ok, result.summary()
    runner = app.test_cli_runner()
    verified = runner.invoke(args=["audit", "verify", "--no-anchors"])
    assert verified.exit_code == 0, verified.output
    assert "audit chain OK" in verified.output

    done = session.get(ErasureRequest, found.id)
    assert done is not None and done.status == ErasureStatus.EXECUTED and done.receipt is not None
    receipt = done.receipt
    tables = {(t["table"], t.get("column")): t["rows"] for t in receipt["tables"]}
    for table in ("users", "recovery_codes", "user_sessions", "login_attempts", "notifications", "person_keys",
                  "audit_logs"):
        assert any(name == table for name, _column in tables), table
    assert tables[("users", None)] == 1 and tables[("user_sessions", None)] == 1
    assert tables[("login_attempts", None)] == 1 and tables[("notifications", None)] == 1
    assert tables[("person_keys", None)] == 1
    assert tables[("notifications", "title")] == 1 and tables[("alerts", "details")] == 1
    left = {n["what"]: n for n in receipt["not_erased"]}
    assert left["audit_logs"]["rows"] == 0  # everything here was written sealed
    assert left["backups"]["until"] > receipt["executed_at"]
    assert done.receipt_sha256 == hashlib.sha256(erasure.receipt_bytes(receipt)).hexdigest()

    erased = session.scalars(select(User).where(User.id == subject.id).execution_options(include_deleted=True)).one()
    assert erased.email == erasure.erased_email(subject.id) and erased.name == erasure.ERASED_NAME
    assert not erased.is_active and erased.deleted_at is not None and erased.mfa_secret is None
    assert identity.attempt_login(session, email, TEST_PASSWORD).user is None
    key = session.scalars(select(PersonKey).where(PersonKey.user_id == subject.id)).one()
    assert key.key is None and key.destroyed_at is not None
    session.rollback()

    # The audit log reads "erased person" for them, and still names everyone else.
    theirs = session.scalars(select(AuditLog).where(AuditLog.actor_id == subject.id)).all()
    assert theirs and {s.actor_name for s in personal_data.reveal(session, theirs)} == {personal_data.ERASED}
    asked = session.scalars(select(AuditLog).where(AuditLog.action == "erasure.request")).one()
    [shown] = personal_data.reveal(session, [asked])
    assert shown.actor_name == "officer-e2e@example.test" and shown.details["reason"] == personal_data.ERASED

    # The ledger outside the database names the request, the person's id and when.
    store = erasure.ledger_store(ledger_settings)
    ledger = json.loads(b"".join(store.open(f"erasures/{found.id}.json")))
    assert ledger["subject_id"] == str(subject.id) and ledger["request_id"] == str(found.id)
    assert ledger["executed_at"] == receipt["executed_at"]
    session.rollback()


# --- a restore from before the erasure -------------------------------------------------------------------------


def test_reapply_after_restore_destroys_a_key_an_older_backup_brought_back(
        app_for: Any, scratch_database_url: str, db_session: Any, staff: Any, ledger_settings: Any) -> None:
    # The "old backup": a second database holding the person with their key, as before the erasure.
    with app_for(scratch_database_url).app_context():
        flask_migrate.upgrade()
    # Its own engine: db.session is the test's transaction on the live database.
    engine = create_engine(scratch_database_url, poolclass=NullPool)
    with Session(engine) as old:
        person = identity.create_user(old, email="restored.person@example.test", name="Resa Stored",
                                      role_name="engineer", password=TEST_PASSWORD)
        with _acting(person):
            audit.record(old, "task.update", object_type="task")
        person_id = person.id
        old.commit()
    engine.dispose()

    # The live database: the same person (same id) erased, which writes the ledger.
    db_session.execute(text("INSERT INTO users (id, email, name, password_hash, role_id) SELECT :id, :email, :name, "
                            "'x', id FROM roles WHERE name = 'engineer'"),
                       {"id": person_id, "email": "restored.person@example.test", "name": "Resa Stored"})
    found = erasure.request(db_session, person_id, "Asked", staff["officer"].id)
    erasure.approve(db_session, found.id, staff["admin"].id)
    erasure.execute(db_session, found.id, staff["admin2"].id, settings=ledger_settings)

    assert erasure.reapply_after_restore(ledger_settings, scratch_database_url) == 1
    with psycopg.connect(audit_chain.libpq_url(scratch_database_url)) as conn:
        key = conn.execute("SELECT key, destroyed_at FROM person_keys WHERE user_id = %s", (person_id,)).fetchone()
        user = conn.execute("SELECT email, name, is_active FROM users WHERE id = %s", (person_id,)).fetchone()
        reapplied = conn.execute("SELECT count(*) FROM audit_logs WHERE action = 'erasure.reapply'").fetchone()
    assert key is not None and key[0] is None and key[1] is not None
    assert user == (erasure.erased_email(person_id), erasure.ERASED_NAME, False)
    assert reapplied == (1,)
    assert _everywhere(scratch_database_url, "restored.person@example.test") == []
    assert audit_chain.verify_database(scratch_database_url).ok
    # Idempotent: a second run finds nothing left to do.
    assert erasure.reapply_after_restore(ledger_settings, scratch_database_url) == 0
