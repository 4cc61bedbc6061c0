"""Users and their credentials. Password hashing is Argon2id (argon2-cffi's defaults)."""

from __future__ import annotations

import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance.models.enums import AuditOutcome
from governance.models.identity import Role, User
from governance.services import audit

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a failed login takes the same time either way.
_DUMMY_HASH = _hasher.hash(uuid.uuid4().hex)


class IdentityError(ValueError):
    """Input refused; `field` names the form field the message belongs beside."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise IdentityError("password", f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise IdentityError("password", f"Use at most {MAX_PASSWORD_LENGTH} characters.")
    return _hasher.hash(password)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_user_by_email(session: Session, email: str) -> User | None:
    stmt = select(User).where(func.lower(User.email) == normalise_email(email))
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


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with these credentials, or None; the attempt is audited either way."""
    user = find_user_by_email(session, email)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        ok = user is not None and user.is_active
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        audit.record(session, "auth.login", object_type="user",
                     object_id=user.id if user else None, outcome=AuditOutcome.DENIED,
                     details={"email": normalise_email(email)})
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = func.now()
    audit.record(session, "auth.login", object_type="user", object_id=user.id)
    return user
