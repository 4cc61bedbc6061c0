"""Least-privilege roles (governance.services.db_roles, docs/database-security.md): the app's session
is the service login, which cannot change the schema or the audit log; read-only reads only; the
admin login owns what it creates; apply() is idempotent and tolerates concurrent runs."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, scoped_session

from extensions import db
from governance.services import db_roles

INSUFFICIENT_PRIVILEGE = "42501"


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _refused(session: Any, statement: str, **params: Any) -> str:
    """Run statement in a savepoint; it must fail with insufficient_privilege. Returns the message."""
    with pytest.raises(DBAPIError) as caught, session.begin_nested():
        session.execute(text(statement), params)
    assert _sqlstate(caught.value) == INSUFFICIENT_PRIVILEGE, caught.value
    return str(caught.value.orig)


def _login_url(admin_url: str, name: str, password: str) -> str:
    return make_url(admin_url).set(username=name, password=password).render_as_string(hide_password=False)


@pytest.fixture
def make_login(admin_engine: Engine, admin_url: str) -> Iterator[Callable[[str], Engine]]:
    """make_login(kind): a fresh LOGIN role in that group and an engine logged in as it; both go
    at the end."""
    made: list[tuple[str, Engine]] = []

    def make(kind: str) -> Engine:
        name, password = db_roles.random_login_name("gov_t"), uuid.uuid4().hex
        with admin_engine.begin() as conn:
            db_roles.create_login(conn, name, kind, password=password)  # type: ignore[arg-type]
        engine = create_engine(_login_url(admin_url, name, password))
        made.append((name, engine))
        return engine

    yield make
    for name, engine in made:
        engine.dispose()
        with admin_engine.begin() as conn:
            # Objects it made were rolled back; privileges it was given die with the database.
            conn.execute(text(f'DROP OWNED BY "{name}"'))
            db_roles.drop_login(conn, name)


def test_the_apps_session_is_the_service_login(app: Flask, db_session: scoped_session[Session]) -> None:
    login = make_url(app.config["SETTINGS"].database_url).username
    row = db_session.execute(text(
        "SELECT current_user, session_user, r.rolsuper, r.rolcreaterole, r.rolcreatedb, "
        "pg_has_role(current_user, :service, 'MEMBER'), pg_has_role(current_user, :admin, 'MEMBER') "
        "FROM pg_roles r WHERE r.rolname = current_user"),
        {"service": db_roles.SERVICE, "admin": db_roles.ADMIN}).one()
    assert row[0] == row[1] == login
    assert login.startswith("gov_svc_")
    assert tuple(row[2:]) == (False, False, False, True, False)


def test_the_service_role_cannot_change_the_schema(db_session: scoped_session[Session]) -> None:
    assert "permission denied for schema public" in _refused(db_session, "CREATE TABLE h5_probe (id int)")
    assert "must be owner" in _refused(db_session, "ALTER TABLE users ADD COLUMN h5_extra int")
    assert "must be owner" in _refused(db_session, "ALTER TABLE audit_logs DISABLE TRIGGER USER")
    assert "must be owner" in _refused(db_session, "DROP TABLE evidence_links")
    assert "must be owner" in _refused(db_session, "CREATE INDEX ix_h5 ON users (name)")
    _refused(db_session, "CREATE FUNCTION h5_f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    _refused(db_session, "SET ROLE governance_break_glass")
    _refused(db_session, "SET ROLE governance_admin")
    # The tables are the admin group's, the schema too: the service role owns nothing.
    owned = db_session.execute(text(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND pg_has_role(current_user, relowner, 'USAGE')")).scalar_one()
    assert owned == 0


def test_the_service_role_cannot_rewrite_the_audit_log(db_session: scoped_session[Session], make_user: Any) -> None:
    make_user("admin")  # at least one entry
    # Refused on privileges, before the append-only triggers (the second line) are reached.
    for statement in ("UPDATE audit_logs SET action = 'forged'", "DELETE FROM audit_logs",
                      "TRUNCATE audit_logs", "TRUNCATE audit_logs_default",
                      "UPDATE audit_chain_heads SET seq = 0", "INSERT INTO audit_archives DEFAULT VALUES",
                      "DELETE FROM audit_archives"):
        message = _refused(db_session, statement)
        assert "permission denied" in message and "append-only" not in message, (statement, message)
    assert db_session.execute(text("SELECT count(*) FROM audit_logs WHERE action = 'forged'")).scalar_one() == 0


def test_the_apps_normal_writes_work(app: Flask, client: Any, login_as: Any,
                                     db_session: scoped_session[Session]) -> None:
    user = login_as("admin")  # a user row, a session row, audit entries: through the web layer
    assert client.get("/").status_code == 200
    entries = db_session.execute(text("SELECT count(*) FROM audit_logs WHERE action = 'auth.login' "
                                      "AND object_id = :id"), {"id": str(user.id)}).scalar_one()
    assert entries >= 1
    db_session.execute(text("SELECT count(*) FROM audit_archives"))  # reading archives is allowed
    # The job queue: procrastinate's functions and tables.
    job_app = app.extensions["jobs"]
    with job_app.open():
        job_id = job_app.configure_task("gov:deliver_notifications").defer(timestamp=0)
    with db.engine.begin() as conn:
        assert conn.execute(text("SELECT status FROM procrastinate_jobs WHERE id = :id"),
                            {"id": job_id}).scalar_one() == "todo"
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id})


def test_readonly_selects_but_cannot_write(make_login: Callable[[str], Engine]) -> None:
    engine = make_login("readonly")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM roles")).scalar_one() > 0
        assert conn.execute(text("SELECT count(*) FROM audit_logs")).scalar_one() >= 0
        for statement in ("INSERT INTO frameworks (title, version) VALUES ('x', '1')",
                          "UPDATE roles SET name = name", "DELETE FROM users", "CREATE TABLE h5_ro (id int)",
                          "SELECT nextval(pg_get_serial_sequence('procrastinate_jobs', 'id'))"):
            with pytest.raises(DBAPIError) as caught:
                conn.execute(text(statement))
            assert _sqlstate(caught.value) == INSUFFICIENT_PRIVILEGE, statement
            conn.rollback()


def test_an_admin_login_creates_objects_the_group_owns(make_login: Callable[[str], Engine]) -> None:
    engine = make_login("admin")
    with engine.connect() as conn:
        # `ALTER ROLE ... SET role`: every session of the login acts as the group.
        assert conn.execute(text("SELECT current_user")).scalar_one() == db_roles.ADMIN
        conn.execute(text("SET LOCAL governance.expected_ddl = 'test'"))
        conn.execute(text("CREATE TABLE h5_admin_made (id int)"))
        conn.execute(text("ALTER TABLE users ADD COLUMN h5_extra int"))
        owner = conn.execute(text("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'h5_admin_made'"))
        assert owner.scalar_one() == db_roles.ADMIN
        # Default privileges: the read-only group may read what the admin group creates.
        assert conn.execute(text("SELECT has_table_privilege(:ro, 'h5_admin_made', 'SELECT')"),
                            {"ro": db_roles.READONLY}).scalar_one() is True
        conn.rollback()


def _privileges(conn: Any) -> list[tuple[Any, ...]]:
    """Owners and ACLs of everything in the schema, default ACLs and memberships of our roles."""
    # ACL entries sorted: a REVOKE then GRANT of the same privileges may reorder them.
    def acl(column: str) -> str:
        return f"(SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest({column}) a)"  # noqa: S608

    rows = conn.execute(text(
        f"SELECT 'rel', relname, pg_get_userbyid(relowner), {acl('relacl')} FROM pg_class "  # noqa: S608
        "WHERE relnamespace = 'public'::regnamespace "
        f"UNION ALL SELECT 'proc', oid::regprocedure::text, pg_get_userbyid(proowner), {acl('proacl')} "
        "FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
        f"UNION ALL SELECT 'schema', nspname, pg_get_userbyid(nspowner), {acl('nspacl')} FROM pg_namespace "
        "WHERE nspname = 'public' "
        f"UNION ALL SELECT 'db', datname, pg_get_userbyid(datdba), {acl('datacl')} FROM pg_database "
        "WHERE datname = current_database() "
        f"UNION ALL SELECT 'default', defaclobjtype::text, pg_get_userbyid(defaclrole), {acl('defaclacl')} "
        "FROM pg_default_acl "
        "UNION ALL SELECT 'member', r.rolname, m.rolname, NULL FROM pg_auth_members a "
        "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
        "WHERE m.rolname LIKE 'governance\\_%' ORDER BY 1, 2, 3")).all()
    return [tuple(row) for row in rows]


def test_apply_twice_is_a_no_op(admin_engine: Engine) -> None:
    with admin_engine.connect() as conn:
        before = _privileges(conn)
        statements = db_roles.apply(conn)
        after = _privileges(conn)
        conn.rollback()
    assert after == before
    assert not [s for s in statements if " OWNER TO " in s]  # the session's apply already moved them
    assert f"GRANT SELECT, INSERT ON audit_logs TO {db_roles.SERVICE}" in statements


def test_group_creation_tolerates_a_concurrent_run(admin_engine: Engine, admin_url: str) -> None:
    """Two runs creating the same role at once (as two test runs on one cluster do): the second
    waits for the first, then finds the role taken and carries on."""
    role = f"gov_race_{uuid.uuid4().hex[:8]}"
    statement = db_roles._create_group(role)
    libpq = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    tag = f"h5race{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []
    with psycopg.connect(libpq) as first:
        first.execute(statement)  # created, not committed: the second blocks on it

        def second() -> None:
            try:
                with psycopg.connect(libpq, application_name=tag) as other:
                    other.execute(statement)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        with psycopg.connect(libpq, autocommit=True) as watcher:
            waiting = False
            for _ in range(600):  # until the second run waits on the first's uncommitted role
                waiting = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                                          "AND wait_event_type = 'Lock'", (tag,)).fetchone() == (1,)
                if waiting or not thread.is_alive():
                    break
                threading.Event().wait(0.05)
        assert waiting, errors
        first.commit()
        thread.join(timeout=60)
    assert not thread.is_alive() and errors == []
    with admin_engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar_one() == 1
        conn.execute(text(f"DROP ROLE {role}"))


def test_flask_db_roles_dry_run_shows_the_sql_and_changes_nothing(app: Flask, admin_engine: Engine) -> None:
    with admin_engine.connect() as conn:
        before = _privileges(conn)
    result = app.test_cli_runner().invoke(args=["db", "roles", "--print-sql", "--login", "gov_dry_run",
                                                "--role", "readonly"])
    assert result.exit_code == 0, result.output
    assert f"GRANT SELECT, INSERT ON audit_logs TO {db_roles.SERVICE};" in result.output
    assert f"GRANT {db_roles.READONLY} TO gov_dry_run;" in result.output
    assert "PASSWORD '***'" in result.output
    assert "dry run" in result.output
    with admin_engine.connect() as conn:
        assert _privileges(conn) == before
        assert conn.execute(text("SELECT count(*) FROM pg_roles WHERE rolname = 'gov_dry_run'")).scalar_one() == 0
        audited = conn.execute(text("SELECT count(*) FROM audit_logs WHERE action = 'database.roles_apply'"))
        assert audited.scalar_one() == 0


def test_flask_db_roles_creates_a_login_and_audits(app: Flask, admin_engine: Engine, admin_url: str) -> None:
    from tests.conftest import truncate_all

    name = db_roles.random_login_name("gov_cli")
    try:
        result = app.test_cli_runner().invoke(args=["db", "roles", "--login", name, "--role", "service"],
                                              env={"DB_ROLE_PASSWORD": "s3cret-for-test"})
        assert result.exit_code == 0, result.output
        assert "s3cret-for-test" not in result.output
        engine = create_engine(_login_url(admin_url, name, "s3cret-for-test"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_has_role(current_user, :g, 'MEMBER')"),
                                {"g": db_roles.SERVICE}).scalar_one() is True
        engine.dispose()
        with admin_engine.connect() as conn:
            entry = conn.execute(text("SELECT actor_name, details FROM audit_logs "
                                      "WHERE action = 'database.roles_apply'")).one()
        assert entry.actor_name == "cli:db roles" and entry.details["login"] == name
    finally:
        with admin_engine.begin() as conn:
            db_roles.drop_login(conn, name)
        truncate_all(app)  # the command committed audit entries into the session database


def test_flask_db_roles_refuses_to_turn_a_superuser_into_a_login(app: Flask, admin_url: str,
                                                                admin_engine: Engine) -> None:
    superuser = make_url(admin_url).username
    result = app.test_cli_runner().invoke(args=["db", "roles", "--login", superuser, "--role", "service"])
    assert result.exit_code == 1 and "is a superuser" in result.output
    with admin_engine.connect() as conn:
        assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :n"),
                            {"n": superuser}).scalar_one() is True
        assert conn.execute(text("SELECT count(*) FROM audit_logs WHERE action = 'database.roles_apply'")
                            ).scalar_one() == 0
    with pytest.raises(ValueError, match="group role"), admin_engine.connect() as conn:
        db_roles.create_login(conn, db_roles.SERVICE, "service", password="x")
