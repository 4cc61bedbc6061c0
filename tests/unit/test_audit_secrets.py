"""No password, secret or token ever reaches audit_logs, through the real flows (user creation by an
admin and by the CLI, sign-in right and wrong, password change right and wrong, MFA enrolment and
verification) and through record() itself at any depth of details."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pyotp
from sqlalchemy import select, text
from sqlalchemy.orm import Session, scoped_session

from governance.models.audit import AuditLog
from governance.models.identity import User
from governance.services import audit

DBSession = scoped_session[Session]


def _audit_text(db_session: DBSession, after_seq: int = 0) -> str:
    """Every column of every entry after seq `after_seq`, as PostgreSQL prints the rows."""
    return str(db_session.execute(text("SELECT coalesce(string_agg(a::text, E'\\n'), '') FROM audit_logs a "
                                       "WHERE seq > :after"), {"after": after_seq}).scalar_one())


def _last_seq(db_session: DBSession) -> int:
    return int(db_session.execute(text("SELECT coalesce(max(seq), 0) FROM audit_logs")).scalar_one())


def _post(client: Any, csrf_token: Any, url: str, **data: str) -> Any:
    token = csrf_token(client.get(url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def _passphrase(label: str) -> str:
    return f"{label} {secrets.token_hex(6)} orbit lantern"


def test_record_redacts_secret_keys_at_any_depth(db_session: DBSession) -> None:
    start = _last_seq(db_session)
    values = {name: secrets.token_hex(8) for name in ("password", "token", "api_key", "totp", "cookie", "codes")}
    entry = audit.record(
        db_session(), "test.redaction", object_type="test",
        details={"outer": {"Password": values["password"], "items": [{"api_key": values["api_key"]},
                                                                     ({"refresh_token": values["token"]},)]},
                 "mfa_secret": values["totp"], "Cookie": values["cookie"]},
        before={"recovery_codes": [values["codes"]]}, after={"nested": [{"secret": "x" * 20}]},
    )
    db_session.flush()
    logged = _audit_text(db_session, start)
    for value in [*values.values(), "x" * 20]:
        assert value not in logged
    assert entry.details["outer"]["Password"] == audit.REDACTED
    assert entry.details["outer"]["items"][1][0]["refresh_token"] == audit.REDACTED
    assert entry.details["before"]["recovery_codes"] == audit.REDACTED


def test_no_password_secret_or_token_in_any_entry_of_the_account_flows(
    app: Any, client: Any, db_session: DBSession, login_as: Any, sign_in: Any, csrf_token: Any,
    session_sid: Any,
) -> None:
    leaked: list[str] = []
    start = _last_seq(db_session)

    # An admin creates an account with an initial password.
    admin = login_as("admin")
    leaked.append(session_sid() or "")
    initial = _passphrase("initial")
    email = f"new-{secrets.token_hex(4)}@example.test"
    created = _post(client, csrf_token, "/admin/users/new", name="New Person", email=email, role="engineer",
                    password=initial)
    assert created.status_code == 303, created.get_data(as_text=True)
    _post(client, csrf_token, "/logout")

    # The CLI creates one too, with the password on stdin.
    cli_password = _passphrase("cli")
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--email", f"cli-{secrets.token_hex(4)}@example.test", "--role", "auditor"],
        input=cli_password + "\n")
    assert result.exit_code == 0, result.output

    # A wrong password, then the right one.
    wrong = _passphrase("wrong")
    assert sign_in(email, wrong).status_code == 422
    assert sign_in(email, initial).status_code == 303
    leaked.append(session_sid() or "")

    # A refused and an accepted password change.
    bad_current, changed = _passphrase("bad-current"), _passphrase("changed")
    refused = _post(client, csrf_token, "/account/password", current_password=bad_current,
                    new_password=changed, confirm_password=changed)
    assert refused.status_code == 422
    accepted = _post(client, csrf_token, "/account/password", current_password=initial,
                     new_password=changed, confirm_password=changed)
    assert accepted.status_code == 303
    leaked.append(session_sid() or "")

    # MFA enrolment: the secret, the code typed and the recovery codes shown.
    page = client.get("/account/mfa/setup")
    assert page.status_code == 200
    user = db_session.scalars(select(User).where(User.email == email)).one()
    db_session.refresh(user)
    assert user.mfa_secret
    totp = pyotp.TOTP(user.mfa_secret)
    code = totp.now()
    enrolled = client.post("/account/mfa/setup",
                           data={"code": code, "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert enrolled.status_code == 200, enrolled.get_data(as_text=True)
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", enrolled.get_data(as_text=True))
    assert codes

    # Signing in again with the second factor.
    _post(client, csrf_token, "/logout")
    assert sign_in(email, changed).status_code == 303
    later_code = totp.at(time.time() + 30)
    verified = _post(client, csrf_token, "/login/mfa", code=later_code)
    assert verified.status_code == 303, verified.get_data(as_text=True)
    leaked.append(session_sid() or "")

    db_session.refresh(user)
    actions = set(db_session.scalars(select(AuditLog.action).where(AuditLog.object_id == str(user.id))).all())
    assert {"user.create", "auth.login", "auth.password.change", "auth.mfa.enrol"} <= actions, actions

    logged = _audit_text(db_session, start)
    secrets_seen = [initial, cli_password, wrong, bad_current, changed, user.mfa_secret, code, later_code,
                    user.password_hash, admin.password_hash, *codes, *[sid for sid in leaked if sid]]
    for value in secrets_seen:
        assert value not in logged, f"{value!r} appears in audit_logs"
    # Passphrases have spaces: not even their words in sequence.
    for value in (initial, cli_password, wrong, bad_current, changed):
        assert value.split()[1] not in logged
