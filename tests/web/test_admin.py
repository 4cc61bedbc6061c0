"""Admin console: search, create, inline role change, deactivate / reactivate, reset MFA, sign out
everywhere; each audited with before/after; the last active admin is protected; CSRF on htmx POSTs."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.models.identity import User
from governance.services.users import LAST_ADMIN_MESSAGE
from tests.conftest import TEST_PASSWORD, IsolatedClient

HX = {"HX-Request": "true"}


def _token(client, csrf_token, path="/admin/users"):
    return csrf_token(client.get(path).get_data(as_text=True))


def _entries(db_session, action, object_id):
    return db_session.scalars(select(AuditLog).where(AuditLog.action == action,
                                                     AuditLog.object_id == str(object_id))).all()


def _signed_in_client(app, csrf_token, user):
    other = IsolatedClient(app, app.response_class, use_cookies=True)
    token = csrf_token(other.get("/login").get_data(as_text=True))
    response = other.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token})
    assert response.status_code == 303
    assert other.get("/").status_code == 200
    return other


def test_admin_lists_and_searches_users(client, login_as, make_user) -> None:
    admin = login_as("admin")
    engineer = make_user("engineer", email="grace.hopper@example.test")
    page = client.get("/admin/users")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert admin.email in html and engineer.email in html
    assert page.headers["Cache-Control"] == "no-store"

    fragment = client.get("/admin/users?q=hopper", headers=HX)
    body = fragment.get_data(as_text=True)
    assert body.strip().startswith('<tbody id="user-rows"')
    assert engineer.email in body and admin.email not in body
    assert "No users match." in client.get("/admin/users?q=zzz-nobody", headers=HX).get_data(as_text=True)


def test_admin_creates_a_user(client, login_as, csrf_token, db_session) -> None:
    login_as("admin")
    token = _token(client, csrf_token, "/admin/users/new")
    response = client.post("/admin/users/new", data={
        "name": "Ada Lovelace", "email": "Ada@Example.test", "role": "engineer",
        "password": "analytical engine notes", "csrf_token": token})
    assert response.status_code == 303
    user = db_session.scalars(select(User).where(User.email == "ada@example.test")).one()
    assert user.role.name == "engineer" and user.is_active
    [entry] = _entries(db_session, "user.create", user.id)
    assert entry.details["after"]["role"] == "engineer"
    assert "analytical" not in repr(entry.details)


def test_create_refuses_a_duplicate_email_beside_the_field(client, login_as, csrf_token, make_user) -> None:
    login_as("admin")
    existing = make_user("auditor")
    token = _token(client, csrf_token, "/admin/users/new")
    response = client.post("/admin/users/new", data={
        "name": "Twin", "email": existing.email, "role": "auditor",
        "password": "analytical engine notes", "csrf_token": token})
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)


def test_inline_role_change_swaps_the_row_is_audited_and_ends_the_users_sessions(
    app, client, login_as, make_user, csrf_token, db_session
) -> None:
    login_as("admin")
    engineer = make_user("engineer")
    engineer_browser = _signed_in_client(app, csrf_token, engineer)
    token = _token(client, csrf_token)

    response = client.post(f"/admin/users/{engineer.id}/role", data={"role": "auditor"},
                           headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    row = response.get_data(as_text=True)
    assert row.strip().startswith(f'<tr id="user-{engineer.id}"')
    assert '<option value="auditor" selected>' in row
    assert "Role changed to auditor." in row

    db_session.expire_all()
    assert db_session.get(User, engineer.id).role.name == "auditor"
    [entry] = _entries(db_session, "user.role_change", engineer.id)
    assert entry.details["before"]["role"] == "engineer" and entry.details["after"]["role"] == "auditor"
    assert entry.details["sessions_revoked"] >= 1
    assert engineer_browser.get("/").status_code == 302  # signed out on the next request


def test_role_change_without_htmx_redirects_back_with_a_flash(client, login_as, make_user, csrf_token) -> None:
    login_as("admin")
    engineer = make_user("engineer")
    token = _token(client, csrf_token)
    response = client.post(f"/admin/users/{engineer.id}/role", data={"role": "auditor", "csrf_token": token})
    assert response.status_code == 303
    assert "Role changed to auditor." in client.get(response.headers["Location"]).get_data(as_text=True)


def test_an_unknown_role_is_refused(client, login_as, make_user, csrf_token, db_session) -> None:
    login_as("admin")
    engineer = make_user("engineer")
    token = _token(client, csrf_token)
    response = client.post(f"/admin/users/{engineer.id}/role", data={"role": "superuser"},
                           headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 422
    db_session.expire_all()
    assert db_session.get(User, engineer.id).role.name == "engineer"


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(client, login_as, csrf_token, db_session) -> None:
    admin = login_as("admin")
    token = _token(client, csrf_token)
    demote = client.post(f"/admin/users/{admin.id}/role", data={"role": "engineer"},
                         headers={**HX, "X-CSRFToken": token})
    assert demote.status_code == 422
    assert LAST_ADMIN_MESSAGE in demote.get_data(as_text=True)
    deactivate = client.post(f"/admin/users/{admin.id}/deactivate", headers={**HX, "X-CSRFToken": token})
    assert deactivate.status_code == 422
    assert LAST_ADMIN_MESSAGE in deactivate.get_data(as_text=True)
    db_session.expire_all()
    fresh = db_session.get(User, admin.id)
    assert fresh.role.name == "admin" and fresh.is_active
    assert _entries(db_session, "user.role_change", admin.id) == []


def test_with_a_second_admin_one_can_be_demoted(client, login_as, make_user, csrf_token, db_session) -> None:
    login_as("admin")
    other = make_user("admin")
    token = _token(client, csrf_token)
    response = client.post(f"/admin/users/{other.id}/role", data={"role": "compliance_officer"},
                           headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    db_session.expire_all()
    assert db_session.get(User, other.id).role.name == "compliance_officer"


def test_deactivate_and_reactivate(app, client, login_as, make_user, csrf_token, db_session) -> None:
    login_as("admin")
    auditor = make_user("auditor")
    auditor_browser = _signed_in_client(app, csrf_token, auditor)
    token = _token(client, csrf_token)

    response = client.post(f"/admin/users/{auditor.id}/deactivate", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200 and "Deactivated" in response.get_data(as_text=True)
    assert auditor_browser.get("/").status_code == 302
    db_session.expire_all()
    assert db_session.get(User, auditor.id).is_active is False
    [entry] = _entries(db_session, "user.deactivate", auditor.id)
    assert entry.details["before"]["is_active"] is True and entry.details["after"]["is_active"] is False

    response = client.post(f"/admin/users/{auditor.id}/reactivate", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200 and "Reactivated." in response.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(User, auditor.id).is_active is True
    assert len(_entries(db_session, "user.reactivate", auditor.id)) == 1


def test_reset_mfa_and_sign_out_everywhere(app, client, login_as, make_user, csrf_token, db_session) -> None:
    login_as("admin")
    engineer = make_user("engineer")
    engineer.mfa_secret = "JBSWY3DPEHPK3PXP"
    engineer.mfa_enabled_at = datetime.now(UTC)
    db_session.commit()
    assert "Reset MFA" in client.get("/admin/users").get_data(as_text=True)
    token = _token(client, csrf_token)

    response = client.post(f"/admin/users/{engineer.id}/reset-mfa", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    db_session.expire_all()
    fresh = db_session.get(User, engineer.id)
    assert fresh.mfa_secret is None and fresh.mfa_enabled_at is None
    [entry] = _entries(db_session, "user.mfa_reset", engineer.id)
    assert entry.details["before"]["mfa_enabled"] is True and entry.details["after"]["mfa_enabled"] is False
    assert "JBSWY3DPEHPK3PXP" not in repr(entry.details)

    engineer_browser = _signed_in_client(app, csrf_token, engineer)
    response = client.post(f"/admin/users/{engineer.id}/sign-out", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    assert engineer_browser.get("/").status_code == 302
    [entry] = _entries(db_session, "user.sign_out_everywhere", engineer.id)
    assert entry.details["sessions_revoked"] >= 1


def test_an_htmx_post_without_the_csrf_token_gets_400_and_changes_nothing(
    client, login_as, make_user, db_session
) -> None:
    login_as("admin")
    engineer = make_user("engineer")
    for path, data in ((f"/admin/users/{engineer.id}/role", {"role": "auditor"}),
                       (f"/admin/users/{engineer.id}/deactivate", {}),
                       ("/admin/users/new", {"name": "X", "email": "x@example.test", "role": "admin",
                                             "password": "analytical engine notes"})):
        response = client.post(path, data=data, headers=HX)
        assert response.status_code == 400, path
    db_session.expire_all()
    fresh = db_session.get(User, engineer.id)
    assert fresh.role.name == "engineer" and fresh.is_active
    assert db_session.scalars(select(User).where(User.email == "x@example.test")).first() is None


def test_other_roles_are_refused_and_the_refusal_is_audited(client, login_as, make_user, csrf_token,
                                                            db_session) -> None:
    auditor = login_as("auditor")
    engineer = make_user("engineer")
    html = client.get("/").get_data(as_text=True)
    assert ">Admin<" not in html  # not offered ...
    token = csrf_token(html)
    assert client.get("/admin/users").status_code == 403  # ... and not reachable either
    response = client.post(f"/admin/users/{engineer.id}/role", data={"role": "admin"},
                           headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 403
    db_session.expire_all()
    assert db_session.get(User, engineer.id).role.name == "engineer"
    denied = db_session.scalars(select(AuditLog).where(AuditLog.action == "access.denied",
                                                       AuditLog.actor_id == auditor.id)).all()
    assert {(e.details["endpoint"], e.details["method"]) for e in denied} == {
        ("admin.users", "GET"), ("admin.change_role", "POST")}
    assert all(e.outcome == AuditOutcome.DENIED and e.details["resource"] == "users"
               and e.details["action"] == "manage" for e in denied)


def test_admin_sees_the_admin_link(client, login_as) -> None:
    login_as("admin")
    assert ">Admin</a>" in client.get("/").get_data(as_text=True)
