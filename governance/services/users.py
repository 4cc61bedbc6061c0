"""Admin operations on accounts, shared by the admin pages and the `flask users` CLI.

Each change is audited with before/after in the caller's transaction (flush, never commit). A role
change, a deactivation and "sign out everywhere" end the user's live sessions, so the change holds
on every worker from the user's next request. The last active admin can be neither demoted nor
deactivated: the installation would have nobody left to manage it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.models.identity import Role, User
from governance.services import audit, identity, mfa, sessions
from governance.services.identity import IdentityError

ADMIN_ROLE = "admin"
LAST_ADMIN_MESSAGE = "The last active admin cannot be demoted or deactivated."


class LastAdminError(IdentityError):
    """Refused: the change would leave no active admin."""

    def __init__(self) -> None:
        super().__init__("role", LAST_ADMIN_MESSAGE)


def snapshot(user: User) -> dict[str, Any]:
    """The fields admin operations change, for the audit log's before/after."""
    return {
        "role": user.role.name if user.role is not None else None,
        "is_active": bool(user.is_active),
        "mfa_enabled": user.mfa_enabled_at is not None,
    }


def _is_active_admin(user: User) -> bool:
    return bool(user.is_active) and user.deleted_at is None and user.role is not None and user.role.name == ADMIN_ROLE


def _guard_last_admin(session: Session, user: User) -> None:
    """Refuse when `user` is the only active admin. The active admins' rows are locked first, so two
    admins demoting each other at the same moment cannot both succeed."""
    if not _is_active_admin(user):
        return
    admin_ids = session.scalars(
        select(User.id).join(Role, Role.id == User.role_id)
        .where(Role.name == ADMIN_ROLE, User.is_active.is_(True), User.deleted_at.is_(None))
        .with_for_update(of=User)
    ).all()
    if set(admin_ids) <= {user.id}:
        raise LastAdminError()


def _details(actor_id: uuid.UUID | None, **extra: Any) -> dict[str, Any]:
    details = dict(extra)
    if actor_id is not None:
        details["requested_by"] = str(actor_id)
    return details


def create_user_by_admin(session: Session, *, email: str, name: str, role_name: str, password: str,
                         actor_id: uuid.UUID | None = None) -> User:
    """A new active account; the password policy applies (IdentityError names the field)."""
    return identity.create_user(session, email=email, name=name, role_name=role_name, password=password)


def set_role(session: Session, user: User, role_name: str, *, actor_id: uuid.UUID | None = None) -> bool:
    """Move the user to another role; False when it already had it. Ends the user's sessions."""
    role = identity.get_role(session, role_name)
    if role.id == user.role_id:
        return False
    if role.name != ADMIN_ROLE:
        _guard_last_admin(session, user)
    before = snapshot(user)
    user.role = role
    session.flush()
    ended = sessions.revoke_all_for_user(session, user.id, "role_changed")
    audit.record(session, "user.role_change", object_type="user", object_id=user.id, before=before,
                 after=snapshot(user), details=_details(actor_id, sessions_revoked=ended))
    return True


def deactivate(session: Session, user: User, *, actor_id: uuid.UUID | None = None) -> bool:
    """Block sign-in and end every session; False when already inactive."""
    if not user.is_active:
        return False
    _guard_last_admin(session, user)
    before = snapshot(user)
    user.is_active = False
    session.flush()
    ended = sessions.revoke_all_for_user(session, user.id, "deactivated")
    audit.record(session, "user.deactivate", object_type="user", object_id=user.id, before=before,
                 after=snapshot(user), details=_details(actor_id, sessions_revoked=ended))
    return True


def reactivate(session: Session, user: User, *, actor_id: uuid.UUID | None = None) -> bool:
    if user.is_active:
        return False
    before = snapshot(user)
    user.is_active = True
    session.flush()
    audit.record(session, "user.reactivate", object_type="user", object_id=user.id, before=before,
                 after=snapshot(user), details=_details(actor_id))
    return True


def sign_out_everywhere(session: Session, user: User, *, actor_id: uuid.UUID | None = None) -> int:
    """End every live session of the user; returns how many."""
    before = snapshot(user)
    ended = sessions.revoke_all_for_user(session, user.id, "signed_out_everywhere")
    audit.record(session, "user.sign_out_everywhere", object_type="user", object_id=user.id,
                 before=before, after=snapshot(user), details=_details(actor_id, sessions_revoked=ended))
    return ended


def reset_mfa(session: Session, user: User, *, actor_id: uuid.UUID | None = None) -> None:
    """Remove the user's second factor (lost device) and end their sessions: they enrol again at
    their next sign-in where MFA is required."""
    before = snapshot(user)
    mfa.reset(session, user)
    ended = sessions.revoke_all_for_user(session, user.id, "mfa_reset")
    audit.record(session, "user.mfa_reset", object_type="user", object_id=user.id, before=before,
                 after=snapshot(user), details=_details(actor_id, sessions_revoked=ended))
