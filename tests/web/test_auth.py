from sqlalchemy import select

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
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
    assert {e.details["email"] for e in denied} >= {user.email, "nobody@example.test"}
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
