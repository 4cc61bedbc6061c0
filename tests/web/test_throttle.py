"""Sign-in throttling: 5 failures in 15 minutes per account or per IP → a timed lockout, said plainly."""

from datetime import timedelta

from sqlalchemy import func, select, update

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.models.identity import LoginAttempt
from governance.services import personal_data
from tests.conftest import TEST_PASSWORD

LOCKED = "Too many failed sign-ins. Try again in 15 minutes."


def _from(ip):
    return {"environ_base": {"REMOTE_ADDR": ip}}


def _fail(sign_in, email, times, ip="127.0.0.1"):
    for _ in range(times):
        response = sign_in(email, "not the password", **_from(ip))
        assert response.status_code == 422


def _age_attempts(db_session, minutes, **where):
    db_session.execute(update(LoginAttempt).filter_by(**where)
                       .values(created_at=func.now() - timedelta(minutes=minutes)))
    db_session.commit()


def test_five_failures_lock_the_account_without_checking_the_password(sign_in, make_user, db_session) -> None:
    user = make_user("engineer")
    _fail(sign_in, user.email, 4)
    assert sign_in(user.email).status_code == 303  # 4 failures: still fine, and a success resets
    _fail(sign_in, user.email, 5)
    response = sign_in(user.email)  # the right password, refused unchecked
    assert response.status_code == 429
    body = response.get_data(as_text=True)
    assert LOCKED in body and "E-mail or password is not right." not in body
    assert response.headers["Retry-After"] == "900"
    locked = db_session.scalars(select(AuditLog).where(AuditLog.action == "auth.login",
                                                       AuditLog.outcome == AuditOutcome.DENIED)).all()
    # The account's address is sealed under its person key (docs/erasure.md): read as the audit page does.
    shown = personal_data.reveal(db_session, locked)
    assert all(user.email not in repr(e.details) for e in locked)
    reasons = [s.details.get("reason") for s in shown if s.details.get("email") == user.email]
    assert reasons.count("wrong credentials") == 9 and reasons.count("locked") == 1
    attempts = db_session.scalars(select(LoginAttempt).where(LoginAttempt.email == user.email)).all()
    assert len(attempts) == 10  # the refused one is audited, not counted (it would extend the lockout)
    assert all(TEST_PASSWORD not in repr(e.details) for e in locked)


def test_an_unknown_email_locks_the_same_way(sign_in) -> None:
    _fail(sign_in, "nobody@example.test", 5)
    response = sign_in("Nobody@Example.test", "anything else")
    assert response.status_code == 429 and LOCKED in response.get_data(as_text=True)


def test_the_account_lock_holds_from_every_ip(sign_in, make_user) -> None:
    user = make_user("engineer")
    for i in range(5):
        _fail(sign_in, user.email, 1, ip=f"10.0.0.{i + 1}")
    assert sign_in(user.email, **_from("10.9.9.9")).status_code == 429


def test_five_failures_from_one_ip_lock_that_ip_for_every_account(sign_in, make_user) -> None:
    user = make_user("engineer")
    for i in range(5):
        _fail(sign_in, f"guess{i}@example.test", 1, ip="192.0.2.10")
    response = sign_in(user.email, **_from("192.0.2.10"))
    assert response.status_code == 429 and LOCKED in response.get_data(as_text=True)
    assert sign_in(user.email, **_from("192.0.2.11")).status_code == 303  # another IP is not affected


def test_the_lockout_ends_after_its_time(sign_in, make_user, db_session) -> None:
    user = make_user("engineer")
    _fail(sign_in, user.email, 5)
    _age_attempts(db_session, 10, email=user.email)
    response = sign_in(user.email)
    assert response.status_code == 429
    assert "Try again in 5 minutes." in response.get_data(as_text=True)
    _age_attempts(db_session, 16, email=user.email)
    assert sign_in(user.email).status_code == 303


def test_failures_spread_wider_than_the_window_do_not_lock(sign_in, make_user, db_session) -> None:
    user = make_user("engineer")
    _fail(sign_in, user.email, 4)
    _age_attempts(db_session, 20, email=user.email)
    _fail(sign_in, user.email, 1)
    assert sign_in(user.email).status_code == 303


def test_limits_follow_the_settings(sign_in, make_user, override_settings) -> None:
    override_settings(login_max_failures=2, login_lockout_minutes=3)
    user = make_user("engineer")
    _fail(sign_in, user.email, 2)
    response = sign_in(user.email)
    assert response.status_code == 429 and "Try again in 3 minutes." in response.get_data(as_text=True)


def test_attempts_are_recorded_with_the_normalised_email(sign_in, make_user, db_session) -> None:
    user = make_user("engineer")
    sign_in("  " + user.email.upper(), "not the password")
    sign_in(user.email.upper())
    rows = db_session.scalars(select(LoginAttempt).where(LoginAttempt.email == user.email)
                              .order_by(LoginAttempt.succeeded)).all()
    assert [r.succeeded for r in rows] == [False, True]
    assert all(str(r.ip) == "127.0.0.1" for r in rows)
