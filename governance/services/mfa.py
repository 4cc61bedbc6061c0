"""TOTP second factor (RFC 6238, pyotp) and one-time recovery codes.

Enrolment: `begin_enrolment` stores a new secret (mfa_enabled_at stays NULL until confirmed), the
user scans the QR code, `confirm_enrolment` checks a code, sets mfa_enabled_at and returns ten
recovery codes, shown once and stored only as Argon2id hashes.

Replay: a code is accepted for the current 30-second step and one either side (valid_window=1),
and a step once used is refused for that user afterwards. The last used step is read from the
audit log (the successful verification records its step number, which is not a secret), so it is
shared by every worker without a column of its own.
"""

from __future__ import annotations

import hmac
import io
import secrets
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.models.identity import RecoveryCode, User
from governance.services import audit

if TYPE_CHECKING:
    from governance.models.identity import UserSession

ISSUER = "AI Governance"
RECOVERY_CODE_COUNT = 10
VALID_WINDOW = 1
STEP_SECONDS = 30
VERIFY_ACTION = "auth.mfa.verify"
# Recovery codes carry 50 random bits: a light Argon2id suffices and keeps checking ten quick.
_code_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or typed from paper


def required_for(user: User, required_roles: tuple[str, ...] | list[str]) -> bool:
    """Whether this user must pass a second factor: enrolled, or in a role that requires it."""
    return user.mfa_enabled_at is not None or (user.role is not None and user.role.name in required_roles)


def is_enrolled(user: User) -> bool:
    return user.mfa_enabled_at is not None and bool(user.mfa_secret)


def begin_enrolment(session: Session, user: User) -> str:
    """The (pending) secret for the user to scan: kept across reloads until confirmed."""
    if is_enrolled(user):
        raise ValueError("MFA is already enabled for this user")
    if not user.mfa_secret:
        user.mfa_secret = pyotp.random_base32()
        session.flush()
    return user.mfa_secret


def provisioning_uri(user: User) -> str:
    assert user.mfa_secret
    return pyotp.TOTP(user.mfa_secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The QR code as an inline <svg> element (no script, no external request)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=False, svgns=True,
                                    title="QR code for your authenticator app", nl=False)
    return out.getvalue().decode("utf-8")


def _normalise_totp(code: str) -> str:
    return "".join(code.split())


def _matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    code = _normalise_totp(code)
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if at is None else at
    for offset in range(-VALID_WINDOW, VALID_WINDOW + 1):
        moment = now + offset * STEP_SECONDS
        if hmac.compare_digest(totp.at(moment), code):
            return int(moment) // STEP_SECONDS
    return None


def _last_used_step(session: Session, user: User) -> int | None:
    step = session.scalar(
        select(func.max(AuditLog.details["step"].as_integer()))
        .where(AuditLog.action.in_((VERIFY_ACTION, "auth.mfa.enrol")),
               AuditLog.object_type == "user", AuditLog.object_id == str(user.id),
               AuditLog.outcome == AuditOutcome.SUCCESS,
               AuditLog.created_at > func.now() - timedelta(minutes=10))
    )
    return int(step) if step is not None else None


def check_totp(session: Session, user: User, code: str, *, at: float | None = None) -> int | None:
    """The time step the code belongs to when it is valid and not used before, else None."""
    if not user.mfa_secret:
        return None
    step = _matching_step(user.mfa_secret, code, at)
    if step is None:
        return None
    last = _last_used_step(session, user)
    if last is not None and step <= last:
        return None
    return step


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _normalise_recovery(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def replace_recovery_codes(session: Session, user: User) -> list[str]:
    """Ten new one-time codes (the old ones stop working); returned in clear once, stored hashed."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_code_hasher.hash(_normalise_recovery(c)))
                    for c in codes)
    session.flush()
    return codes


def confirm_enrolment(session: Session, user: User, code: str, *, at: float | None = None) -> list[str] | None:
    """Turn MFA on when `code` matches the pending secret; the recovery codes, or None (audited)."""
    step = None if is_enrolled(user) or not user.mfa_secret else _matching_step(user.mfa_secret, code, at)
    if step is None:
        audit.record(session, "auth.mfa.enrol", object_type="user", object_id=user.id,
                     outcome=AuditOutcome.DENIED, details={"reason": "wrong code"})
        return None
    user.mfa_enabled_at = func.now()
    codes = replace_recovery_codes(session, user)
    audit.record(session, "auth.mfa.enrol", object_type="user", object_id=user.id,
                 details={"step": step, "recovery_codes_issued": len(codes)})
    return codes


def use_recovery_code(session: Session, user: User, code: str) -> bool:
    """Spend one unused recovery code matching `code`; False when none does."""
    normalised = _normalise_recovery(code)
    if len(normalised) != 10:
        return False
    unused = session.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        .with_for_update()
    ).all()
    for row in unused:
        try:
            _code_hasher.verify(row.code_hash, normalised)
        except (VerificationError, InvalidHashError):
            continue
        row.used_at = func.now()
        session.flush()
        return True
    return False


def remaining_recovery_codes(session: Session, user: User) -> int:
    return int(session.scalar(select(func.count()).select_from(RecoveryCode)
                              .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0)


def verify(session: Session, user: User, code: str, user_session: UserSession | None = None, *,
           at: float | None = None) -> str | None:
    """Check a TOTP code or a recovery code for a signed-in-by-password session.

    Returns "totp" or "recovery_code" on success (audited, session marked verified), None on failure
    (audited as denied). Never records the code itself."""
    step = check_totp(session, user, code, at=at)
    method = "totp" if step is not None else None
    if method is None and use_recovery_code(session, user, code):
        method = "recovery_code"
    if method is None:
        audit.record(session, VERIFY_ACTION, object_type="user", object_id=user.id,
                     outcome=AuditOutcome.DENIED, details={"reason": "wrong code"})
        return None
    details: dict[str, object] = {"method": method}
    if step is not None:
        details["step"] = step
    if method == "recovery_code":
        details["recovery_codes_left"] = remaining_recovery_codes(session, user)
    if user_session is not None:
        user_session.mfa_verified_at = func.now()
    audit.record(session, VERIFY_ACTION, object_type="user", object_id=user.id, details=details)
    if method == "recovery_code":
        audit.record(session, "auth.mfa.recovery_code_used", object_type="user", object_id=user.id,
                     details={"recovery_codes_left": details["recovery_codes_left"]})
    return method


def reset(session: Session, user: User) -> None:
    """Turn MFA off for the user (lost device): secret, enabled_at and recovery codes go. The
    caller audits it (an admin action) and decides whether to revoke the user's sessions."""
    session.flush()
    # A statement, not attribute assignment: a stale in-memory copy (None already) would write nothing.
    session.execute(update(User).where(User.id == user.id).values(mfa_secret=None, mfa_enabled_at=None)
                    .execution_options(synchronize_session=False))
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.expire(user, ["mfa_secret", "mfa_enabled_at"])
