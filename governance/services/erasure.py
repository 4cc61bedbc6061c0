"""GDPR erasure (Article 17) of one user, with the audit chain still verifiable (docs/erasure.md).

Workflow: ``request`` (an admin or compliance officer names the person and why) -> ``approve`` or
``reject`` by an admin other than the requester and the person -> ``execute`` once, after approval,
in one transaction: the account pseudonymised, its sessions, sign-in attempts, recovery codes and
notifications deleted, the e-mail address replaced wherever else it was copied (every text and JSON
column of every table but audit_logs), and the person key destroyed, which makes the personal fields
sealed in audit entries unreadable (governance.services.personal_data) without changing an entry.
The receipt says per table what was done and how many rows, and what could not be erased and why;
its SHA-256 is kept beside it. Every step is audited; those entries carry ids, never the person's
name or address (the reason and comments are sealed under the person's key).

Backups taken before the erasure still hold the person's data and key until they expire, so each
execution is also written to a ledger outside the database (``erasures/<request id>.json`` in the
backup bucket); ``reapply_after_restore`` replays it on a restored database.

Services flush, never commit; ``reapply_after_restore`` owns its session.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, create_engine, delete, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from governance import context
from governance.models.audit import AuditLog
from governance.models.enums import ErasureStatus
from governance.models.identity import LoginAttempt, RecoveryCode, User, UserSession
from governance.models.lifecycle import ErasureRequest, PersonKey
from governance.models.notifications import Notification
from governance.services import audit, personal_data, users
from governance.storage import Storage, StorageError

RECEIPT_FORMAT = "gov.erasure.receipt.v1"
LEDGER_FORMAT = "gov.erasure.ledger.v1"
LEDGER_PREFIX = "erasures/"
ERASED_NAME = "Erased user"
# Not an Argon2 hash: passwords.verify refuses it for any password.
UNUSABLE_PASSWORD = "!erased"  # noqa: S105
OPEN = (ErasureStatus.REQUESTED, ErasureStatus.APPROVED)
REASON_MAX = 2000
COMMENT_MAX = 2000
REAPPLY_ACTOR = "system:erasure_reapply"
# Never rewritten: append-only and hash-chained (the person key is destroyed instead).
SWEEP_SKIP = frozenset({"audit_logs"})
SWEEP_TYPES = ("text", "varchar", "bpchar", "json", "jsonb")


class ErasureError(Exception):
    """A refusal; `field` names the form field (or "decision", "execute") it is shown beside."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def erased_email(user_id: uuid.UUID) -> str:
    return f"erased-{user_id}@erased.invalid"


def _user(session: Session, user_id: uuid.UUID | None, *, lock: bool = False) -> User | None:
    if user_id is None:
        return None
    stmt = select(User).where(User.id == user_id).execution_options(include_deleted=True)
    if lock:
        stmt = stmt.with_for_update(of=User)
    return session.scalars(stmt).one_or_none()


def _now(session: Session) -> datetime:
    """The transaction's time (what func.now() writes), as a value for the receipt."""
    moment = session.scalar(select(func.now()))
    assert isinstance(moment, datetime)
    return moment


def find_subject(session: Session, email: str) -> User | None:
    """The live account with this address (case-insensitive), or None."""
    wanted = email.strip().lower()
    return session.scalars(select(User).where(func.lower(User.email) == wanted)).first() if wanted else None


def _is_admin(user: User | None) -> bool:
    return (user is not None and bool(user.is_active) and user.deleted_at is None and user.role is not None
            and user.role.name == users.ADMIN_ROLE)


def _guard_last_admin(session: Session, subject: User, field: str) -> None:
    try:
        users._guard_last_admin(session, subject)
    except users.LastAdminError as exc:
        raise ErasureError(field, "This is the last active admin: make someone else an admin first.") from exc


def _sealed(session: Session, subject_id: uuid.UUID, value: str | None) -> str | None:
    """Free text about the person (a reason, a comment) as it goes into the audit log."""
    if not value:
        return None
    return personal_data.seal(session, subject_id, {"v": value}) or personal_data.ERASED


def get(session: Session, request_id: uuid.UUID, *, lock: bool = False) -> ErasureRequest | None:
    stmt = select(ErasureRequest).where(ErasureRequest.id == request_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def _get_or_fail(session: Session, request_id: uuid.UUID) -> ErasureRequest:
    found = get(session, request_id, lock=True)
    if found is None:
        raise ErasureError("request", "There is no such erasure request.")
    return found


# --- the workflow -------------------------------------------------------------------------------------


def request(session: Session, subject_id: uuid.UUID | None, reason: str, requested_by: uuid.UUID) -> ErasureRequest:
    """Open a request to erase `subject_id`. ErasureError("email" | "reason", ...) when refused: no
    such user, already erased, yourself, one already open, the last active admin, no reason."""
    reason = (reason or "").strip()
    # The person's row is locked first: two requests for one person queue, the second sees the first.
    subject = _user(session, subject_id, lock=True)
    if subject is None:
        raise ErasureError("email", "No user has this e-mail address.")
    if subject.deleted_at is not None:
        raise ErasureError("email", "This account was already erased or deleted.")
    if subject.id == requested_by:
        raise ErasureError("email", "You cannot ask for your own erasure here: another administrator or "
                                    "compliance officer files it for you.")
    if not reason:
        raise ErasureError("reason", "Say why (e.g. the person's request and its date).")
    if len(reason) > REASON_MAX:
        raise ErasureError("reason", f"Keep the reason under {REASON_MAX} characters.")
    already = session.scalar(select(ErasureRequest.id).where(ErasureRequest.subject_id == subject.id,
                                                             ErasureRequest.status.in_(OPEN)))
    if already is not None:
        raise ErasureError("email", "An erasure request for this person is already open.")
    _guard_last_admin(session, subject, "email")
    found = ErasureRequest(subject_id=subject.id, requested_by_id=requested_by, reason=reason,
                           status=ErasureStatus.REQUESTED)
    session.add(found)
    session.flush()
    audit.record(session, "erasure.request", object_type="erasure_request", object_id=found.id,
                 details={"subject_id": str(subject.id), "reason": _sealed(session, subject.id, reason)})
    return found


def _decide(session: Session, request_id: uuid.UUID, decided_by: uuid.UUID, comment: str | None,
            status: ErasureStatus) -> ErasureRequest:
    found = _get_or_fail(session, request_id)
    if found.status != ErasureStatus.REQUESTED:
        raise ErasureError("decision", f"This request is {found.status.value}: it can no longer be decided.")
    decider = _user(session, decided_by)
    if not _is_admin(decider):
        raise ErasureError("decision", "Only an administrator decides erasure requests.")
    if decided_by == found.requested_by_id:
        raise ErasureError("decision", "You asked for this erasure: another administrator decides it.")
    if decided_by == found.subject_id:
        raise ErasureError("decision", "Nobody decides their own erasure.")
    comment = (comment or "").strip() or None
    if status == ErasureStatus.REJECTED and not comment:
        raise ErasureError("comment", "Say why the request is rejected.")
    if comment and len(comment) > COMMENT_MAX:
        raise ErasureError("comment", f"Keep the comment under {COMMENT_MAX} characters.")
    found.status, found.decided_by_id, found.decided_at = status, decided_by, func.now()
    found.decision_comment = comment
    session.flush()
    audit.record(session, "erasure.decide", object_type="erasure_request", object_id=found.id,
                 details={"subject_id": str(found.subject_id), "decision": status.value,
                          "comment": _sealed(session, found.subject_id, comment)})
    return found


def approve(session: Session, request_id: uuid.UUID, decided_by: uuid.UUID,
            comment: str | None = None) -> ErasureRequest:
    return _decide(session, request_id, decided_by, comment, ErasureStatus.APPROVED)


def reject(session: Session, request_id: uuid.UUID, decided_by: uuid.UUID, comment: str | None) -> ErasureRequest:
    return _decide(session, request_id, decided_by, comment, ErasureStatus.REJECTED)


def execute(session: Session, request_id: uuid.UUID, executed_by: uuid.UUID, *, settings: Any) -> ErasureRequest:
    """Carry out an approved request, once (see the module docstring). Writes the ledger object
    before returning: if the object store refuses, ErasureError and the caller rolls back (an
    erasure a restore could undo silently is not done)."""
    found = _get_or_fail(session, request_id)
    if found.status == ErasureStatus.EXECUTED:
        raise ErasureError("execute", "This erasure was already executed.")
    if found.status != ErasureStatus.APPROVED:
        raise ErasureError("execute", "Only an approved request can be executed.")
    if not _is_admin(_user(session, executed_by)):
        raise ErasureError("execute", "Only an administrator executes an erasure.")
    if executed_by == found.subject_id:
        raise ErasureError("execute", "Nobody executes their own erasure.")
    subject = _user(session, found.subject_id, lock=True)
    if subject is None:
        raise ErasureError("execute", "The person's account no longer exists.")
    _guard_last_admin(session, subject, "execute")
    now = _now(session)
    email = subject.email
    audit_counts = _audit_counts(session, subject.id, email)
    done = erase_subject(session, subject, now)
    receipt = _receipt(found, now, done, audit_counts, settings)
    found.status, found.executed_by_id, found.executed_at = ErasureStatus.EXECUTED, executed_by, now
    found.receipt, found.receipt_sha256 = receipt.data, receipt.sha256
    session.flush()
    ledger_key = write_ledger(settings, found)
    audit.record(session, "erasure.execute", object_type="erasure_request", object_id=found.id,
                 details={"subject_id": str(found.subject_id), "receipt_sha256": receipt.sha256,
                          "ledger": ledger_key,
                          "rows": {f"{t['table']}{'.' + t['column'] if t.get('column') else ''}": t["rows"]
                                   for t in done.tables}})
    return found


# --- what execution does ----------------------------------------------------------------------------------


@dataclass
class Erased:
    tables: list[dict[str, Any]]
    name_mentions: list[dict[str, Any]]
    blocked: list[dict[str, Any]]


def erase_subject(session: Session, subject: User, now: datetime) -> Erased:
    """Pseudonymise the person everywhere the database allows, destroy their key. Idempotent (a
    second run finds nothing more to do). Returns what was done, per table."""
    email, name, subject_id = subject.email, subject.name, subject.id
    tables: list[dict[str, Any]] = []

    def note(table: str, action: str, rows: int, **extra: Any) -> None:
        tables.append({"table": table, "action": action, "rows": rows, **extra})

    subject.email, subject.name = erased_email(subject_id), ERASED_NAME
    subject.password_hash, subject.mfa_secret, subject.mfa_enabled_at = UNUSABLE_PASSWORD, None, None
    subject.is_active, subject.last_login_at = False, None
    subject.deleted_at = subject.deleted_at or now
    session.flush()
    note("users", "pseudonymised: e-mail, name; password unusable; MFA secret removed; deactivated; deleted_at set", 1,
         fields=["email", "name", "password_hash", "mfa_secret", "mfa_enabled_at", "is_active", "last_login_at",
                 "deleted_at"])
    for model, where, table, action in (
        (RecoveryCode, RecoveryCode.user_id == subject_id, "recovery_codes", "deleted"),
        (UserSession, UserSession.user_id == subject_id, "user_sessions",
         "deleted (signed out; IP and user agent gone)"),
        (LoginAttempt, func.lower(LoginAttempt.email) == email.lower(), "login_attempts",
         "deleted (sign-in attempts with their e-mail address and IP)"),
        (Notification, Notification.user_id == subject_id, "notifications", "deleted (messages to them)"),
    ):
        result = session.execute(delete(model).where(where).execution_options(synchronize_session=False))
        note(table, action, int(result.rowcount))  # type: ignore[attr-defined]
    note("person_keys", "key destroyed: their sealed fields in audit entries are unreadable",
         _destroy_key(session, subject_id, now))
    # The requests about them are kept (accountability) without their name in the free text.
    name_re = _pattern(name.strip(), json_escaped=False)
    named = session.execute(
        update(ErasureRequest).where(ErasureRequest.subject_id == subject_id)
        .values(reason=func.regexp_replace(ErasureRequest.reason, name_re, ERASED_NAME, "gi"),
                decision_comment=func.regexp_replace(ErasureRequest.decision_comment, name_re, ERASED_NAME, "gi"))
        .execution_options(synchronize_session=False)) if len(name.strip()) >= 3 else None
    note("erasure_requests", "the person's name replaced in the reason and comment of the requests about them",
         int(named.rowcount) if named is not None else 0)  # type: ignore[attr-defined]
    swept = sweep_email(session, email, erased_email(subject_id))
    for table, column, rows in swept.changed:
        note(table, "e-mail address replaced by the pseudonym", rows, column=column)
    session.expire_all()
    return Erased(tables, count_mentions(session, name), swept.blocked)


def _destroy_key(session: Session, subject_id: uuid.UUID, now: datetime) -> int:
    result = session.execute(update(PersonKey).where(PersonKey.user_id == subject_id, PersonKey.key.is_not(None))
                             .values(key=None, destroyed_at=now).execution_options(synchronize_session=False))
    changed = int(result.rowcount)  # type: ignore[attr-defined]
    # No key yet: a destroyed one, so nothing is ever sealed for them again (personal_data.seal -> None).
    session.execute(text("INSERT INTO person_keys (user_id, key, destroyed_at) VALUES (:uid, NULL, :now) "
                         "ON CONFLICT (user_id) DO NOTHING"), {"uid": subject_id, "now": now})
    personal_data.forget_key(session, subject_id)
    return changed


@dataclass(frozen=True)
class _Column:
    table: str
    column: str
    q_table: str  # quoted identifiers
    q_column: str
    kind: str
    can_read: bool  # this connection's role may SELECT / UPDATE it (the app's service role may
    can_write: bool  # not write every table: those are reported, not skipped silently)

    @property
    def as_text(self) -> str:
        return f"{self.q_column}::text" if self.kind in ("json", "jsonb") else self.q_column


def _columns(session: Session) -> list[_Column]:
    """Every text and JSON column of the schema's tables (partitioned parents, not their
    partitions), audit_logs left out."""
    rows = session.execute(text(
        "SELECT c.relname, a.attname, quote_ident(c.relname), quote_ident(a.attname), t.typname, "
        "has_column_privilege(c.oid, a.attnum, 'SELECT'), has_column_privilege(c.oid, a.attnum, 'UPDATE') "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND a.attnum > 0 AND NOT a.attisdropped AND t.typname = ANY(:types) ORDER BY 1, 2"),
        {"types": list(SWEEP_TYPES)}).all()
    return [_Column(r[0], r[1], r[2], r[3], r[4], bool(r[5]), bool(r[5] and r[6]))
            for r in rows if r[0] not in SWEEP_SKIP]


def _pattern(value: str, *, json_escaped: bool) -> str:
    if json_escaped:
        value = json.dumps(value, ensure_ascii=False)[1:-1]
    # Python's re.escape puts a backslash only before punctuation, which PostgreSQL's regular
    # expressions read as the character itself.
    return re.escape(value)


@dataclass
class Sweep:
    changed: list[tuple[str, str, int]]  # (table, column, rows) where the address was replaced
    blocked: list[dict[str, Any]]  # columns holding it that this role may not change (or read)


def sweep_email(session: Session, email: str, replacement: str) -> Sweep:
    """Replace the address, case-insensitively, in every text and JSON column (one UPDATE per column:
    a full scan each, acceptable for a rare operation)."""
    done = Sweep([], [])
    for col in _columns(session):
        json_kind = col.kind in ("json", "jsonb")
        params = {"pattern": _pattern(email, json_escaped=json_kind), "replacement": replacement}
        if not col.can_write:
            rows = session.scalar(text(f"SELECT count(*) FROM {col.q_table} WHERE {col.as_text} ~* :pattern"),  # noqa: S608
                                  params) if col.can_read else None
            if rows is None or rows:
                done.blocked.append({"table": col.table, "column": col.column, "rows": rows})
            continue
        value = f"regexp_replace({col.as_text}, :pattern, :replacement, 'gi')" + (f"::{col.kind}" if json_kind else "")
        result = session.execute(
            text(f"UPDATE {col.q_table} SET {col.q_column} = {value} WHERE {col.as_text} ~* :pattern"),  # noqa: S608
            params)
        if result.rowcount:  # type: ignore[attr-defined]
            done.changed.append((col.table, col.column, int(result.rowcount)))  # type: ignore[attr-defined]
    return done


def count_mentions(session: Session, name: str) -> list[dict[str, Any]]:
    """Where the person's name still appears in free text (counted, not changed: a name can be an
    ordinary phrase elsewhere, e.g. "Compliance Officer"). The receipt lists the columns, not the name."""
    if len(name.strip()) < 3:
        return []
    found = []
    for col in _columns(session):
        if not col.can_read or (col.table, col.column) == ("users", "name"):
            continue  # other people of the same name
        rows = session.scalar(text(f"SELECT count(*) FROM {col.q_table} WHERE {col.as_text} ~* :pattern"),  # noqa: S608
                              {"pattern": _pattern(name.strip(), json_escaped=col.kind in ("json", "jsonb"))})
        if rows:
            found.append({"table": col.table, "column": col.column, "rows": int(rows)})
    return found


def _audit_counts(session: Session, subject_id: uuid.UUID, email: str) -> dict[str, int]:
    """Entries that name the person (indexed lookups only): sealed ones (made unreadable by the key's
    destruction) and older plaintext ones (written before sealing; append-only, so they stay)."""
    pseudonym = personal_data.pseudonym(subject_id)
    as_actor = session.execute(select(
        func.count().filter(AuditLog.actor_name == pseudonym),
        func.count().filter(AuditLog.actor_name != pseudonym),
    ).where(AuditLog.actor_id == subject_id)).one()
    about = AuditLog.details.cast(Text).ilike(f"%{_like(email)}%", escape="\\")
    as_object = session.execute(select(
        func.count().filter(~about), func.count().filter(about),
    ).where(AuditLog.object_type == "user", AuditLog.object_id == str(subject_id))).one()
    sign_ins = session.scalar(select(func.count()).where(
        AuditLog.action == "auth.login", AuditLog.object_id.is_(None),
        func.lower(AuditLog.details["email"].astext) == email.lower())) or 0
    return {"sealed_as_actor": int(as_actor[0]), "plain_as_actor": int(as_actor[1]),
            "about_them": int(as_object[0]), "plain_about_them": int(as_object[1]), "plain_sign_ins": int(sign_ins)}


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- the receipt --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    data: dict[str, Any]
    sha256: str


def receipt_bytes(data: dict[str, Any]) -> bytes:
    """The receipt's canonical JSON (what receipt_sha256 is taken over, and what the download sends)."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _receipt(found: ErasureRequest, now: datetime, done: Erased, counts: dict[str, int], settings: Any) -> Receipt:
    plain = counts["plain_as_actor"] + counts["plain_about_them"] + counts["plain_sign_ins"]
    tables = list(done.tables)
    tables.append({"table": "audit_logs", "action": "entries by or about them kept unchanged (the hash chain "
                   "holds); what of theirs was sealed in them (name, IP, user agent, e-mail, the request's "
                   "reason) is unreadable now that the key is destroyed",
                   "rows": counts["sealed_as_actor"] + counts["about_them"]})
    until = now + timedelta(days=int(settings.backup_retention_days))
    not_erased: list[dict[str, Any]] = [
        {"what": "audit_logs", "rows": plain,
         "why": "entries written before personal data was sealed keep the person's name, e-mail or IP in plain "
                "text; the log is append-only and hash-chained, so they cannot be changed without breaking the "
                "chain (break-glass procedure: docs/audit.md)"},
        {"what": "backups", "until": until.isoformat(),
         "why": "backups taken before the erasure hold the person's data and key until they expire "
                f"(BACKUP_RETENTION_DAYS = {settings.backup_retention_days}); a restore re-applies this erasure "
                f"from the ledger {LEDGER_PREFIX}{found.id}.json in bucket {settings.backup_bucket}"},
        {"what": "object store files",
         "why": "evidence files people uploaded and archived audit partitions are not searched; archived "
                "partitions hold the same sealed fields (unreadable now) and any older plaintext entries"},
    ]
    if done.blocked:
        not_erased.append({"what": "columns this connection may not change", "columns": done.blocked,
                           "why": "the database role that executed the erasure has no UPDATE (or SELECT) right on "
                                  "them; replace the address there as the tables' owner"})
    if done.name_mentions:
        not_erased.append({"what": "free text that mentions the person's name", "columns": done.name_mentions,
                           "why": "a name can be an ordinary phrase elsewhere: not changed automatically; review "
                                  "these columns by hand"})
    data = {
        "format": RECEIPT_FORMAT, "request_id": str(found.id), "subject_id": str(found.subject_id),
        "pseudonym": personal_data.pseudonym(found.subject_id),
        "requested_at": found.created_at.isoformat() if found.created_at else None,
        "decided_at": found.decided_at.isoformat() if isinstance(found.decided_at, datetime) else None,
        "executed_at": now.isoformat(), "tables": tables, "not_erased": not_erased,
        "audit_log_entries": counts,
    }
    return Receipt(data, hashlib.sha256(receipt_bytes(data)).hexdigest())


# --- the ledger outside the database, and restores --------------------------------------------------------------


def ledger_store(settings: Any) -> Storage:
    """The Storage of the backup bucket (created if missing), where the erasure ledger lives."""
    store = Storage(settings.s3_endpoint or "", settings.s3_access_key or "", settings.s3_secret_key or "",
                    bucket=settings.backup_bucket, secure=settings.s3_secure, region=settings.s3_region)
    store.ensure_bucket()
    return store


def write_ledger(settings: Any, found: ErasureRequest) -> str:
    key = f"{LEDGER_PREFIX}{found.id}.json"
    body = json.dumps({
        "format": LEDGER_FORMAT, "request_id": str(found.id), "subject_id": str(found.subject_id),
        "executed_at": found.executed_at.isoformat() if isinstance(found.executed_at, datetime) else None,
        "receipt_sha256": found.receipt_sha256,
    }, sort_keys=True).encode()
    try:
        ledger_store(settings).put(key, body, content_type="application/json")
    except StorageError as exc:
        raise ErasureError("execute", f"The erasure ledger could not be written ({exc}); nothing was erased.") from exc
    return key


def read_ledger(settings: Any) -> list[dict[str, Any]]:
    store = ledger_store(settings)
    entries = []
    for obj in store.list_objects(LEDGER_PREFIX):
        data = json.loads(b"".join(store.open(obj.key)))
        if data.get("format") == LEDGER_FORMAT:
            entries.append(data)
    return sorted(entries, key=lambda e: str(e.get("executed_at") or ""))


def reapply_after_restore(settings: Any, database_url: str) -> int:
    """Re-execute, on the database at `database_url` (e.g. just restored from an older backup), every
    erasure in the ledger whose person is there with a live key or their real e-mail: pseudonymise
    and destroy the key again, audited as erasure.reapply. Returns how many people it erased again."""
    ledger = read_ledger(settings)
    url = make_url(database_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, poolclass=NullPool)
    reapplied = 0
    try:
        with context.acting_as(context.ActionContext(actor_name=REAPPLY_ACTOR)), Session(engine) as session:
            for entry in ledger:
                subject_id = personal_data.as_uuid(entry.get("subject_id"))
                subject = _user(session, subject_id, lock=True)
                if subject is None or subject_id is None:
                    continue  # the backup predates the account
                live_key = session.scalar(select(func.count()).where(PersonKey.user_id == subject_id,
                                                                     PersonKey.key.is_not(None)))
                if subject.email == erased_email(subject_id) and not live_key:
                    continue
                now = _now(session)
                done = erase_subject(session, subject, now)
                _mark_executed(session, entry)
                audit.record(session, "erasure.reapply", object_type="erasure_request",
                             object_id=entry.get("request_id"),
                             details={"subject_id": str(subject_id), "executed_at": entry.get("executed_at"),
                                      "rows": {t["table"]: t["rows"] for t in done.tables}})
                reapplied += 1
            session.commit()
    finally:
        engine.dispose()
    return reapplied


def _mark_executed(session: Session, entry: dict[str, Any]) -> None:
    """A restored request that was approved but not yet executed then: executed, as the ledger says."""
    request_id = personal_data.as_uuid(entry.get("request_id"))
    found = get(session, request_id, lock=True) if request_id else None
    if found is None or found.status != ErasureStatus.APPROVED:
        return
    found.status = ErasureStatus.EXECUTED
    found.executed_at = datetime.fromisoformat(entry["executed_at"]) if entry.get("executed_at") else func.now()
    found.receipt = {"format": RECEIPT_FORMAT, "reapplied_from_ledger": True, "request_id": str(found.id),
                     "subject_id": str(found.subject_id), "original_receipt_sha256": entry.get("receipt_sha256")}
    found.receipt_sha256 = hashlib.sha256(receipt_bytes(found.receipt)).hexdigest()
    session.flush()


# --- reads for the pages and the CLI -----------------------------------------------------------------------------


def list_requests(session: Session, limit: int = 200) -> list[ErasureRequest]:
    return list(session.scalars(select(ErasureRequest).order_by(ErasureRequest.created_at.desc(),
                                                                ErasureRequest.id.desc()).limit(limit)))


def people(session: Session, requests: list[ErasureRequest]) -> dict[uuid.UUID, User]:
    """Everyone the requests name (erased people included), in one statement."""
    ids = {i for r in requests for i in (r.subject_id, r.requested_by_id, r.decided_by_id, r.executed_by_id) if i}
    if not ids:
        return {}
    rows = session.scalars(select(User).where(User.id.in_(ids)).execution_options(include_deleted=True))
    return {u.id: u for u in rows}
