"""Deny by default: every route declares who may reach it; the role-by-endpoint matrix; refusals are
audited and a burst raises an alert; security headers."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask import Blueprint
from sqlalchemy import select
from werkzeug.routing import IntegerConverter, UUIDConverter

from app import create_app
from blueprints import access
from governance.models.audit import Alert, AuditLog
from governance.models.enums import AuditOutcome, Severity
from tests.conftest import TEST_PASSWORD, IsolatedClient


def test_every_route_declares_its_access(app) -> None:
    undeclared = [rule.rule for rule in app.url_map.iter_rules()
                  if access.declaration(app, rule.endpoint) is None]
    assert undeclared == [], f"routes without @public or @requires: {undeclared}"


def test_an_undeclared_route_is_refused_even_when_signed_in(test_settings, make_user) -> None:
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False}, settings=test_settings)
    bp = Blueprint("forgotten", __name__)

    @bp.get("/forgotten")
    def forgotten() -> str:
        return "secret"

    app.register_blueprint(bp)
    response = app.test_client().get("/forgotten")
    assert response.status_code == 403
    assert "secret" not in response.get_data(as_text=True)


def test_protected_pages_send_anonymous_visitors_to_login(client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_public_pages_need_no_login(client) -> None:
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code == 200


# --- the allow-list and the role-by-endpoint matrix --------------------------------------------------


# The only endpoints anyone may reach without signing in. /login/mfa is the second step of signing in.
PUBLIC_ENDPOINTS = {"static", "auth.login", "auth.mfa_verify", "health.healthz"}

ROLES = ("admin", "compliance_officer", "engineer", "auditor")
EVERYONE = set(ROLES)
ADMIN = {"admin"}

# Who may reach each endpoint: the specification the Casbin rules must meet. A new route fails
# test_every_endpoint_is_in_the_matrix until it is added here.
MATRIX: dict[str, set[str]] = {
    "main.dashboard": EVERYONE,
    "frameworks.index": EVERYONE,
    "frameworks.framework": EVERYONE,
    "frameworks.children": EVERYONE,
    "frameworks.control": EVERYONE,
    "frameworks.edit_control": {"admin", "compliance_officer"},
    "frameworks.update_control": {"admin", "compliance_officer"},
    "frameworks.delete_control": {"admin", "compliance_officer"},
    "frameworks.restore_control": {"admin", "compliance_officer"},
    "framework_import.upload": {"admin", "compliance_officer"},
    "framework_import.export": EVERYONE,
    "framework_import.libraries": EVERYONE,
    "framework_import.load_library": {"admin", "compliance_officer"},
    "auth.logout": EVERYONE,
    "auth.change_password": EVERYONE,
    "auth.mfa_setup": EVERYONE,
    "admin.users": ADMIN,
    "admin.create_user": ADMIN,
    "admin.change_role": ADMIN,
    "admin.deactivate": ADMIN,
    "admin.reactivate": ADMIN,
    "admin.reset_mfa": ADMIN,
    "admin.sign_out_everywhere": ADMIN,
    # evidence pages: list, detail, download, review, links (blueprints/evidence)
    "evidence.index": EVERYONE,
    "evidence.detail": EVERYONE,
    "evidence.download": EVERYONE,
    "evidence.review": {"admin", "auditor"},
    "evidence.submit": {"admin", "engineer"},
    "evidence.link_targets": {"admin", "engineer"},
    "evidence.add_link": {"admin", "engineer"},
    "evidence.remove_link": {"admin", "engineer"},
    "evidence.control_candidates": {"admin", "engineer"},
    "evidence.control_attach": {"admin", "engineer"},
    "evidence.control_detach": {"admin", "engineer"},
    # evidence uploads (blueprints/evidence_upload)
    "evidence_upload.new": {"admin", "engineer"},
    "evidence_upload.create": {"admin", "engineer"},
    "evidence_upload.new_revision": {"admin", "engineer"},
    "evidence_upload.upload_revision": {"admin", "engineer"},
    # notifications (blueprints/notifications)
    "notifications.index": EVERYONE,
    "notifications.mark_read": EVERYONE,
    "notifications.mark_all_read": EVERYONE,
    # probes and checks (blueprints/probes)
    "probes.index": EVERYONE,
    "probes.new": {"admin", "compliance_officer"},
    "probes.create": {"admin", "compliance_officer"},
    "probes.detail": EVERYONE,
    "probes.edit": {"admin", "compliance_officer"},
    "probes.update": {"admin", "compliance_officer"},
    "probes.toggle": {"admin", "compliance_officer"},
    "probes.run_now": {"admin", "compliance_officer", "engineer"},
    "probes.run_status": EVERYONE,
    "probes.new_check": {"admin", "compliance_officer"},
    "probes.create_check": {"admin", "compliance_officer"},
    "probes.check_detail": EVERYONE,
    "probes.edit_check": {"admin", "compliance_officer"},
    "probes.update_check": {"admin", "compliance_officer"},
    "probes.toggle_check": {"admin", "compliance_officer"},
    "probes.attest": EVERYONE,
    # audit log: list, one entry, CSV export (blueprints/audit)
    "audit.index": {"admin", "auditor"},
    "audit.entry": {"admin", "auditor"},
    "audit.export": {"admin", "auditor"},
    # alerts and tasks (blueprints/alerts, blueprints/tasks)
    "alerts.index": EVERYONE,
    "alerts.detail": EVERYONE,
    "alerts.acknowledge": {"admin", "compliance_officer"},
    "alerts.resolve": {"admin", "compliance_officer"},
    "tasks.board": EVERYONE,
    "tasks.mine": EVERYONE,
    "tasks.detail": EVERYONE,
    "tasks.nav_counts": EVERYONE,
    "tasks.change_status": {"admin", "compliance_officer", "engineer"},
    "tasks.new": {"admin", "compliance_officer"},
    "tasks.create": {"admin", "compliance_officer"},
    "tasks.edit": {"admin", "compliance_officer"},
    "tasks.update": {"admin", "compliance_officer"},
    "tasks.assign": {"admin", "compliance_officer"},
    "tasks.evidence_candidates": {"admin", "compliance_officer"},
    "tasks.link_evidence": {"admin", "compliance_officer"},
    # AI inventory (blueprints/ai_systems)
    "ai_systems.index": EVERYONE, "ai_systems.export": EVERYONE, "ai_systems.detail": EVERYONE,
    "ai_systems.models": EVERYONE, "ai_systems.datasets": EVERYONE,
    **{f"ai_systems.{e}": {"admin", "compliance_officer", "engineer"} for e in (
        "new", "create", "edit", "update", "control_candidates", "link_control", "unlink_control", "link_model",
        "unlink_model", "link_dataset", "unlink_dataset", "evidence_candidates", "link_evidence", "unlink_evidence",
        "add_standard_checks", "new_model", "create_model", "edit_model", "update_model", "new_dataset",
        "create_dataset", "edit_dataset", "update_dataset")},
    **{f"ai_systems.{e}": {"admin", "compliance_officer"} for e in (
        "confirm_delete", "delete", "delete_model", "delete_dataset")},
    **{f"ai_systems.{e}": EVERYONE for e in ("classify", "assessment", "assessment_version", "register")},
    **{f"ai_systems.{e}": {"admin", "compliance_officer", "engineer"} for e in (
        "classify_step", "start_assessment", "save_assessment")},
    "ai_systems.decide_assessment": {"admin", "compliance_officer"},
    # benchmark baseline
    "bench_baseline.layout_baseline": EVERYONE,
    # backups and restore drills (blueprints/backups)
    "backups.index": {"admin", "compliance_officer", "auditor"},
    "backups.run_backup": ADMIN, "backups.run_drill": ADMIN,
    # GDPR erasure requests (blueprints/erasure)
    **{f"erasure.{e}": {"admin", "compliance_officer"} for e in ("index", "new", "detail", "receipt", "receipt_json")},
    "erasure.decide": ADMIN, "erasure.execute": ADMIN,
    # reports (blueprints/reports): engineers read, the others also request
    "reports.index": EVERYONE, "reports.download": EVERYONE,
    "reports.create": {"admin", "compliance_officer", "auditor"},
    # retention and legal holds (blueprints/retention)
    "retention.index": {"admin", "compliance_officer", "auditor"},
    "retention.panel": {"admin", "compliance_officer", "auditor"},
    "retention.place_hold": {"admin", "compliance_officer"}, "retention.release_hold": {"admin", "compliance_officer"},
    "retention.run_now": ADMIN,
}

# Endpoints that end the caller's own session go last, so the rest run signed in.
LAST = ("auth.logout",)


def _sample_url(app, rule) -> str:
    values = {name: uuid.uuid4() if isinstance(conv, UUIDConverter) else 1 if isinstance(conv, IntegerConverter)
              else "sample" for name, conv in rule._converters.items()}
    if rule.endpoint == "static":
        values = {"filename": "css/app.css"}
    with app.test_request_context():
        from flask import url_for

        return url_for(rule.endpoint, **values)


def _routes(app):
    """(endpoint, method, url) for every rule and method (HEAD/OPTIONS are Flask's own)."""
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, _sample_url(app, rule)))
    return sorted(out, key=lambda r: (r[0] in LAST, r))


def test_only_the_allow_list_is_public(app) -> None:
    public_endpoints = {rule.endpoint for rule in app.url_map.iter_rules()
                        if access.declaration(app, rule.endpoint) == "public"}
    assert public_endpoints == PUBLIC_ENDPOINTS


def test_every_endpoint_is_in_the_matrix(app) -> None:
    protected = {rule.endpoint for rule in app.url_map.iter_rules()
                 if access.declaration(app, rule.endpoint) != "public"}
    assert protected == set(MATRIX)


def test_anonymous_visitors_are_sent_to_login_from_every_protected_endpoint(app, client, csrf_token) -> None:
    token = csrf_token(client.get("/login").get_data(as_text=True))
    for endpoint, method, url in _routes(app):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        response = client.open(url, method=method, data={"csrf_token": token})
        assert response.status_code == 302, (endpoint, method, response.status_code)
        assert response.headers["Location"].startswith("/login"), (endpoint, method)


@pytest.mark.parametrize("role", ROLES)
def test_role_endpoint_matrix(app, make_user, csrf_token, role) -> None:
    user = make_user(role)
    browser = IsolatedClient(app, app.response_class, use_cookies=True)
    token = csrf_token(browser.get("/login").get_data(as_text=True))
    assert browser.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                                        "csrf_token": token}).status_code == 303
    token = csrf_token(browser.get("/").get_data(as_text=True))
    checked = 0
    for endpoint, method, url in _routes(app):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        response = browser.open(url, method=method, data={"csrf_token": token} if method != "GET" else None)
        if role in MATRIX[endpoint]:
            assert response.status_code not in (302, 400, 401, 403), (role, endpoint, method, response.status_code)
        else:
            assert response.status_code == 403, (role, endpoint, method, response.status_code)
        checked += 1
    assert checked >= len(MATRIX)


# --- every 403 is audited; a burst raises one alert --------------------------------------------------


def test_every_refusal_is_audited_and_a_burst_raises_one_alert(app, client, login_as, db_session) -> None:
    settings = app.config["SETTINGS"]
    engineer = login_as("engineer")
    for _ in range(settings.denial_alert_threshold - 1):
        assert client.get("/admin/users").status_code == 403
    key = f"access.denied_burst:{engineer.id}"
    assert db_session.scalars(select(Alert).where(Alert.dedup_key == key)).all() == []
    for _ in range(3):
        assert client.get("/admin/users").status_code == 403
    [alert] = db_session.scalars(select(Alert).where(Alert.dedup_key == key)).all()
    assert alert.rule == "access.denied_burst" and alert.severity == Severity.HIGH
    assert alert.details["actor_id"] == str(engineer.id)
    denied = db_session.scalars(select(AuditLog).where(AuditLog.actor_id == engineer.id,
                                                       AuditLog.action == "access.denied")).all()
    assert len(denied) == settings.denial_alert_threshold + 2
    assert all(e.outcome == AuditOutcome.DENIED for e in denied)
    # The engineer's name, IP and user agent are sealed under their person key (docs/erasure.md).
    details = dict(denied[0].details)
    assert details.pop("sealed").startswith("sealed:v1:")
    assert details == {"endpoint": "admin.users", "method": "GET", "path": "/admin/users",
                       "resource": "users", "action": "manage", "role": "engineer"}
    # The alert names the person in plain text (alerts are not append-only: erasure rewrites them).
    assert alert.details["actor_name"] == engineer.email


def test_old_denials_outside_the_window_do_not_count(app, client, login_as, db_session) -> None:
    settings = app.config["SETTINGS"]
    engineer = login_as("engineer")
    # Written with an old time from the start: the log is append-only (no UPDATE of created_at).
    old = AuditLog(actor_id=engineer.id, actor_name=engineer.email, action="access.denied",
                   outcome=AuditOutcome.DENIED, object_type="endpoint",
                   created_at=datetime.now(UTC) - timedelta(minutes=settings.denial_alert_window_minutes + 1))
    db_session.add(old)
    db_session.flush()
    for _ in range(settings.denial_alert_threshold - 1):
        client.get("/admin/users")
    assert db_session.scalars(select(Alert).where(Alert.source_id == str(engineer.id))).all() == []


def test_an_anonymous_refusal_is_audited_too(test_settings, db_session) -> None:
    app = create_app({"TESTING": True}, settings=test_settings)
    bp = Blueprint("forgotten2", __name__)

    @bp.get("/forgotten2")
    def forgotten() -> str:
        return "secret"

    app.register_blueprint(bp)
    assert app.test_client().get("/forgotten2").status_code == 403
    entries = db_session.scalars(select(AuditLog).where(AuditLog.action == "access.denied")).all()
    assert [(e.actor_name, e.details["endpoint"]) for e in entries] == [("anonymous", "forgotten2.forgotten")]


# --- security headers ---------------------------------------------------------------------------------


def test_security_headers_and_no_store_for_signed_in_pages(client, login_as) -> None:
    anonymous = client.get("/login")
    csp = anonymous.headers["Content-Security-Policy"]
    for directive in ("script-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert anonymous.headers["X-Content-Type-Options"] == "nosniff"
    assert anonymous.headers["Referrer-Policy"]
    assert "Strict-Transport-Security" not in anonymous.headers  # only in production
    login_as("auditor")
    for path in ("/", "/frameworks", "/admin/users"):
        response = client.get(path)
        assert response.headers["Cache-Control"] == "no-store", path
        assert "object-src 'none'" in response.headers["Content-Security-Policy"]
    assert "no-store" not in client.get("/static/css/app.css").headers.get("Cache-Control", "")


def test_hsts_in_production(app_factory) -> None:
    production = app_factory(APP_ENV="production")
    response = production.test_client().get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
