"""The audit recording contract: one function every state change calls, in its own transaction.

`record()` adds the entry to the caller's session, so the entry commits or rolls back with the
change it describes: no change without its entry, no entry for a change that did not happen.
The viewer, the hash chain and alerts come later (they read what this writes).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy.orm import Session

from governance import context
from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome

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
    entry = AuditLog(
        actor_id=ctx.actor_id,
        actor_name=ctx.actor_name,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        outcome=AuditOutcome(outcome),
        ip=ctx.ip,
        user_agent=(ctx.user_agent or None) and ctx.user_agent[:512],
        request_id=ctx.request_id,
        details=_jsonable(payload),
    )
    session.add(entry)
    session.flush()
    return entry
