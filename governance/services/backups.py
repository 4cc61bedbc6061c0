"""Encrypted backups of the database: full and differential, their manifests, retention (docs/backups.md).

A backup is `pg_dump --format=custom` of one exported snapshot, streamed through
governance.backup_crypto (AES-256-GCM segments) into the backup bucket, plus a manifest (JSON,
encrypted too) read in that same snapshot: the migration head, every table's row count and content
fingerprint, the evidence objects the database points at, and the audit chain's head. A restore
(governance.services.backup_restore) needs only the bucket and the key, never the `backups` rows.

Public API (other modules rely on these names): create_backup, restore_backup, read_manifest,
list_from_bucket, newest_restorable, prune, run_scheduled, backup_store, table_fingerprints,
BackupError.

Job-style entry points: create_backup / prune / run_scheduled open and commit sessions of their own
(on settings.database_url); the snapshot and pg_dump use settings.admin_database_url.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

import psycopg
from psycopg import sql
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from governance import backup_crypto, context, pg_tools
from governance.models.enums import AuditOutcome, BackupKind, BackupStatus, Severity
from governance.models.lifecycle import Backup
from governance.services import alerts, audit
from governance.services.pg_programs import StreamTail, libpq_url, program_conninfo, program_error, scrub
from governance.storage import Storage, StorageError

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "gov.backup.manifest.v1"
PREFIX = "backups/"
DUMP_NAME = "database.dump.enc"
MANIFEST_NAME = "manifest.json.enc"
CHUNK = 256 * 1024
ALERT_SUBJECT = "backups"
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")

# Session settings that make row::text (and so the fingerprints) the same on any server and session.
STABLE_TEXT = ("SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'",
               "SET extra_float_digits = 1", "SET bytea_output = 'hex'", "SET statement_timeout = 0")


class BackupError(RuntimeError):
    """A backup, restore or prune failed; the message is fit for an operator (no secrets)."""


# --- names, keys ----------------------------------------------------------------------------------

def dump_key(backup_id: uuid.UUID | str) -> str:
    return f"{PREFIX}{backup_id}/{DUMP_NAME}"


def manifest_key(backup_id: uuid.UUID | str) -> str:
    return f"{PREFIX}{backup_id}/{MANIFEST_NAME}"


def backup_store(settings: Any) -> Storage:
    """The object store on settings.backup_bucket (created, versioned, if missing). No object lock:
    prune must be able to remove what is past its retention."""
    store = Storage.from_settings(settings, bucket=settings.backup_bucket)
    try:
        store.ensure_bucket(object_lock=False)
    except StorageError as exc:
        raise BackupError(f"backup bucket {settings.backup_bucket!r}: {exc}") from exc
    return store


def master_key(settings: Any) -> bytes:
    """The backup key from the environment; BackupError (backup_crypto's message) when unusable."""
    try:
        return backup_crypto.load_key(settings.backup_encryption_key)
    except backup_crypto.CryptoError as exc:
        raise BackupError(str(exc)) from exc


# --- pg_dump -------------------------------------------------------------------------------------

def _dump_chunks(command: list[str], env: dict[str, str], url: str) -> Generator[bytes, None, None]:
    """pg_dump's stdout in chunks; raises BackupError (with its stderr) when it exits non-zero, so a
    failed dump can never end as a complete-looking encrypted object (the last segment is only
    sealed after this generator ends normally)."""
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    stderr = StreamTail(proc.stderr)
    try:
        while chunk := proc.stdout.read(CHUNK):
            yield chunk
        code = proc.wait()
        if code != 0:
            raise BackupError(program_error("pg_dump", code, stderr.text(), url))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --- reading the database in the snapshot ------------------------------------------------------------

def table_key(schema: str, name: str) -> str:
    """The manifest's name of a table: bare in the public schema, schema-qualified elsewhere."""
    return name if schema == "public" else f"{schema}.{name}"


def stable_session(conn: psycopg.Connection[Any]) -> None:
    for statement in STABLE_TEXT:
        conn.execute(statement)


def table_fingerprints(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    """Every ordinary table (each partition on its own; partitioned parents hold no rows) outside
    the system schemas: {name: {"schema", "name", "rows", "fingerprint"}}.

    The fingerprint is "<rows>:<sum of the first 64 bits of md5(row::text) as signed integers>":
    independent of row order and of physical layout, equal after a dump and restore. Call
    stable_session(conn) first (row::text depends on TimeZone, DateStyle, float digits)."""
    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_toast%%' "
        "AND n.nspname NOT LIKE 'pg\\_temp\\_%%' ORDER BY n.nspname, c.relname", (list(SYSTEM_SCHEMAS),)).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for schema, name in tables:
        query = sql.SQL("SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)"
                        "::text FROM ONLY {}.{} AS t").format(sql.Identifier(schema), sql.Identifier(name))
        row = conn.execute(query).fetchone()
        assert row is not None
        rows = int(row[0])
        out[table_key(schema, name)] = {"schema": schema, "name": name, "rows": rows,
                                        "fingerprint": f"{rows}:{row[1]}"}
    return out


def migration_head(conn: psycopg.Connection[Any]) -> str | None:
    if conn.execute("SELECT to_regclass('public.alembic_version')").fetchone() in (None, (None,)):
        return None
    heads = sorted(str(r[0]) for r in conn.execute("SELECT version_num FROM alembic_version").fetchall())
    return ",".join(heads) or None


def _evidence_objects(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    if conn.execute("SELECT to_regclass('public.evidence_revisions')").fetchone() in (None, (None,)):
        return []
    rows = conn.execute("SELECT bucket, object_key, version_id, sha256, size_bytes FROM evidence_revisions "
                        "ORDER BY bucket, object_key").fetchall()
    return [{"bucket": b, "key": k, "version_id": v, "sha256": s, "size": int(n)} for b, k, v, s, n in rows]


def _audit_head(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    if conn.execute("SELECT to_regclass('public.audit_chain_heads')").fetchone() in (None, (None,)):
        return None
    row = conn.execute("SELECT seq, hash FROM audit_chain_heads WHERE chain = 'audit_logs'").fetchone()
    return None if row is None else {"seq": int(row[0]), "hash": bytes(row[1]).hex()}


@dataclass
class Snapshot:
    """What the manifest says, read in the transaction whose snapshot pg_dump dumps."""

    snapshot_id: str
    taken_at: datetime
    migration_head: str | None
    server_version: str
    tables: dict[str, dict[str, Any]]
    evidence_objects: list[dict[str, Any]]
    audit_head: dict[str, Any] | None


def read_snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    stable_session(conn)
    row = conn.execute("SELECT pg_export_snapshot(), now(), current_setting('server_version')").fetchone()
    assert row is not None
    return Snapshot(str(row[0]), row[1], migration_head(conn), str(row[2]), table_fingerprints(conn),
                    _evidence_objects(conn), _audit_head(conn))


# --- manifests -----------------------------------------------------------------------------------------

def _encrypt_bytes(master: bytes, data: bytes) -> bytes:
    return b"".join(backup_crypto.encrypt_stream(master, [data]))


def read_manifest(settings: Any, backup_id: uuid.UUID | str, *, store: Storage | None = None) -> dict[str, Any]:
    """The manifest of a backup, from the bucket (decrypted with the configured key): "id", "kind",
    "base_id", "migration_head", "tables" -> {name: {"rows", "fingerprint", "included", ...}},
    "evidence_objects" -> [{"bucket", "key", "version_id", "sha256", "size"}], "audit_head" ->
    {"seq", "hash"} or None, "dump" -> {"key", "size", "sha256"}."""
    store = store or backup_store(settings)
    master = master_key(settings)
    try:
        data = b"".join(backup_crypto.decrypt_stream(master, store.open_stream(manifest_key(backup_id))))
    except StorageError as exc:
        raise BackupError(f"backup {backup_id}: no manifest in bucket {store.bucket!r} ({exc})") from exc
    except backup_crypto.CryptoError as exc:
        raise BackupError(f"backup {backup_id}: manifest unreadable: {exc}") from exc
    manifest: dict[str, Any] = json.loads(data)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(f"backup {backup_id}: unknown manifest format {manifest.get('format')!r}")
    return manifest


def list_from_bucket(settings: Any) -> list[dict[str, Any]]:
    """Every manifest in the backup bucket, newest first. One that cannot be read (e.g. sealed under
    an older key) is listed last as {"id", "error"}."""
    store = backup_store(settings)
    ids = [obj.key[len(PREFIX):-len(MANIFEST_NAME) - 1] for obj in store.list_objects(PREFIX)
           if obj.key.endswith("/" + MANIFEST_NAME)]
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for backup_id in ids:
        try:
            good.append(read_manifest(settings, backup_id, store=store))
        except BackupError as exc:
            bad.append({"id": backup_id, "error": str(exc)})
    good.sort(key=lambda m: str(m.get("created_at") or ""), reverse=True)
    return good + bad


def newest_restorable(session: Session) -> Backup | None:
    """The newest succeeded backup (full or diff) the database knows of."""
    return session.scalars(select(Backup).where(Backup.status == BackupStatus.SUCCEEDED)
                           .order_by(Backup.created_at.desc(), Backup.id).limit(1)).first()


def newest_full(session: Session, *, exclude: uuid.UUID | None = None) -> Backup | None:
    query = select(Backup).where(Backup.status == BackupStatus.SUCCEEDED, Backup.kind == BackupKind.FULL)
    if exclude is not None:
        query = query.where(Backup.id != exclude)
    return session.scalars(query.order_by(Backup.created_at.desc(), Backup.id).limit(1)).first()


# --- sessions and audit ---------------------------------------------------------------------------------

@contextlib.contextmanager
def own_session(settings: Any) -> Iterator[Session]:
    """A session of our own on the app's database (job-style entry points commit themselves)."""
    if not settings.database_url:
        raise BackupError("DATABASE_URL is not set")
    engine = create_engine(settings.database_url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _acting(started_by: str) -> context.ActionContext:
    """The caller's context (a signed-in user, a CLI command) or, when none was set, `started_by`."""
    current = context.current()
    if current.actor_id is None and current.actor_name == context.SYSTEM.actor_name:
        return context.ActionContext(actor_name=started_by)
    return current


def _summary(backup: Backup) -> dict[str, Any]:
    return {"kind": backup.kind, "status": backup.status, "base_id": backup.base_id, "size_bytes": backup.size_bytes,
            "sha256": backup.sha256, "migration_head": backup.migration_head, "tables": backup.tables,
            "rows": backup.rows, "evidence_objects": backup.evidence_objects,
            "tables_included": backup.tables_included, "bucket": backup.bucket}


# --- creating a backup -------------------------------------------------------------------------------

@dataclass
class _Plan:
    kind: BackupKind
    base: dict[str, Any] | None = None
    note: str | None = None


def _plan(settings: Any, session: Session, kind: BackupKind, store: Storage,
          head: str | None) -> _Plan:
    """A diff needs a succeeded full at the same migration head; otherwise it is taken as a full."""
    if kind == BackupKind.FULL:
        return _Plan(BackupKind.FULL)
    full = newest_full(session)
    if full is None:
        return _Plan(BackupKind.FULL, note="no succeeded full backup yet: took a full backup instead of a diff")
    try:
        base = read_manifest(settings, full.id, store=store)
    except BackupError as exc:
        return _Plan(BackupKind.FULL, note=f"the newest full backup {full.id} is unreadable ({exc}): took a full "
                                           "backup instead of a diff")
    if base.get("migration_head") != head:
        return _Plan(BackupKind.FULL, note=f"the newest full backup {full.id} was taken at migration head "
                                           f"{base.get('migration_head')}, the database is at {head}: took a full "
                                           "backup instead of a diff")
    return _Plan(BackupKind.DIFF, base=base)


def _unchanged(tables: dict[str, dict[str, Any]], base: dict[str, Any]) -> set[str]:
    """Tables whose content equals the full backup's (same fingerprint, and the full holds their data)."""
    before = base.get("tables", {})
    return {name for name, info in tables.items() if name in before and before[name].get("included", True)
            and before[name]["fingerprint"] == info["fingerprint"]}


def _remove_objects(store: Storage, backup_id: uuid.UUID | str) -> None:
    """Every version of everything under backups/<id>/ and any multipart upload left there."""
    prefix = f"{PREFIX}{backup_id}/"
    for upload in store.incomplete_uploads(prefix):
        with contextlib.suppress(Exception):
            store.abort_upload(upload["key"], upload["upload_id"])
    for obj in list(store.list_objects(prefix, versions=True)):
        store.delete(obj.key, obj.version_id)


def _quoted_pattern(schema: str, name: str) -> str:
    """A pg_dump table pattern matching exactly this table."""
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'


@dataclass
class _Outcome:
    size: int = 0
    sha256: str = ""
    snapshot: Snapshot | None = None
    included: set[str] = field(default_factory=set)
    manifest: dict[str, Any] = field(default_factory=dict)


def create_backup(settings: Any, kind: BackupKind | str = "full", *, started_by: str) -> Backup:
    """Take a backup (full, or a diff against the newest succeeded full) into the backup bucket and
    return its `backups` row (succeeded). On failure the row says failed and why, the partial object
    is removed, the backup.failed alert is raised, and BackupError is raised. See docs/backups.md."""
    requested = BackupKind(kind)
    ctx = _acting(started_by)
    with context.acting_as(ctx), own_session(settings) as session:
        try:
            master_key(settings)
        except BackupError as exc:
            # Nothing was attempted (no row), but a scheduled backup that cannot run must still be heard of.
            _refused(session, requested, str(exc))
            raise
        store = backup_store(settings)
        admin_url = settings.admin_database_url
        try:
            with psycopg.connect(libpq_url(admin_url), autocommit=True) as probe:
                head_now = migration_head(probe)
        except psycopg.Error as exc:
            raise BackupError(scrub(f"database unreachable: {exc}", admin_url)) from exc
        plan = _plan(settings, session, requested, store, head_now)
        backup = Backup(kind=plan.kind, base_id=uuid.UUID(plan.base["id"]) if plan.base else None,
                        bucket=store.bucket, object_key="", manifest_key="", started_by=started_by,
                        migration_head=head_now)
        session.add(backup)
        session.flush()
        backup.object_key, backup.manifest_key = dump_key(backup.id), manifest_key(backup.id)
        session.commit()
        backup_id = backup.id
        outcome = _Outcome()
        try:
            _take(settings, store, backup, plan, outcome)
        except BaseException as exc:  # a stopped job too: the row must not stay "running"
            known = (BackupError, StorageError, psycopg.Error, pg_tools.PgToolError, backup_crypto.CryptoError)
            message = scrub(str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}",
                            settings.database_url, admin_url)
            _fail(settings, session, store, backup_id, message, plan)
            if not isinstance(exc, Exception):
                raise
            raise BackupError(f"backup {backup_id} failed: {message}") from exc
        _succeed(session, backup, plan, outcome, requested)
        session.commit()
        session.refresh(backup)
        session.expunge(backup)
        return backup


def _take(settings: Any, store: Storage, backup: Backup, plan: _Plan, outcome: _Outcome) -> None:
    master = master_key(settings)
    admin_url = settings.admin_database_url
    with psycopg.connect(libpq_url(admin_url)) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        # The snapshot's transaction sits idle while pg_dump reads it: no server timeout may end it.
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        snap = read_snapshot(conn)
        outcome.snapshot = snap
        if plan.base is not None and snap.migration_head != plan.base["migration_head"]:
            # A migration ran between the plan and the snapshot.
            plan.kind, plan.base = BackupKind.FULL, None
            plan.note = "the database was migrated as the backup began: took a full backup instead of a diff"
        unchanged = _unchanged(snap.tables, plan.base) if plan.base is not None else set()
        outcome.included = set(snap.tables) - unchanged
        conninfo, env = program_conninfo(admin_url)
        command = [pg_tools.bin_path("pg_dump", settings), "--format=custom", f"--snapshot={snap.snapshot_id}",
                   "--no-password", f"--dbname={conninfo}"]
        command += [f"--exclude-table-data={_quoted_pattern(snap.tables[n]['schema'], snap.tables[n]['name'])}"
                    for n in sorted(unchanged)]
        chunks = _dump_chunks(command, env, admin_url)
        reader = backup_crypto.IteratorReader(backup_crypto.encrypt_stream(master, chunks))
        try:
            store.put(backup.object_key, cast(BinaryIO, reader), -1)
        finally:
            chunks.close()
        outcome.size, outcome.sha256 = reader.size, reader.sha256.hexdigest()
        conn.rollback()
    tables = {name: {**info, "included": name in outcome.included} for name, info in snap.tables.items()}
    outcome.manifest = {
        "format": MANIFEST_FORMAT, "id": str(backup.id), "kind": plan.kind.value,
        "base_id": plan.base["id"] if plan.base else None,
        "created_at": backup.created_at.isoformat(), "snapshot_at": snap.taken_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(), "migration_head": snap.migration_head,
        "server_version": snap.server_version, "key_id": backup_crypto.key_id(master).hex(),
        "tables": tables, "evidence_objects": snap.evidence_objects, "audit_head": snap.audit_head,
        "dump": {"key": backup.object_key, "size": outcome.size, "sha256": outcome.sha256},
        "note": plan.note,
    }
    store.put(backup.manifest_key, _encrypt_bytes(master, json.dumps(outcome.manifest, sort_keys=True).encode()),
              content_type="application/octet-stream")


def _succeed(session: Session, backup: Backup, plan: _Plan, outcome: _Outcome, requested: BackupKind) -> None:
    snap = outcome.snapshot
    assert snap is not None
    before = _summary(backup)
    backup.kind = plan.kind
    backup.base_id = uuid.UUID(plan.base["id"]) if plan.base else None
    backup.status = BackupStatus.SUCCEEDED
    backup.size_bytes, backup.sha256 = outcome.size, outcome.sha256
    backup.migration_head = snap.migration_head
    backup.tables = len(snap.tables)
    backup.rows = sum(int(t["rows"]) for t in snap.tables.values())
    backup.evidence_objects = len(snap.evidence_objects)
    backup.tables_included = len(outcome.included)
    backup.finished_at = datetime.fromisoformat(outcome.manifest["finished_at"])
    session.flush()
    audit.record(session, "backup.create", object_type="backup", object_id=backup.id, outcome=AuditOutcome.SUCCESS,
                 before=before, after=_summary(backup),
                 details={"requested_kind": requested.value, "note": plan.note})
    alerts.clear(session, rule=alerts.BACKUP_FAILED, subject_id=ALERT_SUBJECT,
                 reason=f"backup {backup.id} ({plan.kind.value}) succeeded")
    # The age check (drills.check_backup_age, every 15 minutes) would clear it too; a success says so now.
    alerts.clear(session, rule=alerts.BACKUP_STALE, subject_id="backup_age",
                 reason=f"backup {backup.id} ({plan.kind.value}) succeeded")


def _refused(session: Session, kind: BackupKind, message: str) -> None:
    audit.record(session, "backup.create", object_type="backup", outcome=AuditOutcome.ERROR,
                 details={"requested_kind": kind.value, "error": message})
    alerts.raise_alert(session, rule=alerts.BACKUP_FAILED, subject_type="backup", subject_id=ALERT_SUBJECT,
                       title=f"A {kind.value} backup was refused", severity=Severity.HIGH,
                       details={"kind": kind.value, "error": message}, message=message[:500])
    session.commit()


def _fail(settings: Any, session: Session, store: Storage, backup_id: uuid.UUID, message: str, plan: _Plan) -> None:
    """Mark the row failed, remove what was uploaded, audit, raise the alert (best effort: the
    failure may be the database or the store itself)."""
    log.error("backup %s failed: %s", backup_id, message)
    with contextlib.suppress(Exception):
        session.rollback()
    try:
        _remove_objects(store, backup_id)
    except Exception as exc:  # noqa: BLE001 (the store may be what failed)
        log.error("backup %s: partial objects not removed: %s", backup_id, exc)
    try:
        backup = session.get(Backup, backup_id)
        if backup is None:
            return
        before = _summary(backup)
        backup.status = BackupStatus.FAILED
        backup.error = message[:8000]
        backup.finished_at = datetime.now(UTC)
        session.flush()
        audit.record(session, "backup.create", object_type="backup", object_id=backup_id,
                     outcome=AuditOutcome.ERROR, before=before, after=_summary(backup),
                     details={"error": backup.error, "note": plan.note})
        alerts.raise_alert(session, rule=alerts.BACKUP_FAILED, subject_type="backup", subject_id=ALERT_SUBJECT,
                           title=f"The {plan.kind.value} backup {backup_id} failed", severity=Severity.HIGH,
                           details={"backup_id": backup_id, "kind": plan.kind.value, "error": backup.error},
                           message=f"Backup {backup_id} failed: {backup.error[:500]}")
        session.commit()
    except Exception as exc:  # noqa: BLE001 (the database may be what failed)
        log.error("backup %s: failure not recorded: %s", backup_id, scrub(str(exc), settings.database_url))
        with contextlib.suppress(Exception):
            session.rollback()


# --- restore (the implementation is governance.services.backup_restore) ---------------------------------

@dataclass
class RestoreResult:
    backup_id: str
    manifest: dict[str, Any]
    # From the first byte read to a migrated database.
    seconds: float
    migrated_from: str | None
    migrated_to: str | None
    bytes_restored: int = 0
    passes: int = 0
    notes: list[str] = field(default_factory=list)


def restore_backup(settings: Any, backup_id: uuid.UUID | str, target_url: str, *, migrate: bool = True,
                   progress: Callable[[str], None] | None = None) -> RestoreResult:
    """Restore a backup (from the bucket alone) into the empty database at target_url and, with
    migrate, run the migrations forward on it. See governance.services.backup_restore."""
    from governance.services import backup_restore

    return backup_restore.restore_backup(settings, backup_id, target_url, migrate=migrate, progress=progress)


# --- retention -------------------------------------------------------------------------------------------

@dataclass
class PruneResult:
    pruned: list[Backup]
    # Backups past the retention kept anyway, with why.
    kept: dict[uuid.UUID, str]
    dry_run: bool


def prune(settings: Any, *, now: datetime | None = None, dry_run: bool = False) -> PruneResult:
    """Remove the objects of succeeded backups older than settings.backup_retention_days, except the
    newest succeeded full and any full that a kept diff completes; their rows stay (status pruned,
    pruned_at). Audited per backup. dry_run: only say what would go."""
    moment = now or datetime.now(UTC)
    cutoff = moment - timedelta(days=settings.backup_retention_days)
    with own_session(settings) as session:
        live = list(session.scalars(select(Backup).where(Backup.status == BackupStatus.SUCCEEDED)
                                    .order_by(Backup.created_at)))
        expired = [b for b in live if b.created_at < cutoff]
        kept: dict[uuid.UUID, str] = {}
        newest = newest_full(session)
        if newest is not None and newest in expired:
            kept[newest.id] = "the newest succeeded full backup"
        leaving = {b.id for b in expired if b.id not in kept}
        for diff in live:
            if diff.kind == BackupKind.DIFF and diff.id not in leaving and diff.base_id in leaving:
                leaving.discard(diff.base_id)
                kept[diff.base_id] = f"the full backup of kept diff {diff.id}"
        pruned = [b for b in expired if b.id in leaving]
        if dry_run or not pruned:
            session.expunge_all()
            return PruneResult(pruned, kept, dry_run)
        store = backup_store(settings)
        with context.acting_as(_acting("job:backup_prune")):
            for backup in pruned:
                before = _summary(backup)
                _remove_objects(store, backup.id)
                backup.status, backup.pruned_at = BackupStatus.PRUNED, moment
                session.flush()
                audit.record(session, "backup.prune", object_type="backup", object_id=backup.id,
                             before=before, after=_summary(backup),
                             details={"created_at": backup.created_at,
                                      "retention_days": settings.backup_retention_days})
                # One commit per backup: its objects are gone, so its row must say so even if a later one fails.
                session.commit()
        for backup in pruned:
            session.refresh(backup)
        session.expunge_all()
        return PruneResult(pruned, kept, dry_run)


def run_scheduled(settings: Any, kind: str) -> Backup:
    """The gov:backup_full / gov:backup_diff jobs: take the backup and, after a full one, prune."""
    actor = f"job:backup_{kind}"
    with context.acting_as(context.ActionContext(actor_name=actor)):
        backup = create_backup(settings, kind, started_by=actor)
        if backup.kind == BackupKind.FULL:
            result = prune(settings)
            if result.pruned:
                log.info("pruned %d backup(s) past %d days", len(result.pruned), settings.backup_retention_days)
    return backup


__all__ = ["BackupError", "PruneResult", "RestoreResult", "backup_store", "create_backup", "list_from_bucket",
           "newest_restorable", "prune", "read_manifest", "restore_backup", "run_scheduled", "table_fingerprints"]

