"""Restores (governance.services.backup_restore): full and diff backups into empty databases, a
backup made at an older migration head, refusals (non-empty target, wrong key, altered or swapped
objects) and `flask backup restore`. Real PostgreSQL and the real S3 server."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from flask import Flask

import config
from governance import backup_crypto
from governance.services import audit_chain, backup_restore, backups
from tests.unit.test_backups import (
    Source,
    add_audit_entries,
    add_evidence_revision,
    add_frameworks,
    cli,
    database_fingerprints,
    databases,
    libpq,
    removed_buckets,
    source_for,
)


# The fixtures of test_backups.py, again (pytest finds fixtures per module or conftest).
@pytest.fixture
def make_database(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    with databases(pg_admin_url) as make:
        yield make


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


def current_head() -> str:
    return str(ScriptDirectory(str(config.ROOT / "migrations")).get_current_head())


def head_of(url: str) -> str:
    with psycopg.connect(libpq(url)) as conn:
        head = backups.migration_head(conn)
    assert head is not None
    return head


def titles(url: str) -> set[str]:
    with psycopg.connect(libpq(url)) as conn:
        return {str(r[0]) for r in conn.execute("SELECT title FROM frameworks").fetchall()}


def event_triggers(url: str) -> set[str]:
    with psycopg.connect(libpq(url)) as conn:
        return {str(r[0]) for r in conn.execute("SELECT evtname FROM pg_event_trigger").fetchall()}


def test_full_backup_restores_every_table_exactly(source: Source, make_database: Callable[[], str]) -> None:
    add_frameworks(source, "Restored framework", "Another")
    add_audit_entries(source, 5)
    add_evidence_revision(source, "evidence/objects/restored")
    before = source.fingerprints()
    backup = backups.create_backup(source.settings, "full", started_by="test")
    manifest = backups.read_manifest(source.settings, backup.id)
    # The manifest is the source as the dump saw it: only the backup's own (running) row differs.
    assert {n for n in before if before[n]["fingerprint"] != manifest["tables"][n]["fingerprint"]} == {"backups"}
    target = make_database()
    progress: list[str] = []

    result = backups.restore_backup(source.settings, backup.id, target, progress=progress.append)

    restored = database_fingerprints(target)
    assert {n: (t["rows"], t["fingerprint"]) for n, t in restored.items()} == \
        {n: (t["rows"], t["fingerprint"]) for n, t in manifest["tables"].items()}
    assert result.passes == 1 and result.bytes_restored > 0 and result.backup_id == str(backup.id)
    assert result.migrated_from == result.migrated_to == head_of(source.url) == head_of(target)
    assert titles(target) == {"Restored framework", "Another"}
    # The chain verifies: restored entries were loaded before the triggers, so none was re-hashed.
    verified = audit_chain.verify_database(target)
    assert verified.ok, verified.summary()
    assert verified.rows == manifest["audit_head"]["seq"]
    with psycopg.connect(libpq(target)) as conn:
        row = conn.execute("SELECT seq, encode(hash, 'hex') FROM audit_chain_heads").fetchone()
    assert row is not None and {"seq": row[0], "hash": row[1]} == manifest["audit_head"]
    assert event_triggers(target) == event_triggers(source.url)
    assert any(line.startswith("pass 1/1") for line in progress)
    assert any("bytes restored" in line for line in progress)


# pg_restore straight into the database, or (as for servers before 17, automatic there) its SQL through psql.
@pytest.mark.parametrize("via_psql", [None, True], ids=["automatic", "via-psql"])
def test_diff_restores_the_state_at_the_diffs_time(source: Source, make_database: Callable[[], str],
                                                   via_psql: bool | None) -> None:
    add_frameworks(source, "Kept", "Renamed", "Deleted")
    add_audit_entries(source, 2)
    full = backups.create_backup(source.settings, "full", started_by="test")
    source.sql("UPDATE frameworks SET title = 'Renamed later' WHERE title = 'Renamed'")
    source.sql("DELETE FROM frameworks WHERE title = 'Deleted'")
    add_frameworks(source, "Added after the full")
    add_audit_entries(source, 2)
    # A sequence moved while its table did not change (the table's data is left out of the diff).
    source.sql("SELECT nextval('procrastinate_jobs_id_seq') FROM generate_series(1, 3)")
    diff = backups.create_backup(source.settings, "diff", started_by="test")
    sequences_then = sequences(source.url)
    assert diff.kind == "diff" and diff.base_id == full.id
    manifest = backups.read_manifest(source.settings, diff.id)
    # A change after the diff is not in it.
    add_frameworks(source, "After the diff")
    target = make_database()

    result = backup_restore.restore_backup(source.settings, diff.id, target, via_psql=via_psql)

    assert result.passes == 3
    assert titles(target) == {"Kept", "Renamed later", "Added after the full"}
    restored = database_fingerprints(target)
    assert {n: t["fingerprint"] for n, t in restored.items()} == \
        {n: t["fingerprint"] for n, t in manifest["tables"].items()}
    assert sequences(target) == sequences_then and sequences_then["public.procrastinate_jobs_id_seq"] == (3, True)
    assert not manifest["tables"]["procrastinate_jobs"]["included"]
    # Unchanged tables came from the full backup, whose data the diff does not carry.
    assert not manifest["tables"]["roles"]["included"] and restored["roles"]["rows"] > 0
    verified = audit_chain.verify_database(target)
    assert verified.ok, verified.summary()
    assert verified.rows == manifest["audit_head"]["seq"]


def sequences(url: str) -> dict[str, tuple[int | None, bool]]:
    with psycopg.connect(libpq(url)) as conn:
        names = [r[0] for r in conn.execute("SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) "
                                            "FROM pg_sequences").fetchall()]
        return {name: tuple(conn.execute(f"SELECT last_value, is_called FROM {name}").fetchone() or ())  # noqa: S608
                for name in names}


def test_a_backup_from_an_older_migration_head_restores_and_migrates_to_the_current_head(
        scratch_database_url: str, app_for: Callable[[str], Flask], test_settings: config.Settings,
        make_database: Callable[[], str], buckets: list[config.Settings]) -> None:
    old = source_for(scratch_database_url, app_for, test_settings, revision="0012_audit_pages")
    # The `backups` history lives in a database at the current head (the old schema has no such table),
    # the dump is taken of the old database (as the code of that time would have).
    bookkeeping = source_for(make_database(), app_for, test_settings)
    settings = dataclasses.replace(bookkeeping.settings, database_admin_url=old.url)
    buckets.append(settings)
    add_frameworks(old, "Framework of 0012", "Another of 0012")
    add_audit_entries(old, 3)
    assert head_of(old.url) == "0012_audit_pages"
    backup = backups.create_backup(settings, "full", started_by="test")
    assert backup.migration_head == "0012_audit_pages"
    target = make_database()

    result = backups.restore_backup(settings, backup.id, target)

    assert result.migrated_from == "0012_audit_pages"
    assert result.migrated_to == head_of(target) == current_head() != "0012_audit_pages"
    assert titles(target) == {"Framework of 0012", "Another of 0012"}
    with psycopg.connect(libpq(target)) as conn:  # a table the later migrations made
        assert conn.execute("SELECT count(*) FROM backups").fetchone() == (0,)
    verified = audit_chain.verify_database(target)
    assert verified.ok, verified.summary()

    # --no-migrate leaves it where the backup was.
    unmigrated = make_database()
    ran = cli(Source(bookkeeping.url, bookkeeping.app, settings), "restore", str(backup.id), "--target", unmigrated,
              "--no-migrate")
    assert ran.exit_code == 0, ran.output
    assert head_of(unmigrated) == "0012_audit_pages" and "0012_audit_pages -> 0012_audit_pages" in ran.output


def test_a_non_empty_target_is_refused_untouched(source: Source, make_database: Callable[[], str]) -> None:
    backup = backups.create_backup(source.settings, "full", started_by="test")
    target = make_database()
    with psycopg.connect(libpq(target), autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (id int)")
    with pytest.raises(backups.BackupError, match=r"is not empty .*public\.precious"):
        backups.restore_backup(source.settings, backup.id, target)
    with psycopg.connect(libpq(target)) as conn:
        tables = {r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relkind = 'r' "
                                             "AND relnamespace = 'public'::regnamespace").fetchall()}
    assert tables == {"precious"}


def _replace_object(source: Source, key: str, data: bytes) -> None:
    source.store().put(key, data)


def test_wrong_key_altered_and_swapped_objects_are_refused(source: Source, make_database: Callable[[], str]) -> None:
    first = backups.create_backup(source.settings, "full", started_by="test")
    second = backups.create_backup(source.settings, "full", started_by="test")
    store = source.store()
    target = make_database()

    other_key = dataclasses.replace(source.settings, backup_encryption_key=backup_crypto.new_key())
    with pytest.raises(backups.BackupError, match=r"encrypted under another key \(key id [0-9a-f]{16}"):
        backups.restore_backup(other_key, first.id, target)

    original = b"".join(store.open(backups.dump_key(first.id)))
    altered = bytearray(original)
    altered[len(altered) // 2] ^= 0x01
    _replace_object(source, backups.dump_key(first.id), bytes(altered))
    with pytest.raises(backups.BackupError, match="failed authentication"):
        backups.restore_backup(source.settings, first.id, target)
    _replace_object(source, backups.dump_key(first.id), original[:-100])
    with pytest.raises(backups.BackupError, match="truncated"):
        backups.restore_backup(source.settings, first.id, target)
    # The refusals above happen before pg_restore starts: the target is still empty.
    assert database_fingerprints(target) == {}

    # A valid object of another backup (same key) under this one's name: its SHA-256 gives it away.
    _replace_object(source, backups.dump_key(first.id), b"".join(store.open(backups.dump_key(second.id))))
    with pytest.raises(backups.BackupError, match="not the one its manifest names"):
        backups.restore_backup(source.settings, first.id, make_database())

    # A missing manifest (or backup) is named.
    with pytest.raises(backups.BackupError, match="no manifest"):
        backups.restore_backup(source.settings, uuid.uuid4(), make_database())


def test_cli_restore_end_to_end(source: Source, make_database: Callable[[], str], tmp_path: Path) -> None:
    add_frameworks(source, "Through the CLI")
    made = cli(source, "create")
    assert made.exit_code == 0, made.output
    backup_id = made.output.split()[1]
    target = make_database()

    ran = cli(source, "restore", backup_id, "--target", target)

    assert ran.exit_code == 0, ran.output
    assert "pass 1/1" in ran.output and "bytes restored" in ran.output and "migrated to" in ran.output
    assert titles(target) == {"Through the CLI"}
    again = cli(source, "restore", backup_id, "--target", target)
    assert again.exit_code == 1 and "is not empty" in again.output
    missing = cli(source, "restore", str(uuid.uuid4()), "--target", make_database())
    assert missing.exit_code == 1 and "no manifest" in missing.output
    no_target = cli(source, "restore", backup_id)
    assert no_target.exit_code == 2 and "--target" in no_target.output
