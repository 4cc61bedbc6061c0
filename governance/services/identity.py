"""Users and their credentials: creation, sign-in (throttled, audited), password change.

Password policy and Argon2id hashing live in passwords.py; throttling in throttle.py; sessions in
sessions.py. Every sign-in success, failure and lockout is written to the audit log, never with
the password.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance.models.enums import AuditOutcome
from governance.models.identity import Role, User
from governance.services import audit, mfa, passwords, sessions, throttle

MIN_PASSWORD_LENGTH = passwords.MIN_LENGTH
MAX_PASSWORD_LENGTH = passwords.MAX_LENGTH
# The one answer to a failed sign-in, whether the e-mail is unknown, the password wrong or the
# account deactivated: no account enumeration.
GENERIC_LOGIN_ERROR = "E-mail or password is not right."


class IdentityError(ValueError):
    """Input refused; `field` names the form field the message belongs beside."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LoginResult:
    user: User | None = None
    lockout: throttle.Lockout | None = None
    # The password was right but a second factor (or enrolment in one) must follow.
    mfa_pending: bool = False

    @property
    def ok(self) -> bool:
        return self.user is not None


def hash_password(password: str, *, field: str = "password") -> str:
    try:
        return passwords.hash_password(password, field=field)
    except passwords.PasswordPolicyError as exc:
        raise IdentityError(exc.field, exc.message) from exc


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_user_by_email(session: Session, email: str) -> User | None:
    """The live (not soft-deleted) account with this e-mail, case-insensitively."""
    stmt = select(User).where(func.lower(User.email) == normalise_email(email), User.deleted_at.is_(None))
    return session.scalars(stmt).first()


def get_role(session: Session, name: str) -> Role:
    role = session.scalars(select(Role).where(Role.name == name)).first()
    if role is None:
        raise IdentityError("role", f"Unknown role {name!r}.")
    return role


def create_user(session: Session, *, email: str, name: str, role_name: str, password: str) -> User:
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise IdentityError("email", "Enter a valid e-mail address.")
    if find_user_by_email(session, email) is not None:
        raise IdentityError("email", "A user with this e-mail address already exists.")
    user = User(email=email, name=name.strip() or email, role=get_role(session, role_name),
                password_hash=hash_password(password), is_active=True)
    session.add(user)
    session.flush()
    audit.record(session, "user.create", object_type="user", object_id=user.id,
                 after={"email": email, "name": user.name, "role": role_name})
    return user


def attempt_login(session: Session, email: str, password: str, *, ip: str | None = None,
                  limits: throttle.Limits | None = None,
                  mfa_required_roles: tuple[str, ...] = ()) -> LoginResult:
    """Check a sign-in: throttled per e-mail and per IP, recorded, audited.

    A lockout refuses without looking at the password. A success that still needs a second factor
    is not counted as a success for throttling until that factor passes (otherwise a stolen
    password would reset the counter before every few guesses at the code)."""
    limits = limits or throttle.Limits()
    email_n = normalise_email(email)
    lock = throttle.lockout(session, email_n, ip, limits)
    if lock is not None:
        audit.record(session, "auth.login", object_type="user", outcome=AuditOutcome.DENIED,
                     details={"email": email_n, "reason": "locked", "scope": lock.scope})
        return LoginResult(lockout=lock)
    user = find_user_by_email(session, email_n)
    password_ok = passwords.verify(user.password_hash if user else None, password)
    if not password_ok or user is None or not user.is_active:
        throttle.record(session, email_n, ip, succeeded=False)
        reason = "inactive" if password_ok else "wrong credentials"
        audit.record(session, "auth.login", object_type="user", object_id=user.id if user else None,
                     outcome=AuditOutcome.DENIED, details={"email": email_n, "reason": reason})
        return LoginResult()
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.rehash(password)
    pending = mfa.required_for(user, mfa_required_roles)
    if not pending:
        throttle.record(session, email_n, ip, succeeded=True)
        user.last_login_at = func.now()
    audit.record(session, "auth.login", object_type="user", object_id=user.id,
                 details={"mfa": "pending"} if pending else None)
    return LoginResult(user=user, mfa_pending=pending)


def authenticate(session: Session, email: str, password: str, *, ip: str | None = None,
                 limits: throttle.Limits | None = None) -> User | None:
    """The active user with these credentials, or None (see attempt_login)."""
    return attempt_login(session, email, password, ip=ip, limits=limits).user


def complete_second_factor(session: Session, user: User, ip: str | None) -> None:
    """The second factor passed: the sign-in now counts as a success for throttling."""
    throttle.record(session, user.email, ip, succeeded=True)
    user.last_login_at = func.now()
    session.flush()


def change_password(session: Session, user: User, *, current_password: str, new_password: str,
                    ip: str | None = None, limits: throttle.Limits | None = None) -> int:
    """Replace the password after checking the current one; ends every session of the user
    (the caller starts a fresh one for the browser that made the change). Returns how many
    sessions were ended. IdentityError names the field at fault."""
    limits = limits or throttle.Limits()
    lock = throttle.lockout(session, user.email, ip, limits)
    if lock is not None:
        audit.record(session, "auth.password.change", object_type="user", object_id=user.id,
                     outcome=AuditOutcome.DENIED, details={"reason": "locked"})
        raise IdentityError("current_password", lock.message)
    if not passwords.verify(user.password_hash, current_password):
        throttle.record(session, user.email, ip, succeeded=False)
        audit.record(session, "auth.password.change", object_type="user", object_id=user.id,
                     outcome=AuditOutcome.DENIED, details={"reason": "wrong current password"})
        raise IdentityError("current_password", "That is not your current password.")
    if new_password == current_password:
        raise IdentityError("new_password", "Choose a password different from the current one.")
    user.password_hash = hash_password(new_password, field="new_password")
    ended = sessions.revoke_all_for_user(session, user.id, "password_change")
    audit.record(session, "auth.password.change", object_type="user", object_id=user.id,
                 details={"sessions_ended": ended})
    return ended
