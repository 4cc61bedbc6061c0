"""Schema changes are audited by the event triggers of migration 0011; unexpected ones alert once
(deduplicated per object), expected ones (partition maintenance, migrations) do not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session, scoped_session

import config
from governance.models.audit import Alert, AlertEvent, AuditLog
from governance.models.enums import Severity
from governance.services import audit_chain
from governance.services.partitions import ensure_partitions

DBSession = scoped_session[Session]


@pytest.fixture
def conn(app: Flask, test_settings: config.Settings) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection (on the migrated database) whose transaction is rolled back."""
    admin_url = test_settings.admin_database_url  # the app's own URL is the service login
    connection = psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://", 1))
    try:
        yield connection
    finally:
        connection.rollback()
        connection.close()


def _entries(conn: psycopg.Connection[Any], identity: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT actor_name, object_type, object_id, outcome::text, details FROM audit_logs "
        "WHERE action = 'schema.change' AND object_id = %s ORDER BY seq", (identity,)).fetchall()


def _alerts(conn: psycopg.Connection[Any], identity: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT rule, severity::text, status::text, title, source_type, source_id, occurrences, "
        "(SELECT count(*) FROM alert_events e WHERE e.alert_id = a.id) FROM alerts a WHERE dedup_key = %s",
        ("schema.change:" + identity,)).fetchall()


def test_ddl_outside_the_app_is_audited_and_alerts_once_per_object(conn: psycopg.Connection[Any]) -> None:
    name = "stray_" + uuid.uuid4().hex[:8]
    identity = f"public.{name}"
    conn.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, note text)")

    [(actor, object_type, object_id, outcome, details)] = _entries(conn, identity)
    user = conn.execute("SELECT session_user::text").fetchone()
    assert user is not None
    assert (actor, object_type, object_id, outcome) == (f"db:{user[0]}", "schema", identity, "success")
    assert details["command_tag"] == "CREATE TABLE" and details["object_type"] == "table"
    assert details["object_identity"] == identity and details["expected"] is False
    # The sequence and the primary key's index it made are listed with it.
    listed = {o["object_identity"] for o in details["objects"]}
    assert {identity, f"public.{name}_pkey", f"public.{name}_id_seq"} <= listed

    [alert] = _alerts(conn, identity)
    assert alert[:3] == ("schema.change", Severity.HIGH.value, "open")
    assert "CREATE TABLE" in alert[3] and identity in alert[3]
    # No "raised" event: the alerts sweep (h2's process_unhandled) gives it its task and notices.
    assert alert[4:] == ("schema", identity, 1, 0)

    conn.execute(f"ALTER TABLE {name} ADD COLUMN extra int")
    assert [e[4]["command_tag"] for e in _entries(conn, identity)] == ["CREATE TABLE", "ALTER TABLE"]
    [again] = _alerts(conn, identity)
    assert again[6] == 2  # the same object: occurrences, not a second alert
    assert conn.execute("SELECT count(*) FROM alerts WHERE source_id = %s", (identity,)).fetchone() == (1,)

    conn.execute(f"DROP TABLE {name}")
    dropped = _entries(conn, identity)[-1][4]
    assert dropped["command_tag"] == "DROP TABLE" and dropped["expected"] is False
    assert _alerts(conn, identity)[0][6] == 3


def test_the_audit_entries_of_ddl_are_on_the_chain(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE INDEX stray_index ON frameworks (title)")
    row = conn.execute("SELECT seq FROM audit_logs WHERE object_id = 'public.stray_index'").fetchone()
    assert row is not None
    result = audit_chain.verify_chain(conn)
    assert result.ok and result.last_seq >= row[0]


def test_tampering_with_the_triggers_is_itself_audited(conn: psycopg.Connection[Any]) -> None:
    # (the session's `flask db roles` run left an expected ALTER TABLE audit_logs entry of its own)
    earlier = len(_entries(conn, "public.audit_logs"))
    conn.execute("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_refuse_change")
    [entry] = _entries(conn, "public.audit_logs")[earlier:]
    assert entry[4]["command_tag"] == "ALTER TABLE" and entry[4]["expected"] is False
    assert len(_alerts(conn, "public.audit_logs")) == 1


def test_temporary_objects_are_not_audited(conn: psycopg.Connection[Any]) -> None:
    before = conn.execute("SELECT count(*) FROM audit_logs").fetchone()
    conn.execute("CREATE TEMP TABLE scratch (a int)")
    conn.execute("DROP TABLE scratch")
    assert conn.execute("SELECT count(*) FROM audit_logs").fetchone() == before


def test_expected_ddl_is_audited_without_an_alert(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET LOCAL governance.expected_ddl = 'migration'")
    conn.execute("CREATE TABLE planned_table (a int)")
    [entry] = _entries(conn, "public.planned_table")
    assert entry[4]["expected"] is True and entry[4]["expected_reason"] == "migration"
    assert _alerts(conn, "public.planned_table") == []


def test_partition_maintenance_is_audited_without_an_alert(admin_db_session: DBSession) -> None:
    db_session = admin_db_session  # DDL: the admin's
    created = ensure_partitions(db_session(), months_ahead=0, start=date(2296, 8, 1))
    assert created == ["audit_logs_p2296_08", "results_p2296_08"]
    for name in created:
        entries = db_session.scalars(select(AuditLog).where(AuditLog.action == "schema.change",
                                                            AuditLog.object_id == f"public.{name}")).all()
        assert entries, name
        assert all(e.details["expected"] is True and e.details["expected_reason"] == "partitions" for e in entries)
        assert db_session.scalars(select(Alert).where(Alert.source_id == f"public.{name}")).all() == []
    # The setting is back to what it was: later DDL in this transaction is unexpected again.
    assert db_session.execute(text("SELECT current_setting('governance.expected_ddl', true)")).scalar_one() == ""
    db_session.execute(text("CREATE TABLE after_partitions (a int)"))
    [alert] = db_session.scalars(select(Alert).where(Alert.source_id == "public.after_partitions")).all()
    assert alert.rule == "schema.change"
    assert db_session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert.id)).all() == []


def test_app_role_grants_are_audited_as_expected(admin_db_session: DBSession) -> None:
    db_session = admin_db_session  # CREATE ROLE and GRANT: the admin's
    role = "grants_" + uuid.uuid4().hex[:8]
    db_session.execute(text(f"CREATE ROLE {role} NOLOGIN"))
    audit_chain.grant_app_role(db_session(), role)
    entries = db_session.scalars(select(AuditLog).where(AuditLog.action == "schema.change")
                                 .order_by(AuditLog.seq.desc()).limit(5)).all()
    assert entries and all(e.details["command_tag"] in ("GRANT", "REVOKE") and e.details["expected"]
                           for e in entries)
    assert db_session.scalars(select(Alert).where(Alert.title.contains("GRANT"))).all() == []
    db_session.execute(text(f"DROP OWNED BY {role}"))
    db_session.execute(text(f"DROP ROLE {role}"))
