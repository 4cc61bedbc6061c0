"""Casbin rules from the permissions table: the default matrix, explicit denies, cross-worker reloads."""

from __future__ import annotations

import flask_migrate
import pytest
from sqlalchemy import create_engine, text

from blueprints import access
from extensions import db
from governance import authz
from governance.models.identity import Permission


@pytest.fixture
def authorizer(app):
    found = authz.authorizer(app)
    with app.app_context():
        found.refresh(db.session)
    return found


@pytest.mark.parametrize(("role", "resource", "action", "allowed"), [
    ("admin", "users", "manage", True),
    ("admin", "roles", "manage", True),
    ("admin", "evidence", "review", True),
    ("admin", "audit_log", "export", True),
    ("admin", "audit_log", "update", False),
    ("admin", "audit_log", "delete", False),
    ("compliance_officer", "controls", "create", True),
    ("compliance_officer", "mappings", "delete", True),
    ("compliance_officer", "results", "review", True),
    ("compliance_officer", "tasks", "create", True),
    ("compliance_officer", "users", "manage", False),
    ("compliance_officer", "evidence", "review", False),
    ("engineer", "evidence", "upload", True),
    ("engineer", "evidence", "link", True),
    ("engineer", "probes", "run", True),
    ("engineer", "tasks", "work", True),
    ("engineer", "controls", "update", False),
    ("engineer", "evidence", "review", False),
    ("engineer", "users", "manage", False),
    ("auditor", "evidence", "review", True),
    ("auditor", "audit_log", "export", True),
    ("auditor", "users", "read", True),
    ("auditor", "alerts", "read", True),
    ("auditor", "evidence", "upload", False),
    ("auditor", "frameworks", "update", False),
    ("auditor", "users", "manage", False),
    ("auditor", "audit_log", "delete", False),
    ("nobody", "dashboard", "read", False),
])
def test_default_matrix(authorizer, role, resource, action, allowed) -> None:
    assert authorizer.can(role, resource, action) is allowed


@pytest.mark.parametrize("role", ["admin", "compliance_officer", "engineer", "auditor"])
def test_every_role_keeps_the_basics(authorizer, role) -> None:
    for resource, action in (("dashboard", "read"), ("frameworks", "read"), ("session", "delete"),
                             ("account", "update")):
        assert authorizer.can(role, resource, action), (role, resource, action)


def test_no_subject_may_do_nothing(authorizer) -> None:
    assert authorizer.can(None, "dashboard", "read") is False
    assert authorizer.can("", "dashboard", "read") is False


def test_the_adapter_loads_every_row_of_the_table(app, authorizer) -> None:
    with app.app_context():
        rows = db.session.query(Permission).filter(Permission.ptype == "p").count()
    assert len(authorizer.enforcer.get_policy()) == rows > 100


def test_an_explicit_deny_beats_an_allow_added_later(authorizer) -> None:
    assert authorizer.add_rule("admin", "audit_log", "delete", "allow")
    try:
        assert authorizer.can("admin", "audit_log", "delete") is False
    finally:
        authorizer.remove_rule("admin", "audit_log", "delete", "allow")


def test_decisions_are_remembered_until_the_rules_change(authorizer) -> None:
    """casbin compiles its matcher on every enforce: a decision is made once per policy."""
    enforcer = authorizer.enforcer
    asked: list[tuple[str, ...]] = []
    original = enforcer.enforce
    enforcer.enforce = lambda *request: asked.append(request) or original(*request)
    try:
        assert [authorizer.can("engineer", "users", "manage") for _ in range(3)] == [False] * 3
        assert asked == [("engineer", "users", "manage")]
        assert authorizer.add_rule("engineer", "users", "manage")
        try:
            assert authorizer.can("engineer", "users", "manage") is True
            assert len(asked) == 2
        finally:
            authorizer.remove_rule("engineer", "users", "manage")
        assert authorizer.can("engineer", "users", "manage") is False
        assert len(asked) == 3
    finally:
        del enforcer.enforce


def test_a_rule_added_through_one_worker_is_seen_by_another_on_its_next_request(
    app, app_factory, client, csrf_token, make_user, db_session
) -> None:
    """Two app instances stand for two gunicorn workers, each with its own enforcer in memory."""
    from tests.conftest import TEST_PASSWORD, IsolatedClient

    worker_b = app_factory()
    engineer = make_user("engineer")
    browser = IsolatedClient(worker_b, worker_b.response_class, use_cookies=True)
    token = csrf_token(browser.get("/login").get_data(as_text=True))
    assert browser.post("/login", data={"email": engineer.email, "password": TEST_PASSWORD,
                                        "csrf_token": token}).status_code == 303
    assert browser.get("/admin/users").status_code == 403  # worker B has loaded the default rules

    worker_a = authz.authorizer(app)
    assert worker_a.add_rule("engineer", "users", "manage")  # committed through worker A's adapter
    try:
        assert browser.get("/admin/users").status_code == 200  # worker B reloaded on its next request
    finally:
        worker_a.remove_rule("engineer", "users", "manage")
    assert browser.get("/admin/users").status_code == 403


def test_an_update_to_a_rule_changes_the_fingerprint(app) -> None:
    with app.app_context():
        engine = db.engine
        with engine.begin() as conn:
            before = tuple(conn.execute(authz.FINGERPRINT_SQL).one())
            conn.execute(text("UPDATE permissions SET v3 = v3 WHERE v0 = 'auditor' AND v1 = 'dashboard'"))
            assert tuple(conn.execute(authz.FINGERPRINT_SQL).one()) != before


def test_templates_get_can(app) -> None:
    assert app.jinja_env.globals["can"] is access.can


def test_the_policy_migration_removes_exactly_its_rows_on_downgrade(scratch_database_url, app_for) -> None:
    application = app_for(scratch_database_url)
    with application.app_context():
        flask_migrate.upgrade()
        engine = create_engine(scratch_database_url)
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO permissions (ptype, v0, v1, v2, v3) "
                                  "VALUES ('p', 'engineer', 'site_notes', 'read', 'allow')"))
            flask_migrate.downgrade(revision="0003_identity")
            with engine.connect() as conn:
                left = conn.execute(text("SELECT ptype, v0, v1, v2, v3 FROM permissions")).all()
            assert [tuple(r) for r in left] == [("p", "engineer", "site_notes", "read", "allow")]
            flask_migrate.upgrade()
        finally:
            engine.dispose()
        db.engine.dispose()
