"""TOTP MFA: forced enrolment for required roles, QR code, recovery codes, verification, replay."""

import re
import time

import pyotp
import pytest
from sqlalchemy import select

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.models.identity import RecoveryCode
from governance.services import mfa, sessions
from tests.conftest import TEST_PASSWORD


@pytest.fixture
def admin_mfa(override_settings):
    """The session app with MFA required for admins (the production default)."""
    return override_settings(mfa_required_roles=("admin",))


def _post(client, csrf_token, url, **data):
    token = csrf_token(client.get(url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def _audit(db_session, action, outcome=AuditOutcome.SUCCESS, user=None):
    rows = db_session.scalars(select(AuditLog).where(AuditLog.action == action, AuditLog.outcome == outcome)).all()
    return [r for r in rows if user is None or r.object_id == str(user.id)]


def _enrol(client, csrf_token, db_session, user):
    """Walk the enrolment page: returns (totp, recovery codes shown)."""
    page = client.get("/account/mfa/setup")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    db_session.refresh(user)
    secret = user.mfa_secret
    shown = re.search(r'<code id="mfa-secret">([^<]+)</code>', html).group(1)
    assert shown.replace(" ", "") == secret
    assert "<svg" in html and "QR code for your authenticator app" in html
    totp = pyotp.TOTP(secret)
    response = client.post("/account/mfa/setup", data={"code": totp.now(), "csrf_token": csrf_token(html)})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", response.get_data(as_text=True))
    return totp, codes


def _next_code(totp):
    """A valid code for a later time step than any used so far (replay protection refuses reuse)."""
    return totp.at(time.time() + 30)


def test_an_admin_must_enrol_before_reaching_anything(client, sign_in, make_user, csrf_token, db_session,
                                                      admin_mfa) -> None:
    admin = make_user("admin")
    response = sign_in(admin.email)
    assert response.status_code == 303 and response.headers["Location"] == "/account/mfa/setup"
    for path in ("/", "/frameworks", "/account/password"):
        blocked = client.get(path)
        assert blocked.status_code == 302 and blocked.headers["Location"] == "/account/mfa/setup", path

    # While the second factor is owed, the page offers only finishing it, or signing out.
    setup_page = client.get("/account/mfa/setup").get_data(as_text=True)
    assert 'href="/frameworks"' not in setup_page and 'href="/account/password"' not in setup_page
    assert 'action="/logout"' in setup_page

    wrong = _post(client, csrf_token, "/account/mfa/setup", code="000000")
    assert wrong.status_code == 422 and "That code is not right." in wrong.get_data(as_text=True)
    assert client.get("/").status_code == 302

    _totp, codes = _enrol(client, csrf_token, db_session, admin)
    assert len(codes) == 10 and len(set(codes)) == 10
    dashboard = client.get("/")
    assert dashboard.status_code == 200 and 'href="/frameworks"' in dashboard.get_data(as_text=True)
    db_session.refresh(admin)
    assert admin.mfa_enabled_at is not None
    stored = db_session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == admin.id)).all()
    assert len(stored) == 10 and all(r.code_hash.startswith("$argon2id$") for r in stored)
    assert not {r.code_hash for r in stored} & set(codes)
    [enrolled] = _audit(db_session, "auth.mfa.enrol", user=admin)
    assert admin.mfa_secret not in repr(enrolled.details) and not any(c in repr(enrolled.details) for c in codes)
    assert _audit(db_session, "auth.mfa.enrol", AuditOutcome.DENIED, user=admin)
    # The page now only says MFA is on: the secret is never shown again.
    again = client.get("/account/mfa/setup").get_data(as_text=True)
    assert admin.mfa_secret not in again and 'id="recovery-codes-left">10<' in again


def test_an_enrolled_user_passes_the_second_step_with_a_totp_code(client, sign_in, make_user, csrf_token,
                                                                  db_session, session_sid, admin_mfa) -> None:
    admin = make_user("admin")
    sign_in(admin.email)
    totp, _codes = _enrol(client, csrf_token, db_session, admin)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})

    response = sign_in(admin.email, next_url="/frameworks")
    assert response.status_code == 303 and response.headers["Location"] == "/login/mfa"
    pending_sid = session_sid()
    blocked = client.get("/")
    assert blocked.status_code == 302 and blocked.headers["Location"] == "/login/mfa"
    assert client.get("/account/mfa/setup").status_code == 200  # an MFA page: reachable, shows nothing secret

    assert _post(client, csrf_token, "/login/mfa", code="123456").status_code == 422
    code = _next_code(totp)
    ok = _post(client, csrf_token, "/login/mfa", code=code)
    assert ok.status_code == 303 and ok.headers["Location"] == "/frameworks"
    assert session_sid() != pending_sid  # a new session id once the second factor passed
    assert client.get("/").status_code == 200
    [verified] = _audit(db_session, "auth.mfa.verify", user=admin)
    assert verified.details["method"] == "totp" and code not in repr(verified.details)
    assert _audit(db_session, "auth.mfa.verify", AuditOutcome.DENIED, user=admin)

    # The same code (same time step) is refused in another sign-in: no replay.
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    sign_in(admin.email)
    replay = _post(client, csrf_token, "/login/mfa", code=code)
    assert replay.status_code == 422 and "used already" in replay.get_data(as_text=True)


def test_a_recovery_code_works_once(client, sign_in, make_user, csrf_token, db_session, admin_mfa) -> None:
    admin = make_user("admin")
    sign_in(admin.email)
    _totp, codes = _enrol(client, csrf_token, db_session, admin)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})

    sign_in(admin.email)
    used = _post(client, csrf_token, "/login/mfa", code=" " + codes[3].upper() + " ")
    assert used.status_code == 303
    assert "9 left" in client.get("/").get_data(as_text=True)
    assert _audit(db_session, "auth.mfa.recovery_code_used", user=admin)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})

    sign_in(admin.email)
    assert _post(client, csrf_token, "/login/mfa", code=codes[3]).status_code == 422
    assert _post(client, csrf_token, "/login/mfa", code=codes[4]).status_code == 303
    assert mfa.remaining_recovery_codes(db_session, admin) == 8


def test_wrong_codes_count_towards_the_lockout(client, sign_in, make_user, csrf_token, db_session,
                                               admin_mfa) -> None:
    admin = make_user("admin")
    sign_in(admin.email)
    totp, _ = _enrol(client, csrf_token, db_session, admin)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    sign_in(admin.email)
    for _ in range(5):
        assert _post(client, csrf_token, "/login/mfa", code="000000").status_code == 422
    locked = _post(client, csrf_token, "/login/mfa", code=_next_code(totp))
    assert locked.status_code == 429 and "Too many failed sign-ins." in locked.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_roles_without_the_requirement_sign_in_with_a_password(client, sign_in, make_user, admin_mfa) -> None:
    engineer = make_user("engineer")
    response = sign_in(engineer.email)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_anyone_who_enrolled_is_asked_for_the_code(client, sign_in, make_user, csrf_token, db_session,
                                                   admin_mfa) -> None:
    engineer = make_user("engineer")
    sign_in(engineer.email)
    _enrol(client, csrf_token, db_session, engineer)  # voluntary
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    assert sign_in(engineer.email).headers["Location"] == "/login/mfa"


def test_the_verify_page_is_only_for_a_pending_session(client, login_as) -> None:
    assert client.get("/login/mfa").headers["Location"] == "/login"
    login_as("engineer")
    assert client.get("/login/mfa").headers["Location"] == "/"


def test_reset_clears_the_secret_and_codes_and_the_user_enrols_again(client, sign_in, make_user, csrf_token,
                                                                     db_session, admin_mfa) -> None:
    admin = make_user("admin")
    sign_in(admin.email)
    _enrol(client, csrf_token, db_session, admin)
    mfa.reset(db_session, admin)
    sessions.revoke_all_for_user(db_session, admin.id, "mfa_reset")
    db_session.commit()
    assert admin.mfa_secret is None and admin.mfa_enabled_at is None
    assert mfa.remaining_recovery_codes(db_session, admin) == 0
    assert client.get("/").status_code == 302
    assert sign_in(admin.email, TEST_PASSWORD).headers["Location"] == "/account/mfa/setup"


def test_totp_accepts_one_step_either_side_and_never_a_step_twice(db_session, make_user) -> None:
    user = make_user("engineer")
    secret = mfa.begin_enrolment(db_session, user)
    totp = pyotp.TOTP(secret)
    now = time.time()
    assert mfa.confirm_enrolment(db_session, user, totp.at(now), at=now) is not None
    assert mfa.check_totp(db_session, user, totp.at(now - 90), at=now) is None  # too old
    assert mfa.check_totp(db_session, user, totp.at(now), at=now) is None  # the step used at enrolment
    assert mfa.verify(db_session, user, totp.at(now + 30), at=now) == "totp"
    assert mfa.verify(db_session, user, totp.at(now + 30), at=now) is None
    assert mfa.check_totp(db_session, user, "12345", at=now) is None
