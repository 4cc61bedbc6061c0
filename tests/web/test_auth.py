from sqlalchemy import select

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.services import personal_data
from tests.conftest import TEST_PASSWORD


def _login(client, csrf_token, email, password, next_url=""):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token,
                                       "next": next_url})


def _audit(db_session, action, outcome):
    return db_session.scalars(select(AuditLog).where(AuditLog.action == action,
                                                     AuditLog.outcome == outcome)).all()


def test_login_with_the_right_password_signs_in_and_is_audited(client, csrf_token, make_user, db_session) -> None:
    user = make_user("engineer")
    response = _login(client, csrf_token, user.email.upper(), TEST_PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    [entry] = [e for e in _audit(db_session, "auth.login", AuditOutcome.SUCCESS) if e.object_id == str(user.id)]
    assert entry.request_id
    assert str(entry.ip) == "127.0.0.1"


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(client, csrf_token, make_user,
                                                                   db_session) -> None:
    user = make_user("auditor")
    wrong = _login(client, csrf_token, user.email, "not-the-password")
    unknown = _login(client, csrf_token, "nobody@example.test", "not-the-password")
    assert wrong.status_code == unknown.status_code == 422
    assert "E-mail or password is not right." in wrong.get_data(as_text=True)
    assert "E-mail or password is not right." in unknown.get_data(as_text=True)
    denied = _audit(db_session, "auth.login", AuditOutcome.DENIED)
    # An account's address is sealed under its person key (docs/erasure.md); read as the audit page
    # does. An address no account has stays as typed.
    shown = personal_data.reveal(db_session, denied)
    assert {s.details["email"] for s in shown} >= {user.email, "nobody@example.test"}
    assert user.email not in {e.details["email"] for e in denied}
    assert all("not-the-password" not in repr(e.details) for e in denied)


def test_an_empty_form_is_refused_with_errors_beside_the_fields(client, csrf_token) -> None:
    response = _login(client, csrf_token, "", "")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Enter your e-mail address." in body and "Enter your password." in body


def test_login_without_csrf_token_is_refused(client, make_user) -> None:
    user = make_user("admin")
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 400


def test_next_is_followed_only_within_the_site(client, csrf_token, make_user) -> None:
    user = make_user("admin")
    assert _login(client, csrf_token, user.email, TEST_PASSWORD, "/frameworks").headers["Location"] == "/frameworks"
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    for hostile in ("https://evil.example/", "//evil.example/", "javascript:alert(1)"):
        response = _login(client, csrf_token, user.email, TEST_PASSWORD, hostile)
        assert response.headers["Location"] == "/", hostile


def test_logout_ends_the_session_and_is_audited(client, csrf_token, login_as, db_session) -> None:
    user = login_as("compliance_officer")
    token = csrf_token(client.get("/").get_data(as_text=True))
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert client.get("/").status_code == 302
    assert [e for e in _audit(db_session, "auth.logout", AuditOutcome.SUCCESS) if e.object_id == str(user.id)]


def test_responses_carry_a_request_id(client) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "abc12345-trace"})
    assert response.headers["X-Request-ID"] == "abc12345-trace"
    generated = client.get("/healthz", headers={"X-Request-ID": "<script>bad id</script>"})
    assert generated.headers["X-Request-ID"] != "<script>bad id</script>"
    assert len(generated.headers["X-Request-ID"]) == 32


# --- server-side sessions ------------------------------------------------------------------------

from datetime import timedelta  # noqa: E402

from flask import Flask, session  # noqa: E402
from sqlalchemy import func, update  # noqa: E402

import config  # noqa: E402
from governance.models.identity import UserSession  # noqa: E402
from governance.services import sessions  # noqa: E402


def _row(db_session, sid):
    db_session.expire_all()  # what the requests committed, not this session's cached copy
    return db_session.scalars(select(UserSession).where(UserSession.token_hash == sessions.token_hash(sid))).one()


def test_the_cookie_carries_only_a_session_id_and_login_makes_a_new_one(client, sign_in, make_user, session_sid,
                                                                         csrf_token, db_session) -> None:
    user = make_user("engineer")
    with client.session_transaction() as fixed:
        fixed["sid"] = "an-id-an-attacker-planted"
    assert sign_in(user.email).status_code == 303
    first = session_sid()
    assert first and first != "an-id-an-attacker-planted"
    with client.session_transaction() as cookie:
        assert set(cookie.keys()) <= {"sid", "csrf_token", "_flashes"}
    row = _row(db_session, first)
    assert row.user_id == user.id and str(row.ip) == "127.0.0.1"

    assert sign_in(user.email).status_code == 303  # signing in again: another id
    second = session_sid()
    assert second != first
    assert client.get("/").status_code == 200
    assert _row(db_session, first).revoked_reason == "replaced"
    with client.session_transaction() as cookie:
        cookie["sid"] = first  # the earlier id is no way back in
    assert client.get("/").status_code == 302
    assert session_sid() is None


def test_logout_revokes_the_server_session(client, login_as, session_sid, csrf_token, db_session) -> None:
    login_as("auditor")
    sid = session_sid()
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    assert session_sid() is None
    row = _row(db_session, sid)
    assert row.revoked_at is not None and row.revoked_reason == "logout"
    with client.session_transaction() as cookie:
        cookie["sid"] = sid  # replaying the old cookie does not sign anyone in
    assert client.get("/").status_code == 302


def test_revocation_takes_effect_on_the_next_request(client, login_as, db_session) -> None:
    user = login_as("engineer")
    assert client.get("/").status_code == 200
    assert sessions.revoke_all_for_user(db_session, user.id, "signed_out_everywhere") == 1
    db_session.commit()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_deactivation_takes_effect_on_the_next_request(client, login_as, db_session) -> None:
    user = login_as("engineer")
    user.is_active = False
    db_session.commit()
    assert client.get("/").status_code == 302


def test_an_idle_session_ends_and_its_id_is_dropped(client, login_as, session_sid, db_session) -> None:
    login_as("engineer")
    sid = session_sid()
    db_session.execute(update(UserSession).where(UserSession.token_hash == sessions.token_hash(sid))
                       .values(last_seen_at=func.now() - timedelta(minutes=31)))
    db_session.commit()
    assert client.get("/").status_code == 302
    assert session_sid() is None


def test_idle_timeout_follows_the_setting(client, login_as, session_sid, db_session, override_settings) -> None:
    override_settings(session_idle_minutes=5)
    login_as("engineer")
    db_session.execute(update(UserSession).where(UserSession.token_hash == sessions.token_hash(session_sid()))
                       .values(last_seen_at=func.now() - timedelta(minutes=6)))
    db_session.commit()
    assert client.get("/").status_code == 302


def test_a_session_past_its_absolute_lifetime_ends(client, login_as, session_sid, db_session,
                                                   override_settings) -> None:
    override_settings(session_max_hours=2)
    login_as("engineer")
    row = _row(db_session, session_sid())
    db_session.refresh(row)
    assert row.expires_at - row.created_at == timedelta(hours=2)
    row.expires_at = func.now() - timedelta(seconds=1)
    db_session.commit()
    assert client.get("/").status_code == 302


def _cookie_header(settings: config.Settings) -> str:
    app = Flask(__name__)
    app.config.update(config.flask_config(settings))

    @app.get("/set")
    def set_cookie() -> str:
        session["sid"] = "x"
        return "ok"

    return app.test_client().get("/set", base_url="https://governance.example").headers["Set-Cookie"]


def test_production_cookies_are_host_prefixed_secure_httponly_lax() -> None:
    settings = config.Settings(app_env="production", secret_key="k" * 40)
    flask_config = config.flask_config(settings)
    assert flask_config["SESSION_COOKIE_NAME"] == "__Host-session"
    assert flask_config["SESSION_COOKIE_SECURE"] is True
    assert flask_config["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=settings.session_max_hours)
    header = _cookie_header(settings)
    assert header.startswith("__Host-session=")
    for flag in ("Secure", "HttpOnly", "Path=/", "SameSite=Lax"):
        assert flag in header, flag
    assert "Domain" not in header


def test_development_cookies_are_plain_session_but_httponly_lax() -> None:
    header = _cookie_header(config.Settings(app_env="development", secret_key="k" * 40))
    assert header.startswith("session=") and "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header


# --- password change --------------------------------------------------------------------------

def _change(client, csrf_token, current, new, confirm=None):
    token = csrf_token(client.get("/account/password").get_data(as_text=True))
    return client.post("/account/password", data={"current_password": current, "new_password": new,
                                                  "confirm_password": new if confirm is None else confirm,
                                                  "csrf_token": token})


def test_changing_the_password_ends_other_sessions_and_keeps_this_one(app, client, login_as, csrf_token,
                                                                      session_sid, db_session, sign_in) -> None:
    from tests.conftest import IsolatedClient

    user = login_as("engineer")
    other = IsolatedClient(app, app.response_class, use_cookies=True)
    page = other.get("/login")
    other.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                               "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert other.get("/").status_code == 200
    before = session_sid()

    response = _change(client, csrf_token, TEST_PASSWORD, "a brand new passphrase for otters")
    assert response.status_code == 303
    assert session_sid() != before
    assert client.get("/").status_code == 200
    assert other.get("/").status_code == 302
    [entry] = [e for e in _audit(db_session, "auth.password.change", AuditOutcome.SUCCESS)
               if e.object_id == str(user.id)]
    assert entry.details["sessions_ended"] == 2
    assert "otters" not in repr(entry.details)

    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    assert sign_in(user.email, TEST_PASSWORD).status_code == 422
    assert sign_in(user.email, "a brand new passphrase for otters").status_code == 303


def test_password_change_errors_sit_beside_their_fields(client, login_as, csrf_token, db_session) -> None:
    user = login_as("engineer")
    wrong = _change(client, csrf_token, "not my password", "a brand new passphrase")
    assert wrong.status_code == 422 and "That is not your current password." in wrong.get_data(as_text=True)
    assert _audit(db_session, "auth.password.change", AuditOutcome.DENIED)
    common = _change(client, csrf_token, TEST_PASSWORD, "Password123")
    assert common.status_code == 422 and "too common" in common.get_data(as_text=True)
    short = _change(client, csrf_token, TEST_PASSWORD, "short")
    assert short.status_code == 422 and "Use 8 to 256 characters." in short.get_data(as_text=True)
    differ = _change(client, csrf_token, TEST_PASSWORD, "a brand new passphrase", "something else")
    assert differ.status_code == 422 and "The two new passwords differ." in differ.get_data(as_text=True)
    db_session.refresh(user)
    assert identity_verify(user.password_hash, TEST_PASSWORD)


def identity_verify(password_hash, password):
    from governance.services import passwords

    return passwords.verify(password_hash, password)


def test_inactive_accounts_get_the_generic_answer(client, make_user, sign_in, db_session) -> None:
    user = make_user("engineer")
    user.is_active = False
    db_session.commit()
    response = sign_in(user.email)
    assert response.status_code == 422 and "E-mail or password is not right." in response.get_data(as_text=True)
    [entry] = [e for e in _audit(db_session, "auth.login", AuditOutcome.DENIED) if e.object_id == str(user.id)]
    assert entry.details["reason"] == "inactive"


def test_a_session_lives_in_postgresql_so_every_worker_sees_it_and_its_end(client, login_as, app_factory,
                                                                            db_session) -> None:
    from tests.conftest import IsolatedClient

    user = login_as("engineer")
    other_worker = app_factory()  # another app instance: nothing shared with the first but the database
    other = IsolatedClient(other_worker, other_worker.response_class, use_cookies=True)
    cookie = client.get_cookie("session")
    other.set_cookie("session", cookie.value)
    assert other.get("/").status_code == 200
    sessions.revoke_all_for_user(db_session, user.id, "signed_out_everywhere")
    db_session.commit()
    assert other.get("/").status_code == 302
    assert client.get("/").status_code == 302
