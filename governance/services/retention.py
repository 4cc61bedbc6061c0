"""Retention per data class (docs/retention.md): what is past its retention goes to the cold bucket,
never what a legal hold covers.

- audit log: whole monthly partitions (audit_logs_pYYYY_MM) whose range ends before now minus
  RETENTION_AUDIT_MONTHS, oldest first and contiguous in the chain: the first one that must be kept
  stops the run, since archiving a later one would leave a hole in the chain. Never the default
  partition. Each is exported, verified and dropped by governance.services.audit_archive.
- evidence: live (not soft-deleted), not yet archived evidence whose newest revision is older than
  RETENTION_EVIDENCE_MONTHS: every revision's object version is copied server-side into the cold
  bucket, the copy's SHA-256 checked against the revision's, the rows pointed at the copy, then the
  original version deleted. Held evidence stays (directly, through its control or a control it is
  linked to, through the framework); evidence with a revision under object lock is skipped.
  Soft-deleted evidence is left where it is: a restore brings it back as it was.

plan() says what would happen and why; execute() does it (or, with dry_run, audits the plan only).
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from governance import context
from governance.models.evidence import Evidence, EvidenceRevision
from governance.services import audit, audit_archive, legal_holds
from governance.services.audit_archive import ArchiveError
from governance.services.partitions import AUDIT_TABLE, add_months, list_partitions
from governance.storage import Storage, StorageError

log = logging.getLogger(__name__)

PARTITION_RE = re.compile(rf"^{AUDIT_TABLE}_p(\d{{4}})_(\d{{2}})$")
HASH_CHUNK = 1024 * 1024
ARCHIVE, KEEP, SKIP = "archive", "keep", "skip"


def months_before(moment: datetime, months: int) -> datetime:
    """The same instant `months` calendar months earlier (the day clamped to the month's length)."""
    first = add_months(moment.date().replace(day=1), -months)
    following = add_months(first, 1)
    day = min(moment.day, (following - first).days)
    return moment.replace(year=first.year, month=first.month, day=day)


@dataclass
class PartitionItem:
    name: str
    range_start: datetime
    range_end: datetime
    action: str
    reason: str
    rows: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    hold_id: uuid.UUID | None = None


@dataclass
class EvidenceItem:
    evidence_id: uuid.UUID
    name: str
    newest_at: datetime
    revisions: int
    bucket: str
    action: str
    reason: str
    hold_id: uuid.UUID | None = None


@dataclass
class RetentionPlan:
    now: datetime
    audit_cutoff: datetime
    evidence_cutoff: datetime
    audit_months: int
    evidence_months: int
    cold_bucket: str
    partitions: list[PartitionItem] = field(default_factory=list)
    evidence: list[EvidenceItem] = field(default_factory=list)
    # True when the evidence list was cut at the limit asked for (a page shows the first ones).
    evidence_truncated: bool = False
    holds: dict[uuid.UUID, legal_holds.HoldView] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        def count(items: list[Any], action: str) -> int:
            return sum(1 for i in items if i.action == action)

        return {"partitions_to_archive": count(self.partitions, ARCHIVE),
                "partitions_kept": count(self.partitions, KEEP), "partitions_skipped": count(self.partitions, SKIP),
                "evidence_to_archive": count(self.evidence, ARCHIVE), "evidence_held": count(self.evidence, KEEP),
                "evidence_skipped": count(self.evidence, SKIP)}

    def hold_text(self, hold_id: uuid.UUID | None) -> str:
        view = self.holds.get(hold_id) if hold_id is not None else None
        return view.describe() if view is not None else f"legal hold {hold_id}"

    def lines(self) -> list[str]:
        out = [f"audit log: partitions ending before {self.audit_cutoff:%Y-%m-%d %H:%M} UTC "
               f"({self.audit_months} months)",
               *(f"  {p.action.upper():<8} {p.name} ({p.rows if p.rows is not None else '?'} rows): {p.reason}"
                 for p in self.partitions),
               f"evidence: newest revision before {self.evidence_cutoff:%Y-%m-%d %H:%M} UTC "
               f"({self.evidence_months} months), to bucket {self.cold_bucket}",
               *(f"  {e.action.upper():<8} {e.name} ({e.evidence_id}, {e.revisions} revision(s)): {e.reason}"
                 for e in self.evidence)]
        if not self.partitions:
            out.insert(1, "  nothing past its retention")
        if not self.evidence:
            out.append("  nothing past its retention")
        return out


def _month_of(name: str) -> date | None:
    match = PARTITION_RE.match(name)
    return date(int(match.group(1)), int(match.group(2)), 1) if match else None


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _plan_partitions(session: Session, plan: RetentionPlan) -> set[uuid.UUID]:
    """Fill plan.partitions; returns the ids of the holds that keep one."""
    holds: set[uuid.UUID] = set()
    months = sorted((month, name) for name in list_partitions(session, AUDIT_TABLE)
                    if (month := _month_of(name)) is not None)
    due = [(m, n) for m, n in months if _utc(add_months(m, 1)) <= plan.audit_cutoff]
    if not due:
        return holds
    live_min = session.execute(text(f"SELECT min(seq) FROM {AUDIT_TABLE}")).scalar()  # noqa: S608
    expected = None if live_min is None else int(live_min)
    blocked: str | None = None
    for month, name in due:
        start, end = _utc(month), _utc(add_months(month, 1))
        if blocked is not None:
            plan.partitions.append(PartitionItem(name, start, end, KEEP, f"an older partition is kept ({blocked}): "
                                                 "archiving this one would leave a hole in the chain"))
            continue
        month_rows = audit_archive.range_filter(start, end)
        count, first, last = session.execute(text(
            f"SELECT count(*), min(seq), max(seq) FROM {AUDIT_TABLE} WHERE {month_rows}")).one()  # noqa: S608
        item = PartitionItem(name, start, end, ARCHIVE, f"all its entries are older than {plan.audit_months} months",
                             int(count), first, last)
        held = audit_archive.hold_in(session, AUDIT_TABLE, month_rows)
        if held is not None:
            item.action, item.hold_id = KEEP, held[0]
            item.reason = f"holds entries about {held[1]} {held[2]}, under legal hold"
            holds.add(held[0])
        elif count and expected is not None and first != expected:
            where = session.execute(text(f"SELECT tableoid::regclass::text FROM {AUDIT_TABLE} WHERE seq = :s LIMIT 1"),  # noqa: S608
                                    {"s": expected}).scalar()
            item.action = SKIP
            item.reason = (f"the chain starts at seq {expected} in {where}, before this partition's first entry "
                           f"(seq {first}): archive in chain order only")
        elif count and last - first + 1 != count:
            item.action = SKIP
            item.reason = (f"its entries (seq {first}..{last}) interleave in chain order with a later month's: "
                           "it cannot be archived alone")
        if item.action != ARCHIVE:
            blocked = name
        elif count:
            expected = int(last) + 1
        plan.partitions.append(item)
    return holds


EVIDENCE_SQL = """
SELECT e.id, e.name, e.bucket, max(r.created_at) AS newest, count(r.id) AS revisions,
       max(r.locked_until) FILTER (WHERE r.locked_until > :now) AS locked_until
  FROM evidence e JOIN evidence_revisions r ON r.evidence_id = e.id
 WHERE e.archived_at IS NULL AND e.deleted_at IS NULL AND r.archived_at IS NULL
 GROUP BY e.id
HAVING max(r.created_at) < :cutoff
 ORDER BY max(r.created_at), e.id
"""


def _plan_evidence(session: Session, plan: RetentionPlan, limit: int | None) -> set[uuid.UUID]:
    sql = EVIDENCE_SQL + (" LIMIT :limit" if limit is not None else "")
    params: dict[str, Any] = {"now": plan.now, "cutoff": plan.evidence_cutoff}
    if limit is not None:
        params["limit"] = limit + 1
    rows = session.execute(text(sql), params).all()
    if limit is not None and len(rows) > limit:
        rows, plan.evidence_truncated = rows[:limit], True
    held = legal_holds.held_evidence_ids(session, [r[0] for r in rows])
    for evidence_id, name, bucket, newest, revisions, locked_until in rows:
        item = EvidenceItem(evidence_id, name, newest, int(revisions), bucket, ARCHIVE,
                            f"newest revision {newest:%Y-%m-%d}, older than {plan.evidence_months} months")
        if evidence_id in held:
            item.action, item.hold_id, item.reason = KEEP, held[evidence_id], "under legal hold"
        elif locked_until is not None:
            item.action, item.reason = SKIP, f"locked until {locked_until.astimezone(UTC):%Y-%m-%d} (object lock)"
        plan.evidence.append(item)
    return set(held.values())


def plan(session: Session, settings: Any, *, now: datetime | None = None,
         evidence_limit: int | None = None) -> RetentionPlan:
    """What retention would do now, and why (reads only; a bounded number of statements besides
    one per audit partition past the cutoff)."""
    moment = now or datetime.now(UTC)
    result = RetentionPlan(moment, months_before(moment, settings.retention_audit_months),
                           months_before(moment, settings.retention_evidence_months),
                           settings.retention_audit_months, settings.retention_evidence_months, settings.cold_bucket)
    hold_ids = _plan_partitions(session, result) | _plan_evidence(session, result, evidence_limit)
    result.holds = legal_holds.holds_by_id(session, hold_ids)
    items: list[PartitionItem | EvidenceItem] = [*result.partitions, *result.evidence]
    for item in items:
        if item.hold_id is not None:
            item.reason += f": {result.hold_text(item.hold_id)} (hold {item.hold_id})"
    return result


# --- execution ----------------------------------------------------------------------------------


@dataclass
class RetentionResult:
    plan: RetentionPlan
    dry_run: bool
    partitions: list[audit_archive.ArchivedPartition] = field(default_factory=list)
    evidence: list[uuid.UUID] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        if self.dry_run:
            return ["dry run: nothing changed", *self.plan.lines()]
        out = [f"archived partition {p.name}: {p.rows} rows, seq {p.first_seq}..{p.last_seq}, "
               f"{p.key} sha256 {p.sha256}" for p in self.partitions]
        out += [f"archived evidence {e}" for e in self.evidence]
        out += [f"ERROR {e}" for e in self.errors]
        return out or ["nothing to archive"]


def _cold_store(settings: Any) -> Storage:
    store = Storage.from_settings(settings, bucket=settings.cold_bucket)
    store.ensure_bucket(object_lock=True)
    return store


def _sha256(store: Storage, key: str, version_id: str | None, bucket: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in store.open(key, version_id, chunk_size=HASH_CHUNK, bucket=bucket):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def archive_evidence(session: Session, store: Storage, evidence_id: uuid.UUID, *, now: datetime,
                     cutoff: datetime) -> list[tuple[str, str, str | None]]:
    """Copy one evidence's revisions to the cold bucket and point the rows there (flushes and
    audits; the caller commits). Returns the (bucket, key, version) originals to delete after the
    commit. Raises StorageError / ValueError when it must be left as it is."""
    evidence = session.scalars(select(Evidence).where(Evidence.id == evidence_id).with_for_update()
                               .execution_options(include_deleted=True)).one()
    if evidence.archived_at is not None or evidence.deleted_at is not None:
        raise ValueError("already archived or deleted")
    if legal_holds.is_held(session, "evidence", evidence_id):
        raise ValueError("placed under legal hold since the plan")
    revisions = list(session.scalars(select(EvidenceRevision).where(EvidenceRevision.evidence_id == evidence_id)
                                     .order_by(EvidenceRevision.number).with_for_update()))
    if any(r.created_at >= cutoff for r in revisions):
        raise ValueError("a newer revision arrived since the plan")
    locked = [r for r in revisions if r.locked_until is not None and r.locked_until > now]
    if locked:
        raise ValueError(f"revision {locked[0].number} is locked until {locked[0].locked_until:%Y-%m-%d}")
    cold = store.bucket
    copies: list[tuple[EvidenceRevision, str | None]] = []
    try:
        for revision in revisions:
            if revision.archived_at is not None:
                continue
            stored = store.copy(revision.object_key, revision.version_id, src_bucket=revision.bucket, dest_bucket=cold)
            copies.append((revision, stored.version_id))
            digest, size = _sha256(store, revision.object_key, stored.version_id, cold)
            if digest != revision.sha256 or size != revision.size_bytes:
                raise ValueError(f"the copy of revision {revision.number} hashes to {digest} ({size} bytes), "
                                 f"the revision says {revision.sha256} ({revision.size_bytes} bytes)")
    except Exception:
        for revision, version in copies:  # leave nothing half-done in the cold bucket
            try:
                store.delete(revision.object_key, version, bucket=cold)
            except StorageError:
                log.warning("could not remove the copy of %s in %s", revision.object_key, cold)
        raise
    before = {"bucket": evidence.bucket,
              "revisions": [{"number": r.number, "bucket": r.bucket, "version_id": r.version_id} for r, _v in copies]}
    originals = [(r.bucket, r.object_key, r.version_id) for r, _v in copies]
    for revision, version in copies:
        revision.bucket, revision.version_id, revision.archived_at = cold, version, now
    evidence.bucket, evidence.archived_at = cold, now
    session.flush()
    audit.record(session, "retention.evidence_archived", object_type="evidence", object_id=evidence_id,
                 details={"name": evidence.name, "revisions": len(copies)}, before=before,
                 after={"bucket": cold, "archived_at": now,
                        "revisions": [{"number": r.number, "bucket": cold, "version_id": v} for r, v in copies]})
    return originals


def _session_factory(settings: Any) -> tuple[Callable[[], Session], Callable[[], None]]:
    engine = create_engine(settings.database_url, poolclass=NullPool)
    return sessionmaker(engine), engine.dispose


def execute(settings: Any, *, dry_run: bool = False, now: datetime | None = None, actor: str = "system",
            actor_id: uuid.UUID | None = None, session_factory: Callable[[], Session] | None = None) -> RetentionResult:
    """Run retention (see the module docstring). Owns its sessions and commits; the audit
    partitions are handled on an owner connection (settings.admin_database_url)."""
    moment = now or datetime.now(UTC)
    dispose: Callable[[], None] = lambda: None  # noqa: E731
    if session_factory is None:
        session_factory, dispose = _session_factory(settings)
    try:
        with context.acting_as(context.ActionContext(actor_id=actor_id, actor_name=actor)):
            with session_factory() as session:
                the_plan = plan(session, settings, now=moment)
                if dry_run:
                    audit.record(session, "retention.dry_run", object_type="retention", object_id="plan",
                                 details=the_plan.counts())
                    session.commit()
                    return RetentionResult(the_plan, True)
            result = RetentionResult(the_plan, False)
            _execute_partitions(settings, result, moment)
            _execute_evidence(settings, session_factory, result, moment)
            with session_factory() as session:
                audit.record(session, "retention.run", object_type="retention", object_id="run",
                             outcome="success" if result.ok else "error",
                             details={**the_plan.counts(), "partitions_archived": len(result.partitions),
                                      "evidence_archived": len(result.evidence), "errors": result.errors[:20]})
                session.commit()
            return result
    finally:
        dispose()


def _execute_partitions(settings: Any, result: RetentionResult, now: datetime) -> None:
    due = [p for p in result.plan.partitions if p.action == ARCHIVE]
    if not due:
        return
    cold = _cold_store(settings)
    engine = create_engine(settings.admin_database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            for item in due:
                try:
                    done = audit_archive.archive_partition(
                        conn, cold, item.name, item.range_start, item.range_end,
                        lock_days=settings.audit_anchor_lock_days, lock_mode=settings.evidence_lock_mode, now=now)
                except ArchiveError as exc:
                    # The partition is back in place; later ones must wait (a hole in the chain).
                    result.errors.append(f"partition {item.name} not archived (re-attached): {exc}")
                    return
                result.partitions.append(done)
    finally:
        engine.dispose()


def _execute_evidence(settings: Any, session_factory: Callable[[], Session], result: RetentionResult,
                      now: datetime) -> None:
    due = [e for e in result.plan.evidence if e.action == ARCHIVE]
    if not due:
        return
    store = _cold_store(settings)
    for item in due:
        with session_factory() as session:
            try:
                originals = archive_evidence(session, store, item.evidence_id, now=now,
                                             cutoff=result.plan.evidence_cutoff)
                session.commit()
            except (StorageError, ValueError) as exc:
                session.rollback()
                result.errors.append(f"evidence {item.evidence_id} ({item.name}) not archived: {exc}")
                continue
        result.evidence.append(item.evidence_id)
        # The rows name the copies now; the originals go only after that is committed.
        for bucket, key, version in originals:
            try:
                store.delete(key, version, bucket=bucket)
            except StorageError as exc:
                result.errors.append(f"evidence {item.evidence_id}: original {bucket}/{key} not deleted: {exc}")


def run_scheduled(settings: Any) -> RetentionResult:
    """The daily gov:retention job."""
    result = execute(settings, actor="job:retention")
    for line in result.lines():
        (log.info if result.ok else log.warning)("%s", line)
    return result
