"""The audit recording contract: one function every state change calls, in its own transaction.

`record()` adds the entry to the caller's session, so the entry commits or rolls back with the
change it describes: no change without its entry, no entry for a change that did not happen.
The viewer, the hash chain and alerts come later (they read what this writes).

Personal data is sealed on write (docs/erasure.md): when the actor is a user, actor_name holds a
pseudonym ("user:<8 hex>"), ip and user_agent are NULL and details["sealed"] carries them encrypted
under the actor's person key; the e-mail and name of a user an entry is about are sealed under that
user's key. System actors (jobs, the CLI, anonymous requests) stay plain. Read entries through
personal_data.reveal.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance import context
from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.services import personal_data

# Keys whose values never enter the log, at any depth of `details` (secrets, passwords, tokens).
REDACTED_KEYS = frozenset({
    "password", "password_hash", "new_password", "current_password", "secret", "secret_key",
    "token", "access_token", "refresh_token", "api_key", "totp_secret", "mfa_secret",
    "recovery_codes", "csrf_token", "authorization", "cookie", "session",
})
REDACTED = "[redacted]"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if str(k).lower() in REDACTED_KEYS else _jsonable(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _user_object(session: Session, object_type: str, object_id: Any, details: dict[str, Any]) -> Any:
    """An entry about a user named only by e-mail (a refused sign-in) is about that account when
    one has the address: it gets the account's id, so the address is sealed under its key."""
    email = details.get("email")
    if object_type != "user" or object_id is not None or not isinstance(email, str) or not email:
        return object_id
    from governance.models.identity import User

    return session.scalar(select(User.id).where(func.lower(User.email) == email.strip().lower(),
                                                User.deleted_at.is_(None)).limit(1)) or None


def record(
    session: Session,
    action: str,
    *,
    object_type: str,
    object_id: Any = None,
    outcome: AuditOutcome | str = AuditOutcome.SUCCESS,
    details: Mapping[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    ctx: context.ActionContext | None = None,
) -> AuditLog:
    """Add one audit entry to `session` (flushed, not committed) and return it.

    action: dotted verb such as "framework.create" or "auth.login"; object_type/object_id: what it
    acted on; before/after: the changed fields (secrets are redacted); ctx: who and from where
    (defaults to the current ActionContext set by the web layer, a CLI command or a job).
    """
    ctx = ctx or context.current()
    payload: dict[str, Any] = dict(details or {})
    if before is not None:
        payload["before"] = before
    if after is not None:
        payload["after"] = after
    actor_name, ip = ctx.actor_name, ctx.ip
    user_agent = (ctx.user_agent or None) and ctx.user_agent[:512]
    sealed = _jsonable(payload)
    object_id = _user_object(session, object_type, object_id, sealed)
    # Personal data is sealed per person (governance.services.personal_data, docs/erasure.md): the
    # chain then hashes ciphertext, and erasure destroys the key instead of editing the entry.
    subject = personal_data.subject_of(object_type, object_id, sealed)
    if subject is not None and personal_data.has_personal_keys(sealed):
        sealed = personal_data.seal_subject_fields(session, subject, sealed)
    if ctx.actor_id is not None:
        token = personal_data.sealed_actor(session, ctx.actor_id, actor_name, ip, user_agent)
        if token is not None:
            sealed[personal_data.SEALED_KEY] = token
        actor_name, ip, user_agent = personal_data.pseudonym(ctx.actor_id), None, None
    entry = AuditLog(
        actor_id=ctx.actor_id,
        actor_name=actor_name,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        outcome=AuditOutcome(outcome),
        ip=ip,
        user_agent=user_agent,
        request_id=ctx.request_id,
        details=sealed,
    )
    session.add(entry)
    session.flush()
    return entry
