"""Restore drills over real backups (PostgreSQL + SeaweedFS), and the backup-age check.

The drill tests share one source database per module (migrated, with users and evidence whose
objects really are in the store) and take their own backups of it; each drill restores into a
scratch database on the same server, which must be gone afterwards. A test that damages something
(a manifest, an object, the audit log) damages only what it made, or puts it back before the next.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import flask_migrate
import psycopg
import pytest
from flask import Flask
from sqlalchemy import select, text

import config
from app import create_app
from extensions import db
from governance import backup_crypto, context
from governance.models.audit import Alert, AuditLog
from governance.models.enums import AlertStatus, AuditOutcome, BackupKind, BackupStatus, DrillStatus
from governance.models.lifecycle import Backup, RestoreDrill
from governance.services import alerts, backups, drills, identity
from governance.services import evidence as evidence_service
from governance.storage import Storage
from tests.conftest import TEST_OVERRIDES, TEST_PASSWORD, _create_database, _drop_database, _libpq

# --- the source database ----------------------------------------------------------------------------


@dataclasses.dataclass
class Source:
    app: Flask
    settings: config.Settings
    url: str
    evidence: Storage

    def backup(self) -> Backup:
        made = backups.create_backup(self.settings, "full", started_by="test")
        assert made.status == BackupStatus.SUCCEEDED, made.error
        return made

    def drill(self, backup_id: uuid.UUID | None = None) -> RestoreDrill:
        return drills.run_drill(self.settings, backup_id=backup_id, started_by="test", rng=random.Random(7))

    def alert(self) -> Alert | None:
        with self.app.app_context():
            found = db.session.scalars(select(Alert).where(Alert.rule == alerts.DRILL_FAILED)
                                       .order_by(Alert.created_at.desc()).limit(1)).first()
            db.session.remove()
            return found

    def add_evidence(self, data: bytes, *, record_version: bool = True) -> dict[str, Any]:
        """An evidence record whose object is in the store; record_version=False records no
        version id (as a store without versioning would), so an overwrite changes what it names."""
        with self.app.app_context(), context.acting_as(context.ActionContext(actor_name="test")):
            uploader = identity.create_user(db.session, email=f"up-{uuid.uuid4().hex[:8]}@example.test",
                                            name="Uploader", role_name="engineer", password=TEST_PASSWORD)
            evidence_id = uuid.uuid4()
            key = evidence_service.object_key(evidence_id)
            stored = self.evidence.put(key, data, content_type="text/plain")
            upload = evidence_service.StoredUpload(
                bucket=self.evidence.bucket, key=key, version_id=stored.version_id if record_version else None,
                size=len(data), sha256=hashlib.sha256(data).hexdigest(), content_type="text/plain",
                filename="notes.txt")
            evidence_service.create_evidence(
                db.session, evidence_id=evidence_id, meta=evidence_service.validate_meta({"name": f"E {key[-6:]}"}),
                upload=upload, uploaded_by_id=uploader.id, control_id=None, submit=True)
            db.session.commit()
            db.session.remove()
        return {"key": key, "version_id": stored.version_id}


@pytest.fixture(scope="module")
def source(pg_admin_url: str, test_settings: config.Settings) -> Iterator[Source]:
    url = _create_database(pg_admin_url, "gov_drillsrc")
    suffix = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        test_settings, database_url=url, database_admin_url=url, backup_bucket=f"bk-{suffix}",
        s3_evidence_bucket=f"ev-{suffix}", backup_encryption_key=backup_crypto.new_key(), drill_sample_objects=100)
    application = create_app(TEST_OVERRIDES, settings=settings)
    evidence = Storage.from_settings(settings)
    with application.app_context():
        flask_migrate.upgrade()
        db.session.remove()
    evidence.ensure_bucket()
    src = Source(application, settings, url, evidence)
    for n in range(3):
        src.add_evidence(f"evidence body {n}\n".encode())
    try:
        yield src
    finally:
        with application.app_context():
            db.engine.dispose()
        evidence.purge_bucket()
        backups.backup_store(settings).purge_bucket()
        _drop_database(pg_admin_url, url)


def _scratch_name(source: Source, drill: RestoreDrill) -> str:
    """The scratch database the drill used (its audit entry names it)."""
    with source.app.app_context():
        entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "backup.drill",
                                                          AuditLog.object_id == str(drill.id))).one()
        db.session.remove()
    return str(entry.details["scratch_database"])


def _rewrite_manifest(source: Source, backup_id: uuid.UUID, change: Any) -> None:
    """Re-encrypt a changed manifest into the bucket in place of the backup's own."""
    manifest = backups.read_manifest(source.settings, backup_id)
    change(manifest)
    master = backup_crypto.load_key(source.settings.backup_encryption_key)
    sealed = b"".join(backup_crypto.encrypt_stream(master, [json.dumps(manifest).encode()]))
    backups.backup_store(source.settings).put(backups.manifest_key(backup_id), sealed)


def _messages(drill: RestoreDrill, check: str) -> list[str]:
    return [p["message"] for p in drill.problems if p["check"] == check]


# --- drills -------------------------------------------------------------------------------------------

def test_a_drill_over_a_real_backup_passes_every_check(source: Source, pg_admin_url: str) -> None:
    made = source.backup()
    manifest = backups.read_manifest(source.settings, made.id)

    drill = source.drill()  # no id: the newest restorable backup, the one just made

    assert drill.backup_id == made.id
    assert drill.status == DrillStatus.PASSED, drill.problems
    assert drill.problems == []
    assert drill.restore_seconds is not None and drill.restore_seconds > 0
    assert drill.tables_checked == len(manifest["tables"])
    assert drill.rows_checked == sum(t["rows"] for t in manifest["tables"].values())
    assert drill.objects_checked == len(manifest["evidence_objects"]) == 3
    assert drill.chain_ok is True
    assert drill.finished_at is not None and drill.started_by == "test"
    assert [state for _check, state, _covered in drills.check_lines(drill)] == ["passed"] * len(drills.CHECKS)
    scratch = _scratch_name(source, drill)
    assert scratch.startswith(drills.SCRATCH_PREFIX)
    assert not drills.database_exists(pg_admin_url, scratch)
    with source.app.app_context():
        entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "backup.drill",
                                                          AuditLog.object_id == str(drill.id))).one()
        assert entry.outcome.value == "success" and entry.actor_name == "test"
        assert entry.details["migrate_seconds"] >= 0 and entry.details["restore_seconds"] > 0
        db.session.remove()


def test_a_manifest_row_count_mismatch_and_a_missing_table_fail_the_drill_and_a_pass_clears_it(
        source: Source, pg_admin_url: str) -> None:
    good = source.backup()
    bad = source.backup()

    def tamper(manifest: dict[str, Any]) -> None:
        manifest["tables"]["users"]["rows"] += 2
        manifest["tables"]["ghost_table"] = {"rows": 5, "fingerprint": "5:0"}

    _rewrite_manifest(source, bad.id, tamper)
    users = backups.read_manifest(source.settings, bad.id)["tables"]["users"]["rows"]

    failed = source.drill(bad.id)

    assert failed.status == DrillStatus.FAILED
    rows = _messages(failed, "rows")
    assert f"table users: expected {users} rows, found {users - 2}" in rows
    assert any(m.startswith("table ghost_table is missing from the restored database") for m in rows)
    assert len(rows) == 2
    assert not drills.database_exists(pg_admin_url, _scratch_name(source, failed))
    alert = source.alert()
    assert alert is not None and alert.status == AlertStatus.OPEN
    assert "A restore drill failed (2 problems)" in alert.title
    assert alert.details["drill_id"] == str(failed.id)

    passed = source.drill(good.id)

    assert passed.status == DrillStatus.PASSED, passed.problems
    cleared = source.alert()
    assert cleared is not None and cleared.id == alert.id and cleared.status == AlertStatus.RESOLVED


def test_a_tampered_and_a_missing_evidence_object_fail_the_drill(source: Source) -> None:
    overwritten = source.add_evidence(b"the original bytes\n", record_version=False)
    deleted = source.add_evidence(b"soon gone\n")
    made = source.backup()
    source.evidence.put(overwritten["key"], b"someone else's bytes\n")
    source.evidence.delete(deleted["key"], deleted["version_id"])
    try:
        drill = source.drill(made.id)

        assert drill.status == DrillStatus.FAILED
        problems = _messages(drill, "objects")
        assert len(problems) == 2, drill.problems
        assert any(overwritten["key"] in m and "SHA-256 is" in m for m in problems)
        assert any(deleted["key"] in m and "cannot be read" in m for m in problems)
        assert drill.objects_checked == 5
        assert drill.chain_ok is True and _messages(drill, "rows") == []
        assert source.alert() is not None and source.alert().status == AlertStatus.OPEN  # type: ignore[union-attr]
    finally:
        # Later backups name these objects too: put back what the records point at.
        source.evidence.put(overwritten["key"], b"the original bytes\n")
        again = source.evidence.put(deleted["key"], b"soon gone\n")
        with source.app.app_context(), db.engine.begin() as conn:
            conn.execute(text("UPDATE evidence_revisions SET version_id = :v WHERE object_key = :k"),
                         {"v": again.version_id, "k": deleted["key"]})


def test_a_broken_audit_chain_in_the_backup_fails_the_drill(source: Source) -> None:
    def set_actor_name(conn: Any, seq: int, name: str) -> None:
        conn.execute(text("SET LOCAL ROLE governance_break_glass"))
        conn.execute(text("UPDATE audit_logs SET actor_name = :n WHERE seq = :s"), {"n": name, "s": seq})

    with source.app.app_context(), db.engine.begin() as conn:
        seq, original = conn.execute(text("SELECT seq, actor_name FROM audit_logs ORDER BY seq LIMIT 1 OFFSET 2")).one()
        set_actor_name(conn, seq, "mallory")
    try:
        broken = source.backup()
    finally:
        with source.app.app_context(), db.engine.begin() as conn:
            set_actor_name(conn, seq, original)

    drill = source.drill(broken.id)

    assert drill.status == DrillStatus.FAILED
    assert drill.chain_ok is False
    chain = _messages(drill, "chain")
    assert chain and f"seq {seq}" in chain[0] and "content does not match its hash" in chain[0]
    assert _messages(drill, "rows") == [] and _messages(drill, "objects") == []
    assert source.alert() is not None and source.alert().status == AlertStatus.OPEN  # type: ignore[union-attr]

    healed = source.drill(source.backup().id)

    assert healed.status == DrillStatus.PASSED, healed.problems
    assert source.alert().status == AlertStatus.RESOLVED  # type: ignore[union-attr]


def test_a_drill_of_an_unknown_backup_fails_clearly(source: Source) -> None:
    missing = uuid.uuid4()

    drill = source.drill(missing)

    assert drill.status == DrillStatus.FAILED and drill.backup_id is None
    assert drill.problems == [{"check": "backup", "message": f"no backup to restore: backup {missing} does not exist"}]
    assert drill.restore_seconds is None and drill.tables_checked is None
    assert [s for _c, s, _x in drills.check_lines(drill)] == ["failed"] + ["not run"] * (len(drills.CHECKS) - 1)
    assert source.alert().status == AlertStatus.OPEN  # type: ignore[union-attr]
    assert source.drill(source.backup().id).status == DrillStatus.PASSED


def test_the_cli_prints_each_check_and_exits_1_on_failure(source: Source) -> None:
    good = source.backup()
    bad = source.backup()
    _rewrite_manifest(source, bad.id, lambda m: m["tables"]["roles"].update(rows=m["tables"]["roles"]["rows"] + 1))
    runner = source.app.test_cli_runner()

    # The CLI runs in the current app context (the session app's, pushed for the whole run): push
    # this source's own, so the command sees its settings.
    with source.app.app_context():
        ok = runner.invoke(args=["backup", "drill", "--backup", str(good.id)])
        failed = runner.invoke(args=["backup", "drill", "--backup", str(bad.id)])

    assert ok.exit_code == 0, ok.output
    assert "drill passed" in ok.output and "restore time:" in ok.output
    for title in drills.CHECK_TITLES.values():
        assert f"{title}: passed" in ok.output
    assert failed.exit_code == 1, failed.output
    assert "drill FAILED" in failed.output and "row counts against the manifest: failed" in failed.output
    assert "table roles: expected" in failed.output
    with source.app.app_context():
        actors = set(db.session.scalars(select(RestoreDrill.started_by).where(
            RestoreDrill.backup_id.in_([good.id, bad.id]))))
        db.session.remove()
    assert actors == {"cli:backup drill"}


# --- no backup at all, and the scheduled entry point ------------------------------------------------

def test_a_drill_with_no_backup_fails_with_no_backup_to_restore(
        pg_admin_url: str, test_settings: config.Settings) -> None:
    url = _create_database(pg_admin_url, "gov_drillnone")
    settings = dataclasses.replace(test_settings, database_url=url, database_admin_url=url)
    try:
        application = create_app(TEST_OVERRIDES, settings=settings)
        with application.app_context():
            flask_migrate.upgrade()
            db.session.remove()
            db.engine.dispose()

        drill = drills.run_scheduled(settings)

        assert drill.status == DrillStatus.FAILED and drill.started_by == drills.SCHEDULED_ACTOR
        assert drill.problems == [{"check": "backup", "message": "no backup to restore (none has succeeded yet)"}]
        with psycopg.connect(_libpq(url)) as conn:
            row = conn.execute("SELECT status, title FROM alerts WHERE rule = %s", (alerts.DRILL_FAILED,)).fetchone()
        assert row is not None and row[0] == "open" and "no backup to restore" in row[1]
    finally:
        _drop_database(pg_admin_url, url)


# --- the backup-age check -----------------------------------------------------------------------------

def _backup(session: Any, finished_ago: timedelta | None, status: BackupStatus = BackupStatus.SUCCEEDED) -> Backup:
    backup_id = uuid.uuid4()
    row = Backup(id=backup_id, kind=BackupKind.FULL, status=status, bucket="backups",
                 object_key=f"backups/{backup_id}/database.dump.enc",
                 manifest_key=f"backups/{backup_id}/manifest.json.enc", started_by="test",
                 finished_at=None if finished_ago is None else datetime.now(UTC) - finished_ago)
    session.add(row)
    session.flush()
    return row


def _stale_alerts(session: Any) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.rule == alerts.BACKUP_STALE)
                                .execution_options(populate_existing=True)))


def test_an_old_last_backup_raises_backup_stale_and_a_recent_one_clears_it(app: Flask, db_session: Any) -> None:
    settings = app.config["SETTINGS"]
    _backup(db_session, timedelta(hours=30))
    _backup(db_session, timedelta(hours=2), status=BackupStatus.FAILED)  # a failure is no backup

    state = drills.check_backup_age_now(lambda: db_session(), settings)

    assert state.stale and 29.9 < (state.age_hours or 0) < 30.1
    raised = _stale_alerts(db_session)
    assert len(raised) == 1 and raised[0].status == AlertStatus.OPEN
    assert raised[0].title == "No successful backup for 30 h (limit 26 h)"
    assert raised[0].severity.value == "high"

    _backup(db_session, timedelta(hours=1))
    state = drills.check_backup_age_now(lambda: db_session(), settings)

    assert not state.stale
    cleared = _stale_alerts(db_session)
    assert len(cleared) == 1 and cleared[0].status == AlertStatus.RESOLVED
    assert "a backup succeeded 1.0 h ago" in (cleared[0].resolution or "")


def test_no_backup_at_all_is_stale_only_once_the_database_is_older_than_the_limit(
        app: Flask, db_session: Any) -> None:
    from governance.services import audit

    settings = app.config["SETTINGS"]
    db_session.execute(text("DELETE FROM backups"))
    with context.acting_as(context.ActionContext(actor_name="test")):
        audit.record(db_session(), "test.young", object_type="test")
    db_session.flush()
    # The suite's database was made minutes ago: its first audit entry is young.
    first = db_session.scalar(select(AuditLog.created_at).order_by(AuditLog.created_at).limit(1))
    assert datetime.now(UTC) - first < timedelta(hours=1)

    young = drills.check_backup_age(db_session(), settings)

    assert young.newest_finished_at is None and not young.stale
    assert _stale_alerts(db_session) == []

    # An entry from three days ago makes the database older than the limit.
    db_session.add(AuditLog(actor_name="test", action="test.old", object_type="test", outcome=AuditOutcome.SUCCESS,
                            created_at=datetime.now(UTC) - timedelta(days=3)))
    db_session.flush()
    old = drills.check_backup_age(db_session(), settings)

    assert old.stale and old.age_hours is None and 71 < (old.database_age_hours or 0) < 73
    raised = _stale_alerts(db_session)
    assert len(raised) == 1 and raised[0].status == AlertStatus.OPEN
    assert raised[0].title == "No backup has ever succeeded, and the database is 72 h old (limit 26 h)"
