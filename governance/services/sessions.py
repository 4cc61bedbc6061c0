"""Server-side sessions: the browser holds a random token, PostgreSQL holds its SHA-256 and state.

A session is valid while not revoked, before expires_at (absolute lifetime from sign-in) and
within the idle timeout of last_seen_at. Validity is judged against the database clock, the one
clock every worker shares. Revoking is one UPDATE, so it takes effect on the very next request
whichever worker serves it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from governance.models.identity import User, UserSession

# last_seen_at is written at most this often per session: not a write on every request.
TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class Lifetimes:
    idle_minutes: int = 30
    max_hours: int = 8

    @classmethod
    def from_settings(cls, settings: object) -> Lifetimes:
        return cls(idle_minutes=getattr(settings, "session_idle_minutes", 30),
                   max_hours=getattr(settings, "session_max_hours", 8))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start(session: Session, user: User, lifetimes: Lifetimes, *, ip: str | None = None,
          user_agent: str | None = None, mfa_verified: bool = False) -> tuple[str, UserSession]:
    """A new session for `user`: returns the token for the cookie (never stored) and the row."""
    token = new_token()
    row = UserSession(
        user_id=user.id,
        token_hash=token_hash(token),
        expires_at=func.now() + timedelta(hours=lifetimes.max_hours),
        mfa_verified_at=func.now() if mfa_verified else None,
        ip=ip,
        user_agent=(user_agent or None) and user_agent[:512],
    )
    session.add(row)
    session.flush()
    return token, row


def load(session: Session, token: str, lifetimes: Lifetimes) -> UserSession | None:
    """The live session for this token, with its user and role (one statement), or None.

    Moves last_seen_at when older than TOUCH_INTERVAL (left dirty in the session: the caller
    commits it, or discards it with the rest of a failed request)."""
    if not token or len(token) > 128:
        return None
    found = session.execute(
        select(UserSession, func.now()).where(UserSession.token_hash == token_hash(token))
    ).first()
    if found is None:
        return None
    row, now = found
    if not is_live(row, now, lifetimes):
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
    return row


def is_live(row: UserSession, now: datetime, lifetimes: Lifetimes) -> bool:
    user = row.user
    return (
        row.revoked_at is None
        and now < row.expires_at
        and now < row.last_seen_at + timedelta(minutes=lifetimes.idle_minutes)
        and user is not None
        and user.is_active
        and user.deleted_at is None
    )


def revoke(session: Session, session_id: uuid.UUID, reason: str) -> bool:
    result = session.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason=reason[:64])
        .execution_options(synchronize_session=False)
    )
    _expire_loaded_sessions(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _expire_loaded_sessions(session: Session) -> None:
    """Rows already loaded in this unit of work re-read revoked_at after a bulk UPDATE."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, UserSession):
            session.expire(obj)


def revoke_token(session: Session, token: str, reason: str) -> bool:
    """End the session this token names, if any (e.g. the one a browser had before signing in again)."""
    result = session.execute(
        update(UserSession)
        .where(UserSession.token_hash == token_hash(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason=reason[:64])
        .execution_options(synchronize_session=False)
    )
    _expire_loaded_sessions(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def revoke_all_for_user(session: Session, user_id: uuid.UUID, reason: str) -> int:
    """End every live session of the user (deactivation, role or password change, "sign out
    everywhere"); returns how many were ended. Effective on each one's next request."""
    result = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None),
               UserSession.expires_at > func.now())
        .values(revoked_at=func.now(), revoked_reason=reason[:64])
        .execution_options(synchronize_session=False)
    )
    _expire_loaded_sessions(session)
    return int(result.rowcount)  # type: ignore[attr-defined]


def mark_mfa_verified(session: Session, row: UserSession) -> None:
    row.mfa_verified_at = func.now()
    session.flush()


def live_sessions(session: Session, user_id: uuid.UUID) -> list[UserSession]:
    """The user's sessions that are not revoked and not past their absolute lifetime."""
    return list(session.scalars(
        select(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None),
                                  UserSession.expires_at > func.now())
        .order_by(UserSession.created_at.desc())
    ))
