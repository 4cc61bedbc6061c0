"""Retention (governance.services.retention, audit_archive) on a database of its own per test: the
run detaches, exports and drops audit partitions for real, which the session database must not see.

Each test's database is a copy of one migrated template whose log was emptied after the old
partitions (2020-01..2020-04) were made, so the entries a test writes with old created_at take
the lowest seqs, as they would have when they were written.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import flask_migrate
import psycopg
import pytest
from flask import Flask
from psycopg import sql
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

import config
import embedded
from app import create_app
from extensions import db
from governance.models.evidence import Evidence, EvidenceRevision
from governance.models.frameworks import Control, Framework
from governance.models.lifecycle import AuditArchive
from governance.services import (
    audit_archive,
    audit_chain,
    evidence_verify,
    identity,
    legal_holds,
    partitions,
    retention,
)
from governance.services import evidence as evidence_service
from governance.storage import Storage
from tests.conftest import TEST_OVERRIDES, _create_database, _drop_database, _libpq, truncate_all

OLD_MONTHS = [date(2020, m, 1) for m in (1, 2, 3, 4)]


@pytest.fixture(scope="module")
def template_url(pg_admin_url: str, test_settings: config.Settings) -> Iterator[str]:
    url = _create_database(pg_admin_url, "gov_rt_tmpl")
    application = create_app(TEST_OVERRIDES, settings=dataclasses.replace(test_settings, database_url=url,
                                                                          database_admin_url=url))
    with application.app_context():
        flask_migrate.upgrade()
        partitions.ensure_partitions(db.session, months_ahead=len(OLD_MONTHS) - 1, start=OLD_MONTHS[0])
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    truncate_all(application)
    with application.app_context():
        db.engine.dispose()
    try:
        yield url
    finally:
        _drop_database(pg_admin_url, url)


@dataclasses.dataclass
class World:
    app: Flask
    url: str
    evidence_store: Storage
    cold: Storage

    @property
    def settings(self) -> config.Settings:
        return self.app.config["SETTINGS"]  # type: ignore[no-any-return]


@pytest.fixture
def world(pg_admin_url: str, template_url: str, test_settings: config.Settings,
          s3_server: embedded.S3State) -> Iterator[World]:
    name = f"gov_rt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(pg_admin_url), autocommit=True) as conn:
        template = make_url(template_url).database or ""
        # A copy needs the template idle: the prepared app's job-queue pool may still hold a connection.
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", (template,))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    url = make_url(template_url).set(database=name).render_as_string(hide_password=False)
    suffix = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(test_settings, database_url=url, database_admin_url=url,
                                   s3_evidence_bucket=f"ev-{suffix}", cold_bucket=f"cold-{suffix}")
    application = create_app(TEST_OVERRIDES, settings=settings)
    store = Storage.from_settings(settings)
    store.ensure_bucket()
    application.extensions["storage"] = store
    cold = Storage.from_settings(settings, bucket=settings.cold_bucket)
    try:
        with application.app_context():
            yield World(application, url, store, cold)
            db.session.remove()
            db.engine.dispose()
    finally:
        for bucket in (store, cold):
            if bucket.client.bucket_exists(bucket.bucket):
                bucket.purge_bucket()
        _drop_database(pg_admin_url, url)


def _entries(world: World, month: date, n: int, *, object_type: str = "test", object_id: str = "x") -> None:
    with psycopg.connect(_libpq(world.url)) as conn:
        for i in range(n):
            conn.execute("INSERT INTO audit_logs (actor_name, action, object_type, object_id, outcome, details, "
                         "created_at, user_agent) VALUES ('old', 'test.old', %s, %s, 'success', %s::jsonb, %s, %s)",
                         (object_type, object_id, f'{{"i": {i}, "q": "a,\\"b\\"\\nc"}}',
                          datetime(month.year, month.month, 3, 12, i, tzinfo=UTC), "" if i == 0 else None))


def _control(session: Any) -> Control:
    framework = Framework(title=f"F {uuid.uuid4().hex[:6]}", version="1")
    session.add(framework)
    session.flush()
    control = Control(framework_id=framework.id, ref_id="GV-1", title="Policies")
    session.add(control)
    session.flush()
    return control


def _evidence(world: World, user: Any, control: Control | None, *, age_days: int, data: bytes,
              locked_days: int | None = None) -> Evidence:
    session = db.session
    evidence_id = uuid.uuid4()
    key = evidence_service.object_key(evidence_id)
    stored = world.evidence_store.put(key, data)
    upload = evidence_service.StoredUpload(bucket=world.evidence_store.bucket, key=key, version_id=stored.version_id,
                                           size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                           content_type="application/pdf", filename="old.pdf")
    evidence = evidence_service.create_evidence(
        session, evidence_id=evidence_id, meta=evidence_service.validate_meta({"name": f"Old {age_days}"}),
        upload=upload, uploaded_by_id=user.id, control_id=control.id if control else None, submit=True)
    old = datetime.now(UTC) - timedelta(days=age_days)
    locked = datetime.now(UTC) + timedelta(days=locked_days) if locked_days else None
    session.execute(text("UPDATE evidence_revisions SET created_at = :old, locked_until = :locked "
                         "WHERE evidence_id = :id"), {"old": old, "locked": locked, "id": evidence_id})
    session.commit()
    return evidence


def _admin() -> Any:
    """An admin (created after a test's old entries: creating a user writes an entry of today)."""
    user = identity.create_user(db.session, email=f"a-{uuid.uuid4().hex[:6]}@example.test", name="Admin",
                                role_name="admin", password="correct horse battery staple")
    db.session.commit()
    return user


def _tables(world: World) -> set[str]:
    return set(partitions.list_partitions(db.session, "audit_logs"))


def _verify(world: World) -> audit_chain.VerifyResult:
    return audit_chain.verify_database(world.url)


# --- the plan and a dry run ---------------------------------------------------------------------


def test_dry_run_lists_everything_and_changes_nothing(world: World) -> None:
    control = _control(db.session)
    db.session.commit()
    _entries(world, OLD_MONTHS[0], 3)
    _entries(world, OLD_MONTHS[1], 2, object_type="control", object_id=str(control.id))
    _entries(world, OLD_MONTHS[2], 2)
    admin = _admin()
    plain = _evidence(world, admin, None, age_days=4000, data=b"%PDF plain")
    held = _evidence(world, admin, control, age_days=4000, data=b"%PDF held")
    locked = _evidence(world, admin, None, age_days=4000, data=b"%PDF locked", locked_days=30)
    fresh = _evidence(world, admin, None, age_days=10, data=b"%PDF fresh")
    hold = legal_holds.place(db.session, "control", control.id, "Matter 42", admin.id)
    db.session.commit()
    before = _tables(world)

    result = retention.execute(world.settings, dry_run=True, actor="test")

    by_name = {p.name: p for p in result.plan.partitions}
    assert by_name["audit_logs_p2020_01"].action == "archive"
    assert by_name["audit_logs_p2020_02"].action == "keep"
    assert f"control {control.id}" in by_name["audit_logs_p2020_02"].reason
    kept = by_name["audit_logs_p2020_02"].reason
    assert str(hold.id) in kept and "Matter 42" in kept
    later = by_name["audit_logs_p2020_03"]
    assert later.action == "keep" and "hole in the chain" in later.reason
    ev = {e.evidence_id: e for e in result.plan.evidence}
    assert ev[plain.id].action == "archive"
    assert ev[held.id].action == "keep" and str(hold.id) in ev[held.id].reason
    assert ev[locked.id].action == "skip" and ev[locked.id].reason.startswith("locked until ")
    assert fresh.id not in ev
    assert any("dry run" in line for line in result.lines())
    # Nothing moved.
    assert _tables(world) == before
    assert db.session.scalars(select(AuditArchive)).all() == []
    assert db.session.get(Evidence, plain.id).archived_at is None  # type: ignore[union-attr]
    entry = db.session.execute(text("SELECT details FROM audit_logs WHERE action = 'retention.dry_run'")).scalar_one()
    assert entry["partitions_to_archive"] == 1 and entry["evidence_to_archive"] == 1
    assert entry["evidence_held"] == 1 and entry["evidence_skipped"] == 1


# --- archiving ------------------------------------------------------------------------------------


def test_old_partitions_are_archived_verified_and_dropped_and_verify_still_passes(world: World) -> None:
    _entries(world, OLD_MONTHS[0], 4)
    _entries(world, OLD_MONTHS[1], 3)
    assert _verify(world).ok

    result = retention.execute(world.settings, actor="test")

    assert result.ok, result.errors
    names = [p.name for p in result.partitions]
    assert names == ["audit_logs_p2020_01", "audit_logs_p2020_02", "audit_logs_p2020_03", "audit_logs_p2020_04"]
    assert not {"audit_logs_p2020_01", "audit_logs_p2020_02"} & _tables(world)
    exists = db.session.execute(text("SELECT to_regclass('audit_logs_p2020_01')")).scalar()
    assert exists is None
    archives = {a.partition_name: a for a in db.session.scalars(select(AuditArchive))}
    first = archives["audit_logs_p2020_01"]
    assert (first.first_seq, first.last_seq, first.rows) == (1, 4, 4)
    assert archives["audit_logs_p2020_02"].first_seq == 5 and archives["audit_logs_p2020_02"].last_seq == 7
    assert archives["audit_logs_p2020_03"].rows == 0 and archives["audit_logs_p2020_03"].last_seq is None
    # The object is what the row says, and its rows chain from the zeros.
    raw = b"".join(world.cold.open(first.object_key))
    assert hashlib.sha256(raw).hexdigest() == first.sha256 and len(raw) == first.size_bytes
    lines = gzip.decompress(raw).decode()
    assert lines.startswith("id,") and lines.count('"test.old"') == 4
    exported = audit_archive.Exported(first.object_key, None, first.sha256, first.size_bytes, 4)
    last_seq, last_hash = audit_archive.verify_object(world.cold, exported, rows=4,
                                                      start=audit_archive.Checkpoint(0, audit_chain.ZERO_HASH))
    assert (last_seq, last_hash) == (4, first.last_hash)
    # Audited, with what the checkpoint needs.
    vouch = db.session.execute(text("SELECT details FROM audit_logs WHERE action = 'retention.audit_archived' "
                                    "AND object_id = 'audit_logs_p2020_02'")).scalar_one()
    second = archives["audit_logs_p2020_02"]
    assert vouch["last_seq"] == 7 and vouch["last_hash"] == second.last_hash.hex()  # type: ignore[union-attr]
    assert vouch["sha256"] == second.sha256 and vouch["object_key"] == "audit/audit_logs_p2020_02.csv.gz"
    ddl = db.session.execute(text("SELECT count(*) FROM audit_logs WHERE action = 'schema.change' "
                                  "AND details->>'expected' = 'true'")).scalar_one()
    assert ddl >= 4  # the DETACH and DROP of each, expected
    alerts = db.session.execute(text("SELECT count(*) FROM alerts WHERE rule = 'schema.change'")).scalar_one()
    assert alerts == 0
    # verify accepts the new start, vouched for by the chained entry.
    verified = _verify(world)
    assert verified.ok, verified.summary()
    assert verified.first_seq == 8 and "seq 1..7 archived" in verified.summary()


def test_a_hold_on_a_control_keeps_its_partition_and_the_later_ones(world: World) -> None:
    control = _control(db.session)
    db.session.commit()
    _entries(world, OLD_MONTHS[0], 2)
    _entries(world, OLD_MONTHS[1], 2, object_type="control", object_id=str(control.id))
    _entries(world, OLD_MONTHS[2], 2)
    admin = _admin()
    legal_holds.place(db.session, "control", control.id, "Litigation", admin.id)
    db.session.commit()

    result = retention.execute(world.settings, actor="test")

    assert [p.name for p in result.partitions] == ["audit_logs_p2020_01"]
    assert {"audit_logs_p2020_02", "audit_logs_p2020_03", "audit_logs_p2020_04"} <= _tables(world)
    assert _verify(world).ok


def test_a_partition_that_does_not_verify_is_reattached_and_nothing_is_lost(world: World) -> None:
    _entries(world, OLD_MONTHS[0], 3)
    with psycopg.connect(_libpq(world.url)) as conn:  # tamper: the export's chain check must catch it
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit_logs SET object_id = 'changed' WHERE seq = 2")

    result = retention.execute(world.settings, actor="test")

    assert not result.ok and "seq 2" in result.errors[0] and "re-attached" in result.errors[0]
    assert "audit_logs_p2020_01" in _tables(world)
    assert db.session.execute(text("SELECT count(*) FROM audit_logs_p2020_01")).scalar_one() == 3
    assert db.session.scalars(select(AuditArchive)).all() == []
    failed = db.session.execute(text("SELECT outcome::text, details->>'reattached' FROM audit_logs "
                                     "WHERE action = 'retention.audit_archive_failed'")).one()
    assert failed == ("error", "true")


# --- the chain checkpoint -------------------------------------------------------------------------


def _archive_one(world: World) -> AuditArchive:
    _entries(world, OLD_MONTHS[0], 3)
    result = retention.execute(dataclasses.replace(world.settings, retention_audit_months=12 * 6 + 10), actor="test")
    assert [p.name for p in result.partitions] == ["audit_logs_p2020_01"], result.errors
    return db.session.scalars(select(AuditArchive)).one()


def test_a_forged_archive_row_fails_verify(world: World) -> None:
    archive = _archive_one(world)
    assert _verify(world).ok
    with psycopg.connect(_libpq(world.url)) as conn:
        conn.execute("UPDATE audit_archives SET last_hash = %s WHERE id = %s", (bytes(32), archive.id))
    result = _verify(world)
    assert not result.ok
    assert "no retention.audit_archived entry in the live log vouches" in result.summary()


def test_a_dropped_partition_without_the_vouching_entry_fails_verify(world: World) -> None:
    _entries(world, OLD_MONTHS[0], 3)
    with psycopg.connect(_libpq(world.url)) as conn:  # dropped by hand, with an archive row but no entry
        last = conn.execute("SELECT seq, hash FROM audit_logs WHERE seq = 3").fetchone()
        assert last is not None
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        conn.execute("ALTER TABLE audit_logs DETACH PARTITION audit_logs_p2020_01")
        conn.execute("DROP TABLE audit_logs_p2020_01")
        conn.execute("INSERT INTO audit_archives (partition_name, range_start, range_end, first_seq, last_seq, "
                     "last_hash, rows, bucket, object_key, sha256, size_bytes, verified_at, dropped_at) VALUES "
                     "('audit_logs_p2020_01', '2020-01-01Z', '2020-02-01Z', 1, 3, %s, 3, 'x', 'k', %s, 1, "
                     "now(), now())",
                     (last[1], "0" * 64))
    result = _verify(world)
    assert not result.ok
    assert "seq 3" in result.summary() and "vouches" in result.summary()


def test_a_dropped_partition_without_any_record_is_a_removed_beginning(world: World) -> None:
    _entries(world, OLD_MONTHS[0], 3)
    _entries(world, OLD_MONTHS[1], 1)
    with psycopg.connect(_libpq(world.url)) as conn:
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        conn.execute("ALTER TABLE audit_logs DETACH PARTITION audit_logs_p2020_01")
        conn.execute("DROP TABLE audit_logs_p2020_01")
    result = _verify(world)
    assert not result.ok and "entry missing (seq 1..3 deleted" in result.summary()


# --- evidence ---------------------------------------------------------------------------------------


def test_old_evidence_moves_to_the_cold_bucket_and_stays_downloadable(world: World) -> None:
    framework_control = _control(db.session)
    linked_control = _control(db.session)
    db.session.commit()
    admin = _admin()
    data = b"%PDF-1.4 archived evidence\n" * 100
    moved = _evidence(world, admin, None, age_days=4000, data=data)
    via_framework = _evidence(world, admin, framework_control, age_days=4000, data=b"%PDF fw")
    direct = _evidence(world, admin, None, age_days=4000, data=b"%PDF direct")
    via_link = _evidence(world, admin, None, age_days=4000, data=b"%PDF link")
    locked = _evidence(world, admin, None, age_days=4000, data=b"%PDF lock", locked_days=5)
    db.session.execute(text("INSERT INTO evidence_links (evidence_id, control_id) VALUES (:e, :c)"),
                       {"e": via_link.id, "c": linked_control.id})
    legal_holds.place(db.session, "framework", framework_control.framework_id, "Regulator", admin.id)
    legal_holds.place(db.session, "evidence", direct.id, "Subpoena", admin.id)
    legal_holds.place(db.session, "control", linked_control.id, "Audit", admin.id)
    db.session.commit()
    original = db.session.scalars(select(EvidenceRevision).where(EvidenceRevision.evidence_id == moved.id)).one()
    original_version = original.version_id

    result = retention.execute(world.settings, actor="test")

    assert result.evidence == [moved.id], result.errors
    db.session.expire_all()
    evidence = db.session.get(Evidence, moved.id)
    revision = db.session.scalars(select(EvidenceRevision).where(EvidenceRevision.evidence_id == moved.id)).one()
    assert evidence is not None and evidence.bucket == world.cold.bucket and evidence.archived_at is not None
    assert revision.bucket == world.cold.bucket and revision.archived_at is not None
    assert world.evidence_store.stat(revision.object_key, original_version) is None  # the original is gone
    assert b"".join(world.cold.open(revision.object_key, revision.version_id)) == data
    for kept in (via_framework, direct, via_link, locked):
        row = db.session.get(Evidence, kept.id)
        assert row is not None and row.archived_at is None and row.bucket == world.evidence_store.bucket
    entry = db.session.execute(text("SELECT details FROM audit_logs "
                                    "WHERE action = 'retention.evidence_archived'")).scalar_one()
    assert entry["before"]["bucket"] == world.evidence_store.bucket and entry["after"]["bucket"] == world.cold.bucket
    # evidence verify checks it where it is now.
    report = evidence_verify.verify(db.session, world.evidence_store)
    assert report.clean, report.summary()
    # ...and the download reads it from the cold bucket.
    client = world.app.test_client()
    login = client.get("/login").get_data(as_text=True)
    import re

    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login)
    assert token is not None
    signed = client.post("/login", data={"email": admin.email, "password": "correct horse battery staple",
                                         "csrf_token": token.group(1), "next": ""})
    assert signed.status_code == 303
    download = client.get(f"/evidence/{moved.id}/revisions/1/download")
    assert download.status_code == 200 and download.data == data


def test_the_cli_prints_the_plan_and_places_and_releases_holds(world: World) -> None:
    control = _control(db.session)
    db.session.commit()
    _entries(world, OLD_MONTHS[0], 1)
    admin = _admin()
    runner = world.app.test_cli_runner()
    dry = runner.invoke(args=["retention", "run", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing changed" in dry.output and "ARCHIVE  audit_logs_p2020_01" in dry.output

    placed = runner.invoke(args=["retention", "hold", "--control", str(control.id), "--reason", "Case 7",
                                 "--by", admin.email])
    assert placed.exit_code == 0, placed.output
    hold_id = placed.output.split()[2]
    assert legal_holds.is_held(db.session, "control", control.id)
    refused = runner.invoke(args=["retention", "hold", "--control", str(control.id), "--reason", " "])
    assert refused.exit_code != 0 and "reason" in refused.output
    released = runner.invoke(args=["retention", "release", hold_id, "--reason", "Settled", "--by", admin.email])
    assert released.exit_code == 0, released.output
    db.session.expire_all()
    assert not legal_holds.is_held(db.session, "control", control.id)

    run = runner.invoke(args=["retention", "run"])
    assert run.exit_code == 0, run.output
    assert "archived partition audit_logs_p2020_01" in run.output
    assert io.StringIO(run.output).read().count("ERROR") == 0
