"""Least-privilege database roles (docs/database-security.md).

Three NOLOGIN group roles; people and processes log in as members of one of them:

- ``governance_readonly`` (READONLY): CONNECT, USAGE on the schema, SELECT on every table and
  sequence, and the same on tables the admin role creates later (default privileges). Reports.
- ``governance_service`` (SERVICE): what the web app and the job worker need and no more:
  ``audit_chain.grant_app_role`` (DML on the tables, audit_logs only SELECT + INSERT, SELECT only on
  audit_chain_heads and alembic_version), only SELECT on audit_archives, EXECUTE on procrastinate's
  functions. No CREATE on the schema, owns nothing: it cannot alter the schema or the audit log.
- ``governance_admin`` (ADMIN): owns the schema and every object in it (migrations, partitions,
  retention's DETACH/DROP, restores) and may SET ROLE governance_break_glass (partition maintenance
  moves stranded audit rows as that role). Its login sets `role = governance_admin` so what a
  migration creates is owned by the group, not by one person's login.

``apply(conn)`` is idempotent (run as a superuser or the schema's owner): it creates what is missing,
transfers ownership of what the group does not own yet and re-grants; run it after every migration
that adds tables and after a restore (``flask db roles``). Roles are cluster-wide and several
databases (test runs) may create them at once, so creation tolerates duplicate_object and
unique_violation. Every statement is returned, so the CLI can show (or dry-run) exactly what ran.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine, create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from governance.services import audit_chain
from governance.services.partitions import BREAK_GLASS_ROLE, expected_ddl

READONLY = "governance_readonly"
SERVICE = "governance_service"
ADMIN = "governance_admin"
GROUPS: dict[str, str] = {"readonly": READONLY, "service": SERVICE, "admin": ADMIN}
RoleKind = Literal["readonly", "service", "admin"]

# Tables the service role may read but never write: written by admin-URL processes only.
SERVICE_READ_ONLY_TABLES = ("audit_archives",)
PROCRASTINATE_PREFIX = "procrastinate"


def _create_group(role: str) -> str:
    # A DO block: its exception handler is a subtransaction, so losing the race to another
    # database's run (duplicate_object, or unique_violation on pg_authid) leaves our transaction intact.
    # `role` is one of the constants above, never user input.
    return (f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN "  # noqa: S608
            f"CREATE ROLE {role} NOLOGIN; END IF; "
            f"EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")


def group_role_statements() -> list[str]:
    """The statements creating the three group roles when missing (safe to race)."""
    return [_create_group(role) for role in (READONLY, SERVICE, ADMIN)]


def _grant_membership(group: str, member: str) -> str:
    return (f"DO $$ BEGIN IF NOT pg_has_role('{member}', '{group}', 'MEMBER') THEN "
            f"GRANT {group} TO {member}; END IF; "
            f"EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")


def _names(conn: Connection | Session, sql: str, **params: str) -> list[str]:
    return [str(v) for v in conn.execute(text(sql), params).scalars()]


def _ownership_statements(conn: Connection | Session, schema: str) -> list[str]:
    """ALTER ... OWNER TO governance_admin for each object of the schema it does not own yet
    (extension members, indexes and sequences owned by a column follow their owners)."""
    params = {"schema": schema, "admin": ADMIN}
    relations = conn.execute(text(
        "SELECT c.relkind, c.oid::regclass::text FROM pg_class c "
        "WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relkind IN ('r','p','v','m','f','S') "
        "AND pg_get_userbyid(c.relowner) <> :admin "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "  AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i') "
        "       AND d.refclassid = 'pg_class'::regclass))) ORDER BY 2"), params).all()
    keyword = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE",
               "S": "SEQUENCE"}
    statements = [f"ALTER {keyword[kind]} {name} OWNER TO {ADMIN}" for kind, name in relations]
    routines = _names(conn, (
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = CAST(:schema AS regnamespace) "
        "AND p.prokind IN ('f', 'p') AND pg_get_userbyid(p.proowner) <> :admin "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass "
        "  AND d.objid = p.oid AND d.deptype = 'e') ORDER BY 1"), **params)
    statements += [f"ALTER ROUTINE {name} OWNER TO {ADMIN}" for name in routines]
    types = _names(conn, (
        "SELECT t.oid::regtype::text FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid "
        "WHERE t.typnamespace = CAST(:schema AS regnamespace) AND pg_get_userbyid(t.typowner) <> :admin "
        "AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c')) "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass "
        "  AND d.objid = t.oid AND d.deptype = 'e') ORDER BY 1"), **params)
    statements += [f"ALTER TYPE {name} OWNER TO {ADMIN}" for name in types]
    return statements


def _schema_owner_statement(conn: Connection | Session, schema: str) -> list[str]:
    owner = conn.execute(text("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :s"),
                         {"s": schema}).scalar_one()
    quoted = _quote(conn, schema)
    return [] if owner == ADMIN else [f"ALTER SCHEMA {quoted} OWNER TO {ADMIN}"]


def _quote(conn: Connection | Session, name: str) -> str:
    return str(conn.execute(text("SELECT quote_ident(:n)"), {"n": name}).scalar_one())


def _run(conn: Connection | Session, statements: list[str], done: list[str]) -> None:
    for statement in statements:
        conn.execute(text(statement))
        done.append(statement)


def apply(conn: Connection | Session, *, schema: str = "public") -> list[str]:
    """Create the three group roles if missing and grant them least privilege on `schema` of the
    connected database (see the module docstring). Runs inside the caller's transaction (the
    caller commits); returns the statements run, in order. Needs a superuser, or a role that owns
    the schema's objects and has CREATEROLE."""
    if schema != "public":
        # audit_chain.grant_app_role (the service role's grants) knows the public schema only.
        raise ValueError("the service role's grants cover the public schema only")
    done: list[str] = []
    database = _quote(conn, str(conn.execute(text("SELECT current_database()")).scalar_one()))
    quoted = _quote(conn, schema)
    # The schema-change trigger writes an audit entry per GRANT/ALTER; a pending deferred chain-head
    # move on an audit partition would make PostgreSQL refuse the next ALTER of that partition.
    conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    with expected_ddl(conn, "roles"):
        _run(conn, group_role_statements(), done)
        has_break_glass = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                                       {"r": BREAK_GLASS_ROLE}).first() is not None
        # Database-level grants need the database's owner (or a superuser): the first run, by the
        # DBA; an admin login re-running it after a migration skips them.
        may_grant_database = bool(conn.execute(text(
            "SELECT r.rolsuper OR pg_has_role(d.datdba, 'MEMBER') FROM pg_roles r, pg_database d "
            "WHERE r.rolname = current_user AND d.datname = current_database()")).scalar_one())
        database_grants = [f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {ADMIN}",
                           f"GRANT CONNECT ON DATABASE {database} TO {SERVICE}",
                           f"GRANT CONNECT ON DATABASE {database} TO {READONLY}"] if may_grant_database else []
        admin = [*database_grants,
                 *_schema_owner_statement(conn, schema),
                 f"GRANT USAGE, CREATE ON SCHEMA {quoted} TO {ADMIN}",
                 # Nobody else creates objects here (PostgreSQL 15+ already revokes it from PUBLIC;
                 # a cluster upgraded from an older version may not).
                 f"REVOKE CREATE ON SCHEMA {quoted} FROM PUBLIC"]
        if has_break_glass:
            admin.append(_grant_membership(BREAK_GLASS_ROLE, ADMIN))
        _run(conn, admin, done)
        _run(conn, _ownership_statements(conn, schema), done)

        done += audit_chain.grant_app_role(conn, SERVICE)
        service: list[str] = []
        present = _names(conn, "SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = "
                               "CAST(:schema AS regnamespace) AND relname = ANY(:names)",
                         schema=schema, names=list(SERVICE_READ_ONLY_TABLES))  # type: ignore[arg-type]
        if present:
            service.append(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {', '.join(present)} FROM {SERVICE}")
        functions = _names(conn, "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = "
                                 "CAST(:schema AS regnamespace) AND p.proname LIKE :prefix ORDER BY 1",
                           schema=schema, prefix=PROCRASTINATE_PREFIX + "%")
        if functions:
            service.append(f"GRANT EXECUTE ON FUNCTION {', '.join(functions)} TO {SERVICE}")
        _run(conn, service, done)

        _run(conn, [
            f"GRANT USAGE ON SCHEMA {quoted} TO {READONLY}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {quoted} TO {READONLY}",
            f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {quoted} TO {READONLY}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {ADMIN} IN SCHEMA {quoted} GRANT SELECT ON TABLES TO {READONLY}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {ADMIN} IN SCHEMA {quoted} GRANT SELECT ON SEQUENCES TO {READONLY}",
        ], done)
    return done


def create_login(conn: Connection | Session, name: str, kind: RoleKind, *, password: str) -> list[str]:
    """Create (or update) the LOGIN role `name` as a member of the group of `kind`; an admin
    login starts every session as governance_admin, so what it creates is owned by the group.
    Returns the statements, the password shown as '***'. Refuses superusers and our group roles
    (an ALTER ... NOSUPERUSER of the DBA's own role would lock the DBA out)."""
    group = GROUPS[kind]
    if name in GROUPS.values() or name == BREAK_GLASS_ROLE:
        raise ValueError(f"{name} is a group role, not a login")
    quoted = _quote(conn, name)
    literal = str(conn.execute(text("SELECT quote_literal(:p)"), {"p": password}).scalar_one())
    existing = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :n"), {"n": name}).first()
    if existing is not None and existing[0]:
        raise ValueError(f"{name} is a superuser: not turned into an application login")
    verb = "ALTER" if existing is not None else "CREATE"
    statements = [f"{verb} ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {{password}}",
                  f"GRANT {group} TO {quoted}"]
    if kind == "admin":
        statements.append(f"ALTER ROLE {quoted} SET role = '{ADMIN}'")
    for statement in statements:
        conn.execute(text(statement.replace("{password}", literal.replace(":", r"\:"))))
    return [s.replace("{password}", "'***'") for s in statements]


def drop_login(conn: Connection | Session, name: str) -> None:
    """Drop a login role created by create_login (in the current database's view: it must own
    nothing and hold no privileges of its own elsewhere)."""
    conn.execute(text(f"DROP ROLE IF EXISTS {_quote(conn, name)}"))


def random_login_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


def admin_engine(settings: object) -> Engine:
    """An engine on settings.admin_database_url for schema-owning work (never db.session, which may
    be the service role). NullPool: these are short, rare jobs and commands."""
    url = getattr(settings, "admin_database_url", "") or ""
    if not url:
        raise ValueError("no DATABASE_ADMIN_URL (nor DATABASE_URL) is set")
    return create_engine(url, poolclass=NullPool)


@contextmanager
def admin_session(settings: object) -> Iterator[Session]:
    """A Session on the admin URL (the caller commits); its engine is disposed afterwards."""
    engine = admin_engine(settings)
    try:
        with Session(bind=engine) as session:
            yield session
    finally:
        engine.dispose()
