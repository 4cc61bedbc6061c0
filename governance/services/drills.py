"""Restore drills and the backup-age check (docs/drills.md).

A drill proves a backup can be restored and is what its manifest says, without touching the live
database: the backup is restored (governance.services.backups.restore_backup, migrate=False) into a
scratch database `gov_drill_<hex>` created on the admin server, checked, migrated forward to the
current head, and the scratch database is dropped whatever happened. The checks:

- rows: every table the manifest lists exists in the restore with the manifest's row count;
- chain: the restored audit log's hash chain holds (audit_chain.verify_database, no anchors: the
  live anchors are newer than the backup) and its head (audit_chain_heads) is the manifest's
  audit_head, so the chain was neither cut short nor re-hashed;
- objects: a random sample of DRILL_SAMPLE_OBJECTS evidence objects named by the manifest (bucket,
  key, version) is streamed from the store and its SHA-256 compared (a missing one is a problem);
- migrate: the restored schema migrates forward (a backup from an older release still restores).

restore_seconds is the restore plus the migration. The result is a restore_drills row in the live
database, audited as backup.drill; a failed drill raises the backup.drill_failed alert and a passed
one clears it. Entry points own their sessions (they run as jobs or from the CLI).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from governance import context
from governance.models.audit import AuditLog
from governance.models.audit_chain import AUDIT_CHAIN
from governance.models.enums import AuditOutcome, BackupStatus, DrillStatus, Severity
from governance.models.lifecycle import Backup, RestoreDrill
from governance.services import alerts, audit
from governance.storage import Storage, StorageError

log = logging.getLogger(__name__)

SCHEDULED_ACTOR = "job:restore_drill"
AGE_CHECK_ACTOR = "job:backup_age_check"
SCRATCH_PREFIX = "gov_drill_"
# One alert per rule for the whole installation: the next drill (or backup) clears it.
ALERT_SUBJECT_TYPE = "backups"
DRILL_SUBJECT = "restore_drill"
AGE_SUBJECT = "backup_age"
# The checks in the order they run (each problem names one of them).
CHECKS = ("backup", "restore", "rows", "chain", "objects", "migrate")
CHECK_TITLES = {
    "backup": "backup and manifest", "restore": "restore into a scratch database",
    "rows": "row counts against the manifest", "chain": "audit hash chain and head",
    "objects": "evidence objects' SHA-256", "migrate": "migrate forward to the current head",
}
MESSAGE_MAX = 1000
PROBLEMS_MAX = 200


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _sessions(settings: Any) -> tuple[sessionmaker[Session], Any]:
    """A session factory on the live database (settings.database_url) and its engine to dispose."""
    engine = create_engine(settings.database_url or "", poolclass=NullPool)
    return sessionmaker(engine, expire_on_commit=False), engine


@dataclass
class _Findings:
    problems: list[dict[str, str]] = field(default_factory=list)
    tables_checked: int | None = None
    rows_checked: int | None = None
    objects_checked: int | None = None
    chain_ok: bool | None = None
    restore_seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def add(self, check: str, message: str) -> None:
        if len(self.problems) < PROBLEMS_MAX:
            self.problems.append({"check": check, "message": message[:MESSAGE_MAX]})
        elif len(self.problems) == PROBLEMS_MAX:
            self.problems.append({"check": check, "message": "more problems were found and not listed"})


# --- the scratch database -------------------------------------------------------------------------

@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new empty database on the admin server (its URL), dropped on the way out whatever happened."""
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        # template0: nothing a local template1 may carry (extensions, tables) gets into the restore.
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield _with_database(admin_url, name)
    finally:
        drop_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        # FORCE ends sessions a failed step may have left behind (pg_restore, a verifier).
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


# --- the checks -----------------------------------------------------------------------------------

def _table_rows(entry: Any) -> int | None:
    value = entry.get("rows") if isinstance(entry, Mapping) else entry
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def check_rows(target_url: str, tables: Mapping[str, Any], found: _Findings) -> None:
    """Each table of the manifest exists in the restore with the manifest's row count and content
    fingerprint (backups.table_fingerprints: computed alike on both sides, order independent)."""
    from governance.services import backups

    with psycopg.connect(_libpq(target_url), autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        backups.stable_session(conn)
        restored = backups.table_fingerprints(conn)
    checked = rows = 0
    for name in sorted(tables):
        entry = tables[name]
        expected = _table_rows(entry)
        here = restored.get(name)
        if here is None:
            found.add("rows", f"table {name} is missing from the restored database "
                              f"(the manifest lists {expected if expected is not None else '?'} rows)")
            continue
        count = int(here["rows"])
        checked += 1
        rows += count
        if expected is None:
            found.add("rows", f"table {name}: the manifest gives no row count (found {count})")
        elif count != expected:
            found.add("rows", f"table {name}: expected {expected} rows, found {count}")
        elif isinstance(entry, Mapping) and entry.get("fingerprint") and entry["fingerprint"] != here["fingerprint"]:
            found.add("rows", f"table {name}: {count} rows as expected, but their content differs from the "
                              "backup's (fingerprint mismatch)")
    found.tables_checked = checked
    found.rows_checked = rows


def check_chain(target_url: str, audit_head: Mapping[str, Any] | None, found: _Findings) -> None:
    """The restored chain verifies on its own, and its head is the one the backup recorded."""
    from governance.services import audit_chain

    result = audit_chain.verify_database(target_url)
    ok = result.ok
    for problem in result.problems():
        found.add("chain", f"the restored audit chain is broken: {problem}")
    with psycopg.connect(_libpq(target_url), autocommit=True) as conn:
        row = conn.execute("SELECT seq, hash FROM audit_chain_heads WHERE chain = %s", (AUDIT_CHAIN,)).fetchone()
    head_seq, head_hash = (int(row[0]), bytes(row[1]).hex()) if row else (0, None)
    want_seq = int(audit_head["seq"]) if audit_head else 0
    want_hash = str(audit_head.get("hash") or "").lower() if audit_head else ""
    if head_seq != want_seq or (want_seq and head_hash != want_hash):
        ok = False
        found.add("chain", f"the restored chain head is seq {head_seq} ({(head_hash or 'none')[:16]}…), "
                           f"the manifest's audit_head is seq {want_seq} ({(want_hash or 'none')[:16]}…)")
    found.chain_ok = ok
    found.notes["chain_entries"] = result.rows


def check_objects(settings: Any, objects: Sequence[Mapping[str, Any]], found: _Findings,
                  *, rng: random.Random | None = None) -> None:
    """Stream a random sample of the manifest's evidence objects and compare their SHA-256."""
    wanted = max(0, int(settings.drill_sample_objects))
    sample = (rng or random.SystemRandom()).sample(list(objects), min(wanted, len(objects)))
    store = Storage.from_settings(settings)
    checked = 0
    for obj in sample:
        bucket, key = str(obj.get("bucket") or settings.s3_evidence_bucket), str(obj.get("key") or "")
        version = obj.get("version_id") or None
        where = f"{bucket}/{key}" + (f" (version {version})" if version else "")
        checked += 1
        digest = hashlib.sha256()
        try:
            for chunk in store.open_stream(key, version, bucket=bucket, chunk_size=1024 * 1024):
                digest.update(chunk)
        except StorageError as exc:
            found.add("objects", f"evidence object {where} cannot be read: {exc}")
            continue
        expected = str(obj.get("sha256") or "").lower()
        if digest.hexdigest() != expected:
            found.add("objects", f"evidence object {where}: SHA-256 is {digest.hexdigest()[:16]}…, "
                                 f"the manifest says {expected[:16] or 'nothing'}…")
    found.objects_checked = checked


def _migrate(settings: Any, target_url: str) -> str | None:
    """Migrate the restored database forward to the current head (returns the head reached)."""
    from governance.services import backup_restore

    return backup_restore.migrate_database(settings, target_url)


def _restore_and_check(settings: Any, backup_id: uuid.UUID, manifest: Mapping[str, Any], found: _Findings,
                       *, rng: random.Random | None) -> None:
    from governance.services import backups

    with scratch_database(settings.admin_database_url) as target_url:
        found.notes["scratch_database"] = make_url(target_url).database
        started = time.perf_counter()
        try:
            restored = backups.restore_backup(settings, backup_id, target_url, migrate=False)
        except Exception as exc:  # noqa: BLE001  (any failure is the drill's finding)
            found.add("restore", f"the restore failed: {exc}")
            return
        found.timings["restore_seconds"] = time.perf_counter() - started
        found.notes["migrated_from"] = restored.migrated_from
        if restored.notes:
            found.notes["restore_notes"] = list(restored.notes)
        checks: list[tuple[str, Callable[[], None]]] = [
            ("rows", lambda: check_rows(target_url, manifest.get("tables") or {}, found)),
            ("chain", lambda: check_chain(target_url, manifest.get("audit_head"), found)),
            ("objects", lambda: check_objects(settings, manifest.get("evidence_objects") or [], found, rng=rng)),
        ]
        for check, run in checks:
            try:
                run()
            except Exception as exc:  # noqa: BLE001
                found.add(check, f"the check could not run: {type(exc).__name__}: {exc}")
        if found.chain_ok is None:
            found.chain_ok = False
        started = time.perf_counter()
        try:
            found.notes["migrated_to"] = _migrate(settings, target_url)
        except Exception as exc:  # noqa: BLE001
            found.add("migrate", f"migrating the restored database forward failed: {exc}")
            return
        found.timings["migrate_seconds"] = time.perf_counter() - started
        found.restore_seconds = found.timings["restore_seconds"] + found.timings["migrate_seconds"]


# --- the drill ------------------------------------------------------------------------------------

def _pick_backup(session: Session, backup_id: uuid.UUID | None) -> tuple[Backup | None, str | None]:
    from governance.services import backups

    if backup_id is None:
        newest = backups.newest_restorable(session)
        return newest, None if newest is not None else "no backup to restore (none has succeeded yet)"
    chosen = session.get(Backup, backup_id)
    if chosen is None:
        return None, f"no backup to restore: backup {backup_id} does not exist"
    if chosen.status != BackupStatus.SUCCEEDED:
        return chosen, f"backup {backup_id} is {chosen.status.value}, not restorable"
    return chosen, None


def _alert(session: Session, drill: RestoreDrill) -> None:
    if drill.status == DrillStatus.PASSED:
        alerts.clear(session, rule=alerts.DRILL_FAILED, subject_id=DRILL_SUBJECT,
                     reason=f"restore drill {drill.id} passed")
        return
    first = drill.problems[0]["message"] if drill.problems else "unknown problem"
    count = len(drill.problems)
    alerts.raise_alert(
        session, rule=alerts.DRILL_FAILED, subject_type=ALERT_SUBJECT_TYPE, subject_id=DRILL_SUBJECT,
        title=f"A restore drill failed ({count} problem{'s' if count != 1 else ''}): {first}",
        severity=Severity.HIGH, message="; ".join(p["message"] for p in drill.problems[:10]),
        details={"drill_id": drill.id, "backup_id": drill.backup_id, "problems": drill.problems[:20]})


def run_drill(settings: Any, *, backup_id: uuid.UUID | None = None, started_by: str,
              rng: random.Random | None = None) -> RestoreDrill:
    """Restore a backup (the newest restorable, or `backup_id`) into a scratch database, check it,
    record and audit the result, raise or clear the alert; returns the finished RestoreDrill.

    rng: the sampler of evidence objects (tests pass a seeded one; default: the system's)."""
    factory, engine = _sessions(settings)
    try:
        with context.acting_as(context.ActionContext(actor_name=started_by)):
            with factory() as session:
                backup, refusal = _pick_backup(session, backup_id)
                drill = RestoreDrill(id=uuid.uuid4(), backup_id=backup.id if backup else None,
                                     status=DrillStatus.RUNNING, started_by=started_by)
                session.add(drill)
                session.flush()
                audit.record(session, "backup.drill_start", object_type="restore_drill", object_id=drill.id,
                             details={"backup_id": drill.backup_id})
                session.commit()
            found = _Findings()
            if refusal is not None or backup is None:
                found.add("backup", refusal or "no backup to restore")
            else:
                _run_checks(settings, backup.id, found, rng=rng)
            return _finish(factory, drill.id, found)
    finally:
        engine.dispose()


def _run_checks(settings: Any, backup_id: uuid.UUID, found: _Findings, *, rng: random.Random | None) -> None:
    from governance.services import backups

    try:
        manifest = backups.read_manifest(settings, backup_id)
    except Exception as exc:  # noqa: BLE001
        found.add("backup", f"the manifest of backup {backup_id} cannot be read: {exc}")
        return
    manifest_map = manifest if isinstance(manifest, Mapping) else vars(manifest)
    try:
        _restore_and_check(settings, backup_id, manifest_map, found, rng=rng)
    except Exception as exc:  # e.g. the scratch database could not be made or dropped
        log.exception("restore drill of backup %s", backup_id)
        found.add("restore", f"the drill could not run: {type(exc).__name__}: {exc}")


def _finish(factory: sessionmaker[Session], drill_id: uuid.UUID, found: _Findings) -> RestoreDrill:
    with factory() as session:
        drill = session.get(RestoreDrill, drill_id, with_for_update=True)
        assert drill is not None
        drill.status = DrillStatus.FAILED if found.problems else DrillStatus.PASSED
        drill.finished_at = func.now()  # type: ignore[assignment]
        drill.restore_seconds = found.restore_seconds
        drill.tables_checked = found.tables_checked
        drill.rows_checked = found.rows_checked
        drill.objects_checked = found.objects_checked
        drill.chain_ok = found.chain_ok
        drill.problems = found.problems
        session.flush()
        audit.record(session, "backup.drill", object_type="restore_drill", object_id=drill.id,
                     outcome=AuditOutcome.SUCCESS if drill.status == DrillStatus.PASSED else AuditOutcome.ERROR,
                     details={"backup_id": drill.backup_id, "status": drill.status,
                              "restore_seconds": found.restore_seconds, **found.timings,
                              "tables_checked": drill.tables_checked, "rows_checked": drill.rows_checked,
                              "objects_checked": drill.objects_checked, "chain_ok": drill.chain_ok,
                              "problems": len(found.problems), **found.notes})
        _alert(session, drill)
        session.commit()
        session.refresh(drill)
    level = logging.INFO if drill.status == DrillStatus.PASSED else logging.ERROR
    log.log(level, "restore drill %s of backup %s: %s (%d problem(s))", drill.id, drill.backup_id,
            drill.status.value, len(drill.problems))
    return drill


def run_scheduled(settings: Any) -> RestoreDrill:
    """The monthly job (and "Run restore drill now"): a drill of the newest restorable backup."""
    return run_drill(settings, started_by=SCHEDULED_ACTOR)


def check_lines(drill: RestoreDrill) -> list[tuple[str, str, str]]:
    """(check, "passed" / "failed" / "not run", what it covered) per check, for the CLI and the page."""
    failed = {p.get("check") for p in drill.problems}
    ran = {
        "backup": True,
        "restore": drill.restore_seconds is not None or "restore" in failed or drill.tables_checked is not None,
        "rows": drill.tables_checked is not None or "rows" in failed,
        "chain": drill.chain_ok is not None,
        "objects": drill.objects_checked is not None or "objects" in failed,
        "migrate": drill.restore_seconds is not None or "migrate" in failed,
    }
    covered = {
        "rows": f"{drill.tables_checked or 0} tables, {drill.rows_checked or 0} rows",
        "objects": f"{drill.objects_checked or 0} objects",
        "restore": f"{drill.restore_seconds:.2f} s with the migration" if drill.restore_seconds is not None else "",
    }
    lines = []
    for check in CHECKS:
        state = "failed" if check in failed else "passed" if ran[check] else "not run"
        lines.append((check, state, covered.get(check, "")))
    return lines


# --- on demand (the backups page) -----------------------------------------------------------------

@dataclass(frozen=True)
class JobRequest:
    queued: bool
    job_id: int | None
    message: str


JobRequestFn = Callable[[Session], JobRequest]

# task name -> (lock, queueing_lock, what it is): as governance.jobs registers them, so a job queued
# here and the periodic one never run at once nor wait in the queue twice.
_ON_DEMAND = {
    "backup_full": ("backup", "backup_full", "A full backup"),
    "restore_drill": ("restore_drill", "restore_drill", "A restore drill"),
}


def _request(session: Session, task: str, action: str, details: Mapping[str, Any]) -> JobRequest:
    from procrastinate import SyncPsycopgConnector
    from procrastinate import exceptions as queue_exceptions
    from procrastinate import jobs as queue_jobs
    from procrastinate.manager import JobManager

    from governance import jobs

    lock, queueing_lock, what = _ON_DEMAND[task]
    name = f"{jobs.NAMESPACE}:{task}"
    # The periodic tasks take the cron tick's timestamp: an on-demand run passes the time it was asked.
    job = queue_jobs.Job(queue=queue_jobs.DEFAULT_QUEUE, task_name=name, lock=lock, queueing_lock=queueing_lock,
                         task_kwargs={"timestamp": int(time.time())})
    try:
        # A refused insert must not abort the caller's transaction: a savepoint around it (asking
        # the session for its connection inside the block is what emits the SAVEPOINT). On the
        # session's own connection, the job is queued if and only if the audit entry commits.
        with session.begin_nested():
            connection = session.connection().connection.driver_connection
            deferred = JobManager(SyncPsycopgConnector()).defer_job(job, connection=connection)
    except queue_exceptions.AlreadyEnqueued:
        message = f"{what} is already waiting in the queue: it starts as soon as a worker is free."
        audit.record(session, action, object_type="job", object_id=name,
                     details={**details, "queued": False, "reason": "already queued"})
        return JobRequest(False, None, message)
    audit.record(session, action, object_type="job", object_id=name,
                 details={**details, "queued": True, "job_id": deferred.id})
    return JobRequest(True, deferred.id, f"{what} is queued: it starts as soon as a worker is free "
                                         "and shows here when it finishes.")


def request_backup(session: Session) -> JobRequest:
    """Queue a full backup now (the current actor asked). Flushes, never commits."""
    return _request(session, "backup_full", "backup.request", {"kind": "full"})


def request_drill(session: Session) -> JobRequest:
    """Queue a restore drill of the newest restorable backup now. Flushes, never commits."""
    return _request(session, "restore_drill", "backup.drill_request", {})


# --- the page -------------------------------------------------------------------------------------

PAGE_LIMIT = 50


def recent_backups(session: Session, limit: int = PAGE_LIMIT) -> list[Backup]:
    """The newest backups (bounded; one statement)."""
    return list(session.scalars(select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc())
                                .limit(max(1, min(limit, 200)))))


def recent_drills(session: Session, limit: int = PAGE_LIMIT) -> list[tuple[RestoreDrill, Backup | None]]:
    """The newest drills with their backup (bounded; one statement)."""
    rows = session.execute(select(RestoreDrill, Backup).outerjoin(Backup, Backup.id == RestoreDrill.backup_id)
                           .order_by(RestoreDrill.created_at.desc(), RestoreDrill.id.desc())
                           .limit(max(1, min(limit, 200)))).all()
    return [(row[0], row[1]) for row in rows]


# --- the backup-age check -------------------------------------------------------------------------

@dataclass(frozen=True)
class BackupAge:
    newest_finished_at: datetime | None
    age_hours: float | None
    database_age_hours: float | None
    stale: bool


def backup_age(session: Session, max_age_hours: int) -> BackupAge:
    """How old the newest succeeded backup is (one statement); stale past max_age_hours, or when
    none exists while the database (its first audit entry) is older than that."""
    newest = select(func.max(Backup.finished_at)).where(Backup.status == BackupStatus.SUCCEEDED).scalar_subquery()
    first = select(func.min(AuditLog.created_at)).scalar_subquery()
    row = session.execute(select(
        newest, func.extract("epoch", func.now() - newest), func.extract("epoch", func.now() - first))).one()
    finished, age_s, db_age_s = row
    age = float(age_s) / 3600 if age_s is not None else None
    db_age = float(db_age_s) / 3600 if db_age_s is not None else None
    stale = age > max_age_hours if age is not None else (db_age is not None and db_age > max_age_hours)
    return BackupAge(finished, age, db_age, stale)


def check_backup_age(session: Session, settings: Any) -> BackupAge:
    """Raise backup.stale (the age in its title) or clear it. Flushes, never commits."""
    limit = int(settings.backup_max_age_hours)
    state = backup_age(session, limit)
    if not state.stale:
        if state.age_hours is not None:
            alerts.clear(session, rule=alerts.BACKUP_STALE, subject_id=AGE_SUBJECT,
                         reason=f"a backup succeeded {state.age_hours:.1f} h ago (limit {limit} h)")
        return state
    if state.age_hours is not None:
        title = f"No successful backup for {state.age_hours:.0f} h (limit {limit} h)"
    else:
        title = (f"No backup has ever succeeded, and the database is {state.database_age_hours or 0:.0f} h old "
                 f"(limit {limit} h)")
    alerts.raise_alert(session, rule=alerts.BACKUP_STALE, subject_type=ALERT_SUBJECT_TYPE, subject_id=AGE_SUBJECT,
                       title=title, severity=Severity.HIGH,
                       message="Check the backup job (flask jobs worker) and the backups page, then run "
                               "`flask backup create`.",
                       details={"newest_finished_at": state.newest_finished_at, "age_hours": state.age_hours,
                                "limit_hours": limit})
    return state


def check_backup_age_now(session_factory: Callable[[], Session], settings: Any) -> BackupAge:
    """The 15-minute monitoring job: check_backup_age in a transaction of its own."""
    with context.acting_as(context.ActionContext(actor_name=AGE_CHECK_ACTOR)), session_factory() as session:
        state = check_backup_age(session, settings)
        session.commit()
    if state.stale:
        log.warning("backup age check: stale (newest succeeded backup %s)", state.newest_finished_at)
    return state
