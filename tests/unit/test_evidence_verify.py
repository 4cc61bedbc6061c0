"""`flask evidence verify`: every revision row against its object version in the store (exists, size,
SHA-256), object versions no row names, incomplete multipart uploads; exit codes 0 / 1 / 2."""

from __future__ import annotations

import hashlib
import os
import socket

from sqlalchemy import select, update

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.models.evidence import Evidence, EvidenceRevision
from governance.services import evidence as evidence_service
from governance.storage import Storage


def _verify(app, *args: str):
    return app.test_cli_runner().invoke(args=["evidence", "verify", *args])


def _last_entry(db_session) -> AuditLog:
    db_session.expire_all()
    # seq, the chain order: entries written in one test transaction share created_at (now()).
    return db_session.scalars(select(AuditLog).where(AuditLog.action == "evidence.verify")
                              .order_by(AuditLog.seq.desc())).first()


def _revision(db_session, evidence: Evidence) -> EvidenceRevision:
    return db_session.scalars(select(EvidenceRevision).where(EvidenceRevision.evidence_id == evidence.id)).one()


def test_a_consistent_store_passes_and_the_run_is_audited(app, db_session, make_user, make_evidence,
                                                           storage) -> None:
    engineer = make_user("engineer")
    make_evidence(engineer, b"first evidence")
    evidence = make_evidence(engineer, os.urandom(3 * 1024 * 1024 + 17), name="Bigger than one hash chunk")
    # A second revision of the same evidence: both versions are checked.
    data = b"revision two"
    key = evidence_service.object_key(evidence.id)
    stored = storage.put(key, data)
    evidence_service.add_revision(db_session(), evidence, evidence_service.StoredUpload(
        storage.bucket, key, stored.version_id, len(data), hashlib.sha256(data).hexdigest(), "text/plain", "r2.txt"),
        uploaded_by_id=engineer.id)
    db_session.commit()

    result = _verify(app)

    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 0 problem(s)")
    assert "3 revision(s) checked (size and SHA-256), 3 object version(s) listed" in result.output
    entry = _last_entry(db_session)
    assert entry.actor_name == "cli:evidence verify" and entry.outcome == AuditOutcome.SUCCESS
    assert entry.object_id == storage.bucket
    assert entry.details["revisions_checked"] == 3 and entry.details["problems"] == 0
    assert entry.details["hashed"] is True


def test_a_changed_hash_a_changed_size_and_a_missing_version_are_named(app, db_session, make_user, make_evidence,
                                                                        storage) -> None:
    engineer = make_user("engineer")
    tampered = _revision(db_session, make_evidence(engineer, b"hash will not match", name="Tampered"))
    resized = _revision(db_session, make_evidence(engineer, b"size will not match", name="Resized"))
    gone = _revision(db_session, make_evidence(engineer, b"deleted behind our back", name="Gone"))
    make_evidence(engineer, b"this one is fine", name="Fine")
    db_session.execute(update(EvidenceRevision).where(EvidenceRevision.id == tampered.id).values(sha256="0" * 64))
    db_session.execute(update(EvidenceRevision).where(EvidenceRevision.id == resized.id).values(size_bytes=1))
    db_session.commit()
    storage.delete(gone.object_key, gone.version_id)

    result = _verify(app)

    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    [sha_line] = [line for line in lines if line.startswith("SHA256")]
    assert tampered.object_key in sha_line and str(tampered.evidence_id) in sha_line and "0" * 64 in sha_line
    [size_line] = [line for line in lines if line.startswith("SIZE")]
    assert resized.object_key in size_line and "row says 1 bytes" in size_line
    [missing_line] = [line for line in lines if line.startswith("MISSING")]
    assert gone.object_key in missing_line and gone.version_id in missing_line
    summary = lines[-1]
    assert summary.startswith("PROBLEMS: 5 problem(s)")
    assert "1 missing, 1 size, 1 sha256" in summary
    # The evidence rows mirror their current revision: the two rows changed behind them no longer do.
    assert sum(line.startswith("MIRROR") for line in lines) == 2
    entry = _last_entry(db_session)
    assert entry.outcome == AuditOutcome.ERROR
    assert (entry.details["missing"], entry.details["size"], entry.details["sha256"]) == (1, 1, 1)

    # Size only: the changed hash goes unseen, the rest is still found.
    quick = _verify(app, "--no-hash")
    assert quick.exit_code == 1
    assert not any(line.startswith("SHA256") for line in quick.output.splitlines())
    assert "(size only)" in quick.output


def test_objects_no_row_names_and_delete_markers_are_listed(app, db_session, make_user, make_evidence,
                                                            storage) -> None:
    engineer = make_user("engineer")
    overwritten = _revision(db_session, make_evidence(engineer, b"original", name="Overwritten"))
    hidden = _revision(db_session, make_evidence(engineer, b"hidden", name="Hidden"))
    stray = storage.put("evidence/stray/object", b"nobody's")
    newer = storage.put(overwritten.object_key, b"a new version under a revision's key")
    storage.delete(hidden.object_key)  # no version: a delete marker on top
    storage.put("elsewhere/not-evidence", b"outside the evidence/ prefix: not ours to judge")

    result = _verify(app)

    assert result.exit_code == 1, result.output
    orphans = [line for line in result.output.splitlines() if line.startswith("ORPHAN")]
    assert sorted(orphans) == sorted([
        f"ORPHAN        evidence/stray/object version {stray.version_id}: no revision row names this object version",
        f"ORPHAN        {overwritten.object_key} version {newer.version_id}: "
        "no revision row names this object version",
    ])
    [marker] = [line for line in result.output.splitlines() if line.startswith("DELETE_MARKER")]
    assert hidden.object_key in marker and "still kept" in marker
    # The revisions' own versions are intact: none is missing or differs.
    assert not any(line.startswith(("MISSING", "SIZE", "SHA256")) for line in result.output.splitlines())
    assert "2 orphan, 1 delete marker" in result.output


def test_incomplete_uploads_are_listed_and_aborted_on_request(app, db_session, storage) -> None:
    upload_id = storage.client._create_multipart_upload(storage.bucket, "evidence/partial/upload", {})

    # Younger than the threshold (default an hour): perhaps running right now, so not a problem.
    fresh = _verify(app)
    assert fresh.exit_code == 0, fresh.output
    assert f"IN PROGRESS   evidence/partial/upload: multipart upload {upload_id}" in fresh.output

    abandoned = _verify(app, "--incomplete-age", "0")
    assert abandoned.exit_code == 1
    [line] = [x for x in abandoned.output.splitlines() if x.startswith("INCOMPLETE")]
    assert "evidence/partial/upload" in line and upload_id in line
    assert [u["upload_id"] for u in storage.incomplete_uploads()] == [upload_id]

    aborted = _verify(app, "--abort-incomplete", "--incomplete-age", "0")
    assert aborted.exit_code == 0, aborted.output
    assert f"ABORTED       evidence/partial/upload: multipart upload {upload_id}" in aborted.output
    assert storage.incomplete_uploads() == []
    entry = _last_entry(db_session)
    assert entry.details["aborted"] == 1
    assert entry.details["aborted_uploads"] == [{"key": "evidence/partial/upload", "upload_id": upload_id}]


def test_an_unreachable_store_exits_2_with_a_clear_message(app, db_session, storage, monkeypatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = Storage(f"127.0.0.1:{port}", "key", "secret", bucket=storage.bucket)
    monkeypatch.setitem(app.extensions, "storage", down)

    result = _verify(app)

    assert result.exit_code == 2
    assert f"error: UNREACHABLE: object store at 127.0.0.1:{port} unreachable" in result.output
    entry = _last_entry(db_session)
    assert entry.outcome == AuditOutcome.ERROR and "unreachable" in entry.details["unreachable"]
