"""Backups (governance.services.backups): encrypted full and diff backups, their manifests, failure
handling, retention and the CLI. Real PostgreSQL (scratch databases) and the real S3 server.

Restores are in test_backup_restore.py, which reuses the fixtures and helpers here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask_migrate
import psycopg
import pytest
from flask import Flask
from psycopg import sql
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import config
from cli.backup import backup_cli
from governance import backup_crypto
from governance.models.audit import Alert, AuditLog
from governance.models.enums import AlertStatus, AuditOutcome, BackupKind, BackupStatus
from governance.models.lifecycle import Backup
from governance.services import alerts, backups, pg_programs
from governance.storage import Storage


def libpq(url: str) -> str:
    return backups.libpq_url(url)


@dataclass
class Source:
    """A migrated scratch database and settings whose backups go to a bucket of this test's."""

    url: str
    app: Flask
    settings: config.Settings

    def sql(self, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params or {})
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def session(self) -> Session:
        return Session(create_engine(self.url))

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        return database_fingerprints(self.url)

    def store(self) -> Storage:
        return backups.backup_store(self.settings)


def database_fingerprints(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(libpq(url)) as conn:
        backups.stable_session(conn)
        return backups.table_fingerprints(conn)


@contextlib.contextmanager
def databases(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    """make(): a new empty database on the test server; all are dropped at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"gov_bk_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(libpq(pg_admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with psycopg.connect(libpq(pg_admin_url), autocommit=True) as conn:
            for name in made:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def removed_buckets() -> Iterator[list[config.Settings]]:
    """Settings appended to the list get their backup bucket removed at the end."""
    made: list[config.Settings] = []
    try:
        yield made
    finally:
        for settings in made:
            store = Storage.from_settings(settings, bucket=settings.backup_bucket)
            if store.client.bucket_exists(settings.backup_bucket):
                store.purge_bucket()


@pytest.fixture
def make_database(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    with databases(pg_admin_url) as make:
        yield make


def source_for(url: str, app_for: Callable[[str], Flask], test_settings: config.Settings, *,
               revision: str = "head") -> Source:
    app = app_for(url)
    with app.app_context():
        flask_migrate.upgrade(revision=revision)
    settings = dataclasses.replace(test_settings, database_url=url, database_admin_url=url,
                                   backup_bucket="bk-" + uuid.uuid4().hex[:12],
                                   backup_encryption_key=backup_crypto.new_key())
    return Source(url, app, settings)


@pytest.fixture
def buckets() -> Iterator[list[config.Settings]]:
    with removed_buckets() as made:
        yield made


@pytest.fixture
def source(scratch_database_url: str, app_for: Callable[[str], Flask], test_settings: config.Settings,
           buckets: list[config.Settings]) -> Source:
    made = source_for(scratch_database_url, app_for, test_settings)
    buckets.append(made.settings)
    return made


MARKER = "Zanzibar-Quokka-7731"


def add_frameworks(source: Source, *titles: str) -> None:
    for title in titles:
        source.sql("INSERT INTO frameworks (title, version) VALUES (:t, '1.0')", {"t": title})


def add_audit_entries(source: Source, count: int) -> None:
    """Entries through the real chain trigger (as the app's audit.record would write them)."""
    for i in range(count):
        source.sql("INSERT INTO audit_logs (actor_name, action, object_type, object_id, outcome, request_id, details) "
                   "VALUES ('test', 'test.entry', 'test', :i, 'success', :r, '{}'::jsonb)",
                   {"i": str(i), "r": uuid.uuid4().hex})


def add_evidence_revision(source: Source, key: str) -> None:
    """An evidence row with one revision pointing at an object (the manifest lists it)."""
    evidence_id = uuid.uuid4()
    source.sql("INSERT INTO evidence (id, name, bucket, object_key, size_bytes, sha256) "
               "VALUES (:id, :name, 'evidence', :k, 12, :s)",
               {"id": evidence_id, "name": MARKER, "k": key, "s": "ab" * 32})
    source.sql("INSERT INTO evidence_revisions (evidence_id, number, bucket, object_key, version_id, size_bytes, "
               "content_type, sha256, filename) VALUES (:e, 1, 'evidence', :k, 'v1', 12, 'text/plain', :s, 'a.txt')",
               {"e": evidence_id, "k": key, "s": "ab" * 32})


def rows_of(source: Source, model: Any) -> list[Any]:
    with source.session() as session:
        items = list(session.scalars(select(model).order_by(model.created_at)))
        session.expunge_all()
        return items


def backup_alert(source: Source) -> Alert | None:
    with source.session() as session:
        alert = session.scalars(select(Alert).where(Alert.rule == alerts.BACKUP_FAILED)
                                .order_by(Alert.created_at.desc()).limit(1)).first()
        if alert is not None:
            session.expunge(alert)
        return alert


def audit_of(source: Source, action: str) -> list[AuditLog]:
    with source.session() as session:
        entries = list(session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.seq)))
        session.expunge_all()
        return entries


# --- full backups ---------------------------------------------------------------------------------

def test_full_backup_streams_an_encrypted_dump_and_a_manifest_of_the_snapshot(source: Source) -> None:
    add_frameworks(source, MARKER, "Second framework")
    add_audit_entries(source, 3)
    add_evidence_revision(source, "evidence/objects/one")
    before = source.fingerprints()

    backup = backups.create_backup(source.settings, "full", started_by="test")

    assert backup.status == BackupStatus.SUCCEEDED and backup.kind == BackupKind.FULL and backup.base_id is None
    manifest = backups.read_manifest(source.settings, backup.id)
    assert manifest["format"] == backups.MANIFEST_FORMAT and manifest["id"] == str(backup.id)
    [(head,)] = source.sql("SELECT version_num FROM alembic_version")
    assert manifest["migration_head"] == backup.migration_head == head
    # The manifest describes the database as the dump saw it: every table, partitions included.
    assert set(manifest["tables"]) == set(before)
    assert any(name.startswith("audit_logs_") for name in manifest["tables"])
    assert "audit_logs" not in manifest["tables"]  # the partitioned parent holds no rows itself
    assert manifest["tables"]["frameworks"]["rows"] == 2
    assert manifest["tables"]["frameworks"]["fingerprint"] == before["frameworks"]["fingerprint"]
    assert all(t["included"] for t in manifest["tables"].values())
    assert manifest["evidence_objects"] == [{"bucket": "evidence", "key": "evidence/objects/one", "version_id": "v1",
                                             "sha256": "ab" * 32, "size": 12}]
    # The chain's head in the snapshot: the entry just before the backup's own audit entry.
    [entry] = audit_of(source, "backup.create")
    assert manifest["audit_head"] == {"seq": entry.seq - 1, "hash": bytes(entry.prev_hash).hex()}
    # The row: totals of the manifest, the stored object's size and hash.
    assert backup.tables == len(manifest["tables"]) == backup.tables_included
    assert backup.rows == sum(t["rows"] for t in manifest["tables"].values())
    assert backup.evidence_objects == 1
    stored = b"".join(source.store().open(backups.dump_key(backup.id)))
    assert backup.size_bytes == len(stored) == manifest["dump"]["size"]
    assert backup.sha256 == hashlib.sha256(stored).hexdigest() == manifest["dump"]["sha256"]
    # Audited, with its outcome.
    assert entry.outcome == AuditOutcome.SUCCESS and entry.object_id == str(backup.id)


def test_stored_objects_are_ciphertext_and_need_the_key(source: Source) -> None:
    add_frameworks(source, MARKER)
    backup = backups.create_backup(source.settings, "full", started_by="test")
    store = source.store()
    stored = b"".join(store.open(backups.dump_key(backup.id)))
    manifest_object = b"".join(store.open(backups.manifest_key(backup.id)))
    key = backup_crypto.load_key(source.settings.backup_encryption_key)
    plain = b"".join(backup_crypto.decrypt_stream(key, [stored]))
    # The plaintext is a pg_dump archive whose table of contents names our tables in the clear ...
    assert plain.startswith(b"PGDMP") and b"CREATE TABLE" in plain and b"evidence_revisions" in plain
    # ... the stored object shows none of it, nor the manifest.
    assert stored.startswith(backup_crypto.MAGIC)
    for needle in (b"PGDMP", b"CREATE TABLE", b"evidence_revisions", MARKER.encode()):
        assert needle not in stored
    assert MARKER.encode() not in manifest_object and b"frameworks" not in manifest_object
    # Another key is named as such.
    other = dataclasses.replace(source.settings, backup_encryption_key=backup_crypto.new_key())
    with pytest.raises(backups.BackupError, match="encrypted under another key"):
        backups.read_manifest(other, backup.id)


def test_missing_key_is_refused_and_alerted(source: Source) -> None:
    settings = dataclasses.replace(source.settings, backup_encryption_key=None)
    with pytest.raises(backups.BackupError, match="BACKUP_ENCRYPTION_KEY is not set"):
        backups.create_backup(settings, "full", started_by="test")
    assert rows_of(source, Backup) == []
    alert = backup_alert(source)
    assert alert is not None and alert.status == AlertStatus.OPEN
    [entry] = audit_of(source, "backup.create")
    assert entry.outcome == AuditOutcome.ERROR and "BACKUP_ENCRYPTION_KEY" in entry.details["error"]


def failing_bin_dir(tmp_path: Path) -> str:
    """A PG_BIN_DIR whose pg_dump writes some bytes, complains and exits non-zero (a real program)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pg_dump"
    script.write_text("#!/bin/sh\nprintf 'PGDMP partial output'\necho 'pg_dump: error: connection to server "
                      "failed: FATAL: password=hunter2 rejected' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(bin_dir)


def test_failure_marks_the_row_removes_the_object_raises_the_alert_and_success_clears_it(
        source: Source, tmp_path: Path) -> None:
    broken = dataclasses.replace(source.settings, pg_bin_dir=failing_bin_dir(tmp_path))
    with pytest.raises(backups.BackupError, match="pg_dump failed \\(exit status 3\\)") as failure:
        backups.create_backup(broken, "full", started_by="test")
    assert "hunter2" not in str(failure.value)  # secrets are masked even in a program's own words

    [row] = rows_of(source, Backup)
    assert row.status == BackupStatus.FAILED and row.finished_at is not None
    assert row.error is not None and "pg_dump failed" in row.error and "hunter2" not in row.error
    store = source.store()
    assert list(store.list_objects(f"backups/{row.id}/", versions=True)) == []
    assert store.incomplete_uploads(f"backups/{row.id}/") == []
    alert = backup_alert(source)
    assert alert is not None and alert.status == AlertStatus.OPEN and alert.details["backup_id"] == str(row.id)
    [entry] = audit_of(source, "backup.create")
    assert entry.outcome == AuditOutcome.ERROR and entry.object_id == str(row.id)

    good = backups.create_backup(source.settings, "full", started_by="test")
    assert good.status == BackupStatus.SUCCEEDED
    cleared = backup_alert(source)
    assert cleared is not None and cleared.id == alert.id and cleared.status == AlertStatus.RESOLVED
    assert [e.outcome for e in audit_of(source, "backup.create")] == [AuditOutcome.ERROR, AuditOutcome.SUCCESS]


# --- diffs -------------------------------------------------------------------------------------------

def test_diff_carries_only_the_tables_changed_since_the_full(source: Source) -> None:
    add_frameworks(source, "Kept", "Renamed", "Deleted")
    full = backups.create_backup(source.settings, "full", started_by="test")
    full_manifest = backups.read_manifest(source.settings, full.id)
    source.sql("UPDATE frameworks SET title = 'Renamed later' WHERE title = 'Renamed'")
    source.sql("DELETE FROM frameworks WHERE title = 'Deleted'")

    diff = backups.create_backup(source.settings, "diff", started_by="test")

    assert diff.kind == BackupKind.DIFF and diff.base_id == full.id and diff.status == BackupStatus.SUCCEEDED
    manifest = backups.read_manifest(source.settings, diff.id)
    assert manifest["base_id"] == str(full.id)
    changed = {name for name, t in manifest["tables"].items()
               if full_manifest["tables"].get(name, {}).get("fingerprint") != t["fingerprint"]}
    included = {name for name, t in manifest["tables"].items() if t["included"]}
    assert included == changed
    # frameworks changed; the backups row of the full changed (it finished); reference data did not.
    assert {"frameworks", "backups"} <= included
    assert "roles" not in included and "permissions" not in included
    assert diff.tables_included == len(included) < diff.tables == len(manifest["tables"])
    # The dump holds no data of the unchanged tables, and is smaller for it.
    key = backup_crypto.load_key(source.settings.backup_encryption_key)
    plain = b"".join(backup_crypto.decrypt_stream(key, source.store().open(backups.dump_key(diff.id))))
    from governance.services.backup_restore import parse_toc

    listing = parse_toc(_pg_restore_list(source.settings, plain))
    data = {e.name for e in listing if e.desc == "TABLE DATA"}
    assert data == {manifest["tables"][n]["name"] for n in included}
    assert {e.name for e in listing if e.desc == "TABLE"} >= {"roles", "permissions", "frameworks"}


def _pg_restore_list(settings: config.Settings, archive: bytes) -> str:
    import subprocess

    from governance import pg_tools

    done = subprocess.run([pg_tools.bin_path("pg_restore", settings), "--list"], input=archive,
                          capture_output=True, check=True)
    return done.stdout.decode()


def test_diff_without_a_full_or_across_a_migration_takes_a_full(source: Source) -> None:
    first = backups.create_backup(source.settings, "diff", started_by="test")
    assert first.kind == BackupKind.FULL and first.base_id is None
    assert "no succeeded full backup yet" in backups.read_manifest(source.settings, first.id)["note"]
    # The full was taken at another migration head (as if the database had been migrated since).
    head = source.sql("SELECT version_num FROM alembic_version")[0][0]
    source.sql("UPDATE alembic_version SET version_num = 'elsewhere'")
    second = backups.create_backup(source.settings, "full", started_by="test")
    source.sql("UPDATE alembic_version SET version_num = :h", {"h": head})
    third = backups.create_backup(source.settings, "diff", started_by="test")
    assert second.migration_head == "elsewhere"
    assert third.kind == BackupKind.FULL and third.migration_head == head
    assert "migration head elsewhere" in backups.read_manifest(source.settings, third.id)["note"]
    # Now a diff has a full at its head to complete.
    fourth = backups.create_backup(source.settings, "diff", started_by="test")
    assert fourth.kind == BackupKind.DIFF and fourth.base_id == third.id


# --- listing, retention ------------------------------------------------------------------------------------

def test_list_from_bucket_and_newest_restorable(source: Source) -> None:
    full = backups.create_backup(source.settings, "full", started_by="test")
    diff = backups.create_backup(source.settings, "diff", started_by="test")
    listed = backups.list_from_bucket(source.settings)
    assert [m["id"] for m in listed] == [str(diff.id), str(full.id)]
    with source.session() as session:
        newest = backups.newest_restorable(session)
        assert newest is not None and newest.id == diff.id


def _age(source: Source, backup_id: uuid.UUID, days: int) -> None:
    source.sql("UPDATE backups SET created_at = now() - make_interval(days => :d) WHERE id = :id",
               {"d": days, "id": backup_id})


def test_prune_removes_old_backups_but_keeps_the_newest_full_and_the_full_a_kept_diff_needs(source: Source) -> None:
    settings = dataclasses.replace(source.settings, backup_retention_days=30)
    old_full = backups.create_backup(settings, "full", started_by="test")
    old_diff = backups.create_backup(settings, "diff", started_by="test")
    base_full = backups.create_backup(settings, "full", started_by="test")
    kept_diff = backups.create_backup(settings, "diff", started_by="test")
    newest_full = backups.create_backup(settings, "full", started_by="test")
    for backup, days in ((old_full, 100), (old_diff, 99), (base_full, 60), (kept_diff, 10), (newest_full, 45)):
        _age(source, backup.id, days)
    store = source.store()

    dry = backups.prune(settings, dry_run=True)
    assert dry.dry_run and {b.id for b in dry.pruned} == {old_full.id, old_diff.id}
    assert set(dry.kept) == {base_full.id, newest_full.id}
    assert all(b.status == BackupStatus.SUCCEEDED for b in rows_of(source, Backup))
    assert audit_of(source, "backup.prune") == []

    result = backups.prune(settings)
    assert {b.id for b in result.pruned} == {old_full.id, old_diff.id}
    assert "kept diff" in result.kept[base_full.id] and "newest" in result.kept[newest_full.id]
    by_id = {b.id: b for b in rows_of(source, Backup)}
    for gone in (old_full.id, old_diff.id):
        assert by_id[gone].status == BackupStatus.PRUNED and by_id[gone].pruned_at is not None
        assert list(store.list_objects(f"backups/{gone}/", versions=True)) == []
    for kept in (base_full.id, kept_diff.id, newest_full.id):
        assert by_id[kept].status == BackupStatus.SUCCEEDED
        assert store.stat(backups.dump_key(kept)) is not None
    assert {e.object_id for e in audit_of(source, "backup.prune")} == {str(old_full.id), str(old_diff.id)}
    # The pruned ones are gone from the bucket's list too; a second prune has nothing to do.
    assert {m["id"] for m in backups.list_from_bucket(settings)} == {str(base_full.id), str(kept_diff.id),
                                                                    str(newest_full.id)}
    assert backups.prune(settings).pruned == []


def test_run_scheduled_full_prunes_afterwards(source: Source) -> None:
    settings = dataclasses.replace(source.settings, backup_retention_days=7)
    old = backups.create_backup(settings, "full", started_by="test")
    _age(source, old.id, 8)
    diff = backups.run_scheduled(settings, "diff")
    assert diff.kind == BackupKind.DIFF and diff.started_by == "job:backup_diff"
    assert {b.id: b.status for b in rows_of(source, Backup)}[old.id] == BackupStatus.SUCCEEDED  # a diff never prunes
    full = backups.run_scheduled(settings, "full")
    assert full.kind == BackupKind.FULL and full.started_by == "job:backup_full"
    statuses = {b.id: b.status for b in rows_of(source, Backup)}
    # `old` is past the retention, but the diff (within it) needs it: both stay.
    assert statuses[old.id] == BackupStatus.SUCCEEDED and statuses[diff.id] == BackupStatus.SUCCEEDED
    _age(source, diff.id, 8)
    backups.run_scheduled(settings, "full")
    statuses = {b.id: b.status for b in rows_of(source, Backup)}
    assert statuses[old.id] == BackupStatus.PRUNED and statuses[diff.id] == BackupStatus.PRUNED
    [entry, *_] = audit_of(source, "backup.prune")
    assert entry.actor_name == "job:backup_full"


# --- the CLI -----------------------------------------------------------------------------------------------

def cli(source: Source, *args: str) -> Any:
    source.app.config["SETTINGS"] = source.settings
    # Flask's CLI runs in the current app context when there is one (the session app's, pushed for
    # the whole run): push this source's own, so the command sees its settings.
    with source.app.app_context():
        return source.app.test_cli_runner().invoke(backup_cli, list(args))


def test_cli_create_list_and_prune(source: Source) -> None:
    made = cli(source, "create")
    assert made.exit_code == 0, made.output
    [full] = rows_of(source, Backup)
    assert f"backup {full.id} (full) succeeded" in made.output and full.started_by == "cli:backup create"
    diff = cli(source, "create", "--kind", "diff")
    assert diff.exit_code == 0 and "(diff) succeeded" in diff.output

    listed = cli(source, "list")
    assert listed.exit_code == 0 and str(full.id) in listed.output and "succeeded" in listed.output
    from_bucket = cli(source, "list", "--from-bucket")
    assert from_bucket.exit_code == 0 and str(full.id) in from_bucket.output

    _age(source, full.id, 400)
    dry = cli(source, "prune", "--dry-run")
    assert dry.exit_code == 0 and "would keep" in dry.output and str(full.id) in dry.output

    bad = cli(source, "create", "--kind", "weekly")
    assert bad.exit_code == 2 and "weekly" in bad.output


def test_cli_create_failure_exits_non_zero_with_the_reason(source: Source) -> None:
    source.settings = dataclasses.replace(source.settings, backup_encryption_key="not base64!")
    result = cli(source, "create")
    assert result.exit_code == 1
    assert "BACKUP_ENCRYPTION_KEY is not valid base64" in result.output


def test_scrub_masks_passwords() -> None:
    url = "postgresql+psycopg://app:s3cr%21t@db.example:5432/gov"
    assert "s3cr" not in pg_programs.scrub(f"could not connect to {url}", url)
    assert pg_programs.scrub("host=db password=abc dbname=x") == "host=db password=*** dbname=x"
    conninfo, env = pg_programs.program_conninfo(url)
    assert "s3cr" not in conninfo and env["PGPASSWORD"] == "s3cr!t"

