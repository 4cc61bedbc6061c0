"""Test fixtures: a real PostgreSQL and a real S3 server (SeaweedFS), isolated per test.

PostgreSQL: TEST_DATABASE_URL when set (a maintenance database on a server where this user may
CREATE DATABASE), else an embedded PostgreSQL started for the session in a temporary directory.
Either way the suite creates its own database, migrates it once, and drops it at the end.
S3: a SeaweedFS `weed mini` on free ports in a temporary directory; each test that asks for
`storage` gets a bucket of its own.

Roles (docs/database-security.md): the session database is migrated once as the superuser, the
least-privilege roles are applied (governance.services.db_roles) and the session `app` runs as a
login of its own that is a member of governance_service (dropped at the end): like production, it
cannot alter the schema or the audit log. `test_settings.database_admin_url` is the superuser's URL
of the same database; `admin_url`, `admin_engine` and `admin_db_session` are for tests that need
DDL or owner rights.

Isolation: `db_session` runs each test inside a transaction that is rolled back; a commit in the
code under test releases a savepoint instead. Browser tests, whose server runs in another thread
and must see committed rows, use `clean_database` instead, which truncates after the test.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import config
import embedded
from app import create_app
from extensions import db
from governance.storage import Storage

# Rows the migrations own (reference data): kept by clean_database.
REFERENCE_TABLES = frozenset({"roles", "permissions", "alembic_version", "cache_generations"})
TEST_PASSWORD = "correct horse battery staple"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _as_login(url: str, user: str, password: str) -> str:
    """The same server and database, logging in as another role."""
    return make_url(url).set(username=user, password=password).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield config.normalise_database_url(given)
        return
    server = embedded.EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    try:
        yield server.admin_url()
    finally:
        server.stop()


def _create_database(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_database(admin_url, name)


def _drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.S3State]:
    server = embedded.EmbeddedS3(tmp_path_factory.mktemp("s3"))
    server.start()
    state = server.state()
    assert state is not None
    try:
        yield state
    finally:
        server.stop()


def _migrate_and_apply_roles(settings: config.Settings) -> None:
    """Migrate settings.database_url (as the superuser) and apply the least-privilege roles."""
    from governance.services import db_roles

    migrating = create_app(TEST_OVERRIDES, settings=settings)
    with migrating.app_context():
        flask_migrate.upgrade()
        with db.engine.begin() as conn:
            db_roles.apply(conn)
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def service_login(pg_admin_url: str) -> Iterator[tuple[str, str]]:
    """(name, password) of a LOGIN role in governance_service, for this test run only."""
    from governance.services import db_roles

    name, password = db_roles.random_login_name("gov_svc"), secrets.token_hex(16)
    engine = create_engine(pg_admin_url)
    with engine.begin() as conn:
        # The group roles first (idempotent; normally created by apply() in the session database).
        for statement in db_roles.group_role_statements():
            conn.execute(text(statement))
        db_roles.create_login(conn, name, "service", password=password)
    try:
        yield name, password
    finally:
        with engine.begin() as conn:
            db_roles.drop_login(conn, name)
        engine.dispose()


@pytest.fixture(scope="session")
def test_settings(pg_admin_url: str, s3_server: embedded.S3State, service_login: tuple[str, str],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[config.Settings]:
    url = _create_database(pg_admin_url, "gov_test")
    settings = config.Settings(
        app_env="test",
        secret_key=secrets.token_urlsafe(32),
        # The app runs as the service login; schema work uses the superuser's URL (admin_url).
        database_url=_as_login(url, *service_login),
        database_admin_url=url,
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        s3_evidence_bucket="evidence-" + uuid.uuid4().hex[:8],
        instance_dir=tmp_path_factory.mktemp("instance"),
        db_pool_size=5,
        # Tests sign in without a second factor unless they test MFA (they then override this).
        mfa_required_roles=(),
    )
    try:
        _migrate_and_apply_roles(dataclasses.replace(settings, database_url=url))
        yield settings
    finally:
        for engine in _ADMIN_ENGINES.values():
            engine.dispose()
        _drop_database(pg_admin_url, url)


TEST_OVERRIDES = {"TESTING": True}


@pytest.fixture(scope="session")
def admin_url(test_settings: config.Settings) -> str:
    """The session database as the superuser (migrations, DDL, TRUNCATE, break-glass)."""
    return test_settings.admin_database_url


@pytest.fixture(scope="session")
def admin_engine(admin_url: str) -> Engine:
    return _admin_engine(admin_url)


_ADMIN_ENGINES: dict[str, Engine] = {}


def _admin_engine(url: str) -> Engine:
    if url not in _ADMIN_ENGINES:
        _ADMIN_ENGINES[url] = create_engine(url, pool_size=2)
    return _ADMIN_ENGINES[url]


@pytest.fixture(scope="session")
def app(test_settings: config.Settings) -> Iterator[Flask]:
    application = create_app(TEST_OVERRIDES, settings=test_settings)
    with application.app_context():
        application.extensions["storage"].ensure_bucket()
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app_factory(test_settings: config.Settings) -> Iterator[Callable[..., Flask]]:
    """app_factory(database_url=None, *, settings=None, **config): another app instance on the
    session's S3 and on the session's database or the one given (e.g. for a live server thread, or a
    scratch database), with `settings` (a dict of config.Settings fields) changed."""
    made: list[Flask] = []

    def make(database_url: str | None = None, *, settings: dict[str, Any] | None = None,
             **overrides: Any) -> Flask:
        # Another database (a scratch one, as the superuser) is its own admin database too.
        changed = dataclasses.replace(
            test_settings, database_url=database_url or test_settings.database_url,
            database_admin_url=database_url or test_settings.database_admin_url, **(settings or {}))
        application = create_app({**TEST_OVERRIDES, **overrides}, settings=changed)
        made.append(application)
        return application

    yield make
    for application in made:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def scratch_database_url(pg_admin_url: str) -> Iterator[str]:
    """A brand-new empty database, dropped after the test."""
    url = _create_database(pg_admin_url, "gov_scratch")
    try:
        yield url
    finally:
        _drop_database(pg_admin_url, url)


@pytest.fixture
def app_for(app_factory: Callable[..., Flask]) -> Callable[[str], Flask]:
    """app_for(database_url): an app bound to that database (S3 as the session's)."""
    return lambda database_url: app_factory(database_url)


@pytest.fixture
def db_session(app: Flask) -> Iterator[scoped_session[Session]]:
    """db.session (the service login) inside a transaction rolled back after the test (commits
    become savepoints)."""
    with _rolled_back_session(db.engine) as session:
        yield session


@pytest.fixture
def admin_db_session(app: Flask, admin_engine: Engine) -> Iterator[scoped_session[Session]]:
    """Like db_session, but db.session is the superuser (the tables' owner's rights): for tests of
    DDL, partitions, the break-glass role, TRUNCATE. The code under test runs with those rights."""
    with _rolled_back_session(admin_engine) as session:
        yield session


@contextlib.contextmanager
def _rolled_back_session(engine: Engine) -> Iterator[scoped_session[Session]]:
    from flask_sqlalchemy.session import _app_ctx_id

    connection: Connection = engine.connect()
    outer = connection.begin()
    # The test's transaction never commits: fire deferred triggers (the read cache's generation)
    # at the end of each statement instead, so what a test writes invalidates what it cached.
    connection.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    original = db.session
    db.session = scoped_session(
        sessionmaker(bind=connection, join_transaction_mode="create_savepoint"),
        scopefunc=_app_ctx_id,
    )
    try:
        yield db.session
    finally:
        db.session.remove()
        db.session = original
        if outer.is_active:
            outer.rollback()
        connection.close()


class IsolatedClient(FlaskClient):
    """Each request runs in an empty contextvars context, so it gets its own app context and `g`.

    The session-wide `app` fixture keeps an app context pushed, and Flask reuses a pushed app context
    for a request: `g` (the CSRF token, Flask-Login's cached user, the request id) would leak from one
    request and test into the next.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def client(app: Flask, db_session: scoped_session[Session]) -> FlaskClient:
    return IsolatedClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def make_user(db_session: scoped_session[Session]) -> Callable[..., Any]:
    from governance.services import identity

    def make(role: str = "admin", *, email: str | None = None, password: str = TEST_PASSWORD) -> Any:
        email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.test"
        user = identity.create_user(db_session(), email=email, name=role.replace("_", " ").title(),
                                    role_name=role, password=password)
        db_session.commit()
        return user

    return make


@pytest.fixture
def sign_in(client: FlaskClient) -> Callable[..., Any]:
    """sign_in(email, password=TEST_PASSWORD, next_url="", **client_kwargs): post the login form on
    `client` as a browser would (GET the page for its CSRF token first); returns the response."""

    def post(email: str, password: str = TEST_PASSWORD, next_url: str = "", **kwargs: Any) -> Any:
        page = client.get("/login", **kwargs)
        assert page.status_code == 200
        token = _csrf_token(page.get_data(as_text=True))
        return client.post("/login", data={"email": email, "password": password, "csrf_token": token,
                                           "next": next_url}, **kwargs)

    return post


@pytest.fixture
def login_as(client: FlaskClient, make_user: Callable[..., Any], sign_in: Callable[..., Any]) -> Callable[[str], Any]:
    """login_as(role): a new user with that role, signed in on `client` through the login form
    (no second factor: the session app requires MFA of no role unless a test says so)."""

    def login(role: str) -> Any:
        user = make_user(role)
        with client.session_transaction():
            pass  # a session cookie exists before the first form, as in a browser
        response = sign_in(user.email)
        assert response.status_code == 303, response.get_data(as_text=True)
        return user

    return login


@pytest.fixture
def override_settings(app: Flask) -> Iterator[Callable[..., config.Settings]]:
    """override_settings(**fields): change the session app's Settings for this test only
    (e.g. mfa_required_roles=("admin",), login_max_failures=3, session_idle_minutes=5)."""
    original = app.config["SETTINGS"]

    def override(**changes: Any) -> config.Settings:
        app.config["SETTINGS"] = dataclasses.replace(app.config["SETTINGS"], **changes)
        return app.config["SETTINGS"]

    yield override
    app.config["SETTINGS"] = original


@pytest.fixture
def session_sid(client: FlaskClient) -> Callable[[], str | None]:
    """session_sid(): the server-session id the client's cookie carries now (None when signed out)."""

    def read() -> str | None:
        with client.session_transaction() as cookie_session:
            value = cookie_session.get("sid")
        return None if value is None else str(value)

    return read


def _csrf_token(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no csrf_token field in the page"
    return match.group(1)


@pytest.fixture
def csrf_token() -> Callable[[str], str]:
    return _csrf_token


@pytest.fixture
def storage(app: Flask, s3_server: embedded.S3State) -> Iterator[Storage]:
    """The app's object store pointed at a fresh bucket for this test, emptied and removed after."""
    original = app.extensions["storage"]
    bucket = "t-" + uuid.uuid4().hex[:16]
    store = Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket=bucket)
    store.ensure_bucket()
    app.extensions["storage"] = store
    try:
        yield store
    finally:
        app.extensions["storage"] = original
        store.purge_bucket()


def truncate_all(app: Flask) -> None:
    """Empty every table but the reference data the migrations own (as the admin: the service
    role may not TRUNCATE)."""
    with app.app_context(), _admin_engine(app.config["SETTINGS"].admin_database_url).begin() as conn:
        # A forgotten open transaction would make TRUNCATE wait forever: fail loudly instead.
        conn.execute(text("SET LOCAL lock_timeout = '15s'"))
        names = [t.name for t in db.metadata.sorted_tables if t.name not in REFERENCE_TABLES]
        quoted = ", ".join(f'"{n}"' for n in names)
        # audit_logs is append-only (docs/audit.md): only the break-glass role may empty it; the
        # TRUNCATE ... CASCADE below then reaches it through its foreign key and finds it empty.
        conn.execute(text("SET LOCAL ROLE governance_break_glass"))
        conn.execute(text("TRUNCATE audit_logs"))
        conn.execute(text("RESET ROLE"))
        conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))


@pytest.fixture
def clean_database(app: Flask) -> Iterator[None]:
    """For tests whose code commits for real (live server): truncate after the test."""
    yield
    truncate_all(app)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return config.ROOT


@contextlib.contextmanager
def count_statements() -> Iterator[list[str]]:
    """Collect the SQL statements the app's engine runs inside the block (pages must run a bounded
    number whatever the row count: DESIGN.md, conventions 8)."""
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


@pytest.fixture
def make_control(db_session: scoped_session[Session]) -> Callable[..., Any]:
    """make_control(ref_id="GV-1", title=..., framework=None): a live control (in a new framework
    unless one is given), committed."""
    from governance.models.frameworks import Control, Framework

    def make(ref_id: str = "GV-1", title: str = "Policies are in place", framework: Any = None) -> Any:
        if framework is None:
            framework = Framework(title=f"Test framework {uuid.uuid4().hex[:6]}", version="1.0")
            db_session.add(framework)
            db_session.flush()
        control = Control(framework_id=framework.id, ref_id=ref_id, title=title)
        db_session.add(control)
        db_session.commit()
        return control

    return make


@pytest.fixture
def make_evidence(db_session: scoped_session[Session], storage: Storage) -> Callable[..., Any]:
    """make_evidence(uploader, data=b"...", name=..., control=None, filename="report.pdf",
    content_type=..., submit=True, **meta): evidence with one revision whose object really is in
    the test's bucket (stored directly, not through the upload pipeline), committed."""
    import hashlib

    from governance.services import evidence as evidence_service

    def make(uploader: Any, data: bytes = b"%PDF-1.4 test evidence\n", *, name: str = "Access review Q3",
             control: Any = None, filename: str = "report.pdf", content_type: str = "application/pdf",
             submit: bool = True, **meta: str) -> Any:
        evidence_id = uuid.uuid4()
        key = evidence_service.object_key(evidence_id)
        stored = storage.put(key, data, content_type=content_type)
        upload = evidence_service.StoredUpload(
            bucket=storage.bucket, key=key, version_id=stored.version_id, size=len(data),
            sha256=hashlib.sha256(data).hexdigest(), content_type=content_type, filename=filename)
        evidence = evidence_service.create_evidence(
            db_session(), evidence_id=evidence_id, meta=evidence_service.validate_meta({"name": name, **meta}),
            upload=upload, uploaded_by_id=uploader.id, control_id=control.id if control is not None else None,
            submit=submit)
        db_session.commit()
        return evidence

    return make
