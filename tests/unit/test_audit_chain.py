"""audit_logs is append-only and hash-chained (migration 0011, governance.services.audit_chain).

Tampering tests change rows inside a transaction they roll back (verify_chain runs in the same
transaction), so the session database's chain stays whole for every other test.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from flask import Flask
from psycopg import errors, sql
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, scoped_session

import config
import embedded
from extensions import db
from governance import context
from governance.models.audit import Alert, AuditLog
from governance.models.enums import AuditOutcome, Severity
from governance.services import audit, audit_chain
from governance.storage import Storage

DBSession = scoped_session[Session]


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def url(app: Flask, test_settings: config.Settings) -> str:
    """The migrated session database's URL as the superuser (the app itself is the service login)."""
    assert test_settings.admin_database_url
    return test_settings.admin_database_url


@pytest.fixture
def superuser(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the suite's (superuser) role, rolled back at the end."""
    conn = psycopg.connect(_libpq(url))
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _insert(conn: psycopg.Connection[Any], n: int = 1, **values: Any) -> list[tuple[int, str]]:
    """n entries through plain SQL (the trigger chains them); returns (seq, id) of each."""
    made = []
    for i in range(n):
        row = conn.execute(
            "INSERT INTO audit_logs (actor_name, action, object_type, object_id, outcome, details, created_at) "
            "VALUES (%s, %s, 'test', %s, 'success', %s::jsonb, coalesce(%s, now())) RETURNING seq, id::text",
            (values.get("actor_name", "tester"), values.get("action", "test.write"), str(i),
             f'{{"n": {i}, "note": "é\\n"}}', values.get("created_at")),
        ).fetchone()
        assert row is not None
        made.append((int(row[0]), str(row[1])))
    return made


# --- the chain ----------------------------------------------------------------------------------


def test_each_entry_links_to_the_previous_and_python_recomputes_its_hash(db_session: DBSession) -> None:
    ctx = context.ActionContext(actor_name="Ada", ip="203.0.113.9", user_agent="pytest/1", request_id="r-1")
    entries = [audit.record(db_session(), "test.chain", object_type="test", object_id=i, ctx=ctx,
                            details={"i": i, "nested": {"b": [1, "x"], "a": None}, "ü": "ß"})
               for i in range(3)]
    db_session.flush()
    for entry in entries:
        db_session.refresh(entry)
    assert [e.seq for e in entries] == [entries[0].seq, entries[0].seq + 1, entries[0].seq + 2]
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
    for entry in entries:
        # The ORM's Python values, rendered as the documented text forms, give the trigger's hash.
        canonical = audit_chain.canonical_bytes(
            str(entry.id), entry.seq, audit_chain.epoch_us(entry.created_at),
            None if entry.actor_id is None else str(entry.actor_id), entry.actor_name, entry.action,
            entry.object_type, entry.object_id, entry.outcome.value, audit_chain.ip_text(entry.ip),
            entry.user_agent, entry.request_id, audit_chain.jsonb_text(entry.details))
        assert canonical.startswith(audit_chain.HEADER)
        assert audit_chain.entry_hash(entry.prev_hash, canonical) == entry.hash
        assert len(entry.hash) == 32

    result = audit_chain.verify_chain(db_session().connection().connection.driver_connection)
    assert result.ok, result.summary()
    assert result.last_seq == entries[-1].seq and result.rows == entries[-1].seq
    assert "rows/s" in result.summary()


def test_the_canonical_form_does_not_depend_on_the_session_time_zone(superuser: psycopg.Connection[Any]) -> None:
    superuser.execute("SET LOCAL TimeZone = 'Pacific/Kiritimati'")
    [(seq, _id)] = _insert(superuser, created_at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    superuser.execute("SET LOCAL TimeZone = 'America/Adak'")
    row = superuser.execute(f"SELECT {audit_chain.CHAIN_SELECT} FROM audit_logs WHERE seq = %s",  # noqa: S608
                            (seq,)).fetchone()
    assert row is not None
    assert row[2] == audit_chain.epoch_us(datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    assert audit_chain.entry_hash(row[13], audit_chain.canonical_of_row(row)) == row[14]
    assert audit_chain.verify_chain(superuser).ok


def test_concurrent_writers_make_one_gapless_chain(app: Flask, url: str, clean_database: None) -> None:
    writers, transactions, per_transaction = 6, 60, 3
    failures: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(worker: int) -> None:
        try:
            with psycopg.connect(_libpq(url)) as conn:
                start.wait(10)
                for _ in range(transactions):
                    with conn.transaction():
                        _insert(conn, per_transaction, actor_name=f"writer-{worker}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures

    with psycopg.connect(_libpq(url)) as conn:
        total, low, high, distinct = conn.execute(
            "SELECT count(*), min(seq), max(seq), count(DISTINCT seq) FROM audit_logs").fetchone() or ()
        writes = conn.execute("SELECT count(*) FROM audit_logs WHERE action = 'test.write'").fetchone()
    assert writes == (writers * transactions * per_transaction,)
    assert (low, high, distinct) == (1, total, total)
    result = audit_chain.verify_database(url)
    assert result.ok, result.summary()
    assert result.rows == total


def test_an_edited_entry_is_named(superuser: psycopg.Connection[Any]) -> None:
    made = _insert(superuser, 5)
    target_seq, target_id = made[2]
    superuser.execute("SET LOCAL session_replication_role = replica")  # triggers off (superuser only)
    superuser.execute("UPDATE audit_logs SET details = '{\"n\": 99}' WHERE seq = %s", (target_seq,))
    superuser.execute("SET LOCAL session_replication_role = origin")

    result = audit_chain.verify_chain(superuser)
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.seq, result.problem.id) == (target_seq, target_id)
    assert "a field was changed after the entry was written" in result.problem.reason
    assert result.problem.created_at is not None
    assert result.rows == target_seq - 1
    assert f"seq {target_seq} (id {target_id}" in result.summary()


def test_a_rewritten_hash_is_told_apart_from_rewritten_content(superuser: psycopg.Connection[Any]) -> None:
    made = _insert(superuser, 3)
    superuser.execute("SET LOCAL session_replication_role = replica")
    superuser.execute("UPDATE audit_logs SET hash = sha256('x') WHERE seq = %s", (made[1][0],))
    result = audit_chain.verify_chain(superuser)
    assert result.problem is not None and result.problem.seq == made[1][0]
    assert "stored hash was changed" in result.problem.reason


def test_a_deleted_entry_is_named(superuser: psycopg.Connection[Any]) -> None:
    made = _insert(superuser, 5)
    target_seq = made[1][0]
    # The other way to get past the triggers; the ALTER TABLE is itself audited (test_audit_ddl.py).
    superuser.execute("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_refuse_change")
    superuser.execute("DELETE FROM audit_logs WHERE seq = %s", (target_seq,))
    superuser.execute("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_refuse_change")

    result = audit_chain.verify_chain(superuser)
    assert result.problem is not None
    assert result.problem.seq == target_seq
    assert f"seq {target_seq} deleted" in result.problem.reason
    assert made[2][1] in result.problem.reason  # the next entry still present


def test_a_removed_tail_shows_against_the_head(superuser: psycopg.Connection[Any]) -> None:
    made = _insert(superuser, 3)
    superuser.execute("SET CONSTRAINTS audit_logs_chain_head IMMEDIATE")  # the head moves, as at commit
    superuser.execute("SET LOCAL session_replication_role = replica")
    superuser.execute("DELETE FROM audit_logs WHERE seq >= %s", (made[1][0],))
    result = audit_chain.verify_chain(superuser)
    assert result.problem is None
    assert result.head_problem is not None
    assert f"entries after seq {made[0][0]} are missing" in result.head_problem
    assert not result.ok


@pytest.mark.parametrize("utf8_client", [True, False])
def test_the_verify_expression_gives_the_python_canonical_bytes(superuser: psycopg.Connection[Any],
                                                                utf8_client: bool) -> None:
    """canonical_sql (what verify hashes in the server) and canonical_bytes (what _diagnose and the
    bench use) agree byte for byte, NULLs, non-ASCII, backslashes, control characters and IPv6 too."""
    made = superuser.execute(
        "INSERT INTO users (email, name, password_hash, role_id) SELECT 'odd@example.test', 'Odd', 'x', id"
        " FROM roles ORDER BY name LIMIT 1 RETURNING id").fetchone()
    assert made is not None
    actor = made[0]
    superuser.execute(
        "INSERT INTO audit_logs (actor_id, actor_name, action, object_type, object_id, outcome, ip, user_agent,"
        " request_id, details) VALUES (NULL, 'Zoë \\ \"q\"', 'test.odd', NULL, NULL, 'denied', '2001:db8::1',"
        " NULL, NULL, %s::jsonb), (%s, '', 'test.odd', '', 'ß', 'error', '10.0.0.0/8', 'ua\t1',"
        " 'r', '{}')",
        (json.dumps({"tab": "a\tb", "bell": "\u0007", "emoji": "😀", "back\\slash": "\\",
                     "deep": {"k": [1, None, True]}}), actor))
    rows = superuser.execute(
        f"SELECT {audit_chain.CHAIN_SELECT}, {audit_chain.canonical_sql(utf8_client)} FROM audit_logs"  # noqa: S608
        " WHERE action = 'test.odd' ORDER BY seq").fetchall()
    assert len(rows) == 2
    for row in rows:
        assert bytes(row[15]) == audit_chain.canonical_of_row(row)
        assert audit_chain.entry_hash(bytes(row[13]), bytes(row[15])) == bytes(row[14])
    assert audit_chain.verify_chain(superuser).ok


def test_verify_does_not_trust_the_stored_canonical_function(superuser: psycopg.Connection[Any]) -> None:
    """A replaced audit_log_canonical (what the trigger hashes) does not fool verify: the expression
    it recomputes is written in the verifier, so the first entry hashed by the forgery is named."""
    _insert(superuser, 2)
    assert audit_chain.verify_chain(superuser).ok
    superuser.execute(
        "CREATE OR REPLACE FUNCTION audit_log_canonical(p_id uuid, p_seq bigint, p_created_at timestamptz,"
        " p_actor_id uuid, p_actor_name text, p_action text, p_object_type text, p_object_id text,"
        " p_outcome text, p_ip inet, p_user_agent text, p_request_id text, p_details jsonb) RETURNS bytea"
        " LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$")
    # The DDL itself is audited (test_audit_ddl.py): that entry is the first the forgery hashed.
    first_forged = superuser.execute("SELECT max(seq) FROM audit_logs").fetchone()
    assert first_forged is not None
    row = superuser.execute("SELECT action FROM audit_logs WHERE seq = %s", first_forged).fetchone()
    assert row is not None and row[0].startswith("schema.")
    _insert(superuser, 2)
    result = audit_chain.verify_chain(superuser)
    assert result.problem is not None and result.problem.seq == first_forged[0]
    assert "content does not match its hash" in result.problem.reason


def test_a_rewritten_link_is_named(superuser: psycopg.Connection[Any]) -> None:
    made = _insert(superuser, 4)
    superuser.execute("SET LOCAL session_replication_role = replica")
    superuser.execute("UPDATE audit_logs SET prev_hash = sha256('x') WHERE seq = %s", (made[2][0],))
    result = audit_chain.verify_chain(superuser)
    assert result.problem is not None and (result.problem.seq, result.problem.id) == made[2]
    assert f"prev_hash does not match the hash of seq {made[2][0] - 1}" in result.problem.reason
    assert result.rows == made[2][0] - 1


def test_a_duplicated_entry_is_named(superuser: psycopg.Connection[Any]) -> None:
    made = _insert(superuser, 3)
    superuser.execute("SET LOCAL session_replication_role = replica")
    superuser.execute(
        "INSERT INTO audit_logs (id, seq, prev_hash, hash, created_at, actor_name, action, object_type, object_id,"
        " outcome, details) SELECT gen_random_uuid(), seq, prev_hash, hash, created_at + interval '1 second',"
        " actor_name, action, object_type, object_id, outcome, details FROM audit_logs WHERE seq = %s",
        (made[1][0],))
    result = audit_chain.verify_chain(superuser)
    assert result.problem is not None and result.problem.seq == made[1][0]
    assert f"seq {made[1][0]} appears 2 times" in result.problem.reason


def test_the_first_problem_is_named_when_there_are_several(superuser: psycopg.Connection[Any]) -> None:
    made = _insert(superuser, 6)
    superuser.execute("SET LOCAL session_replication_role = replica")
    superuser.execute("UPDATE audit_logs SET actor_name = 'late' WHERE seq = %s", (made[4][0],))
    superuser.execute("DELETE FROM audit_logs WHERE seq = %s", (made[1][0],))
    result = audit_chain.verify_chain(superuser)
    assert result.problem is not None and result.problem.seq == made[1][0]
    assert "deleted" in result.problem.reason


def test_a_failed_verification_raises_the_critical_alert(admin_db_session: DBSession) -> None:
    db_session = admin_db_session  # session_replication_role needs a superuser
    entry = audit.record(db_session(), "test.alert", object_type="test")
    db_session.flush()
    db_session.execute(text("SET LOCAL session_replication_role = replica"))
    db_session.execute(text("UPDATE audit_logs SET actor_name = 'mallory' WHERE id = :id"), {"id": entry.id})
    db_session.execute(text("SET LOCAL session_replication_role = origin"))
    result = audit_chain.verify_chain(db_session().connection().connection.driver_connection)
    assert result.problem is not None and result.problem.id == str(entry.id)

    alert = audit_chain.report_failure(db_session(), result)
    db_session.flush()
    stored = db_session.scalars(select(Alert).where(Alert.id == alert.id)).one()
    assert (stored.rule, stored.severity, stored.source_type, stored.source_id) == (
        "audit.chain_broken", Severity.CRITICAL, "audit_log", "chain")
    assert stored.details["seq"] == entry.seq and stored.details["id"] == str(entry.id)


# --- anchors ------------------------------------------------------------------------------------


@pytest.fixture
def anchor_bucket(s3_server: embedded.S3State) -> Iterator[Storage]:
    store = Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key,
                    bucket="anchors-" + uuid.uuid4().hex[:12])
    store.ensure_bucket(object_lock=True)
    try:
        yield store
    finally:
        store.purge_bucket()


def _rewrite_from(conn: psycopg.Connection[Any], seq: int) -> None:
    """What an attacker with the database would do: change an entry, then recompute every hash
    after it and the head, so the chain is whole again."""
    conn.execute("SET LOCAL session_replication_role = replica")
    conn.execute("UPDATE audit_logs SET action = 'test.innocent' WHERE seq = %s", (seq,))
    prev = conn.execute("SELECT hash FROM audit_logs WHERE seq = %s", (seq - 1,)).fetchone()
    prev_hash = bytes(prev[0]) if prev else audit_chain.ZERO_HASH
    rows = conn.execute(f"SELECT {audit_chain.CHAIN_SELECT} FROM audit_logs WHERE seq >= %s "  # noqa: S608
                        "ORDER BY seq", (seq,)).fetchall()
    for row in rows:
        new_hash = audit_chain.entry_hash(prev_hash, audit_chain.canonical_of_row(row))
        conn.execute("UPDATE audit_logs SET prev_hash = %s, hash = %s WHERE seq = %s", (prev_hash, new_hash, row[1]))
        prev_hash = new_hash
    conn.execute("UPDATE audit_chain_heads SET hash = %s", (prev_hash,))
    conn.execute("SET LOCAL session_replication_role = origin")


def test_an_anchor_detects_a_whole_chain_rewrite(app: Flask, url: str, clean_database: None,
                                                 anchor_bucket: Storage) -> None:
    with psycopg.connect(_libpq(url)) as conn:
        made = _insert(conn, 4)
    with Session(db.engine) as session:
        anchor = audit_chain.export_anchor(session, anchor_bucket, lock_days=1)
        session.commit()
    assert anchor.seq == made[-1][0]
    assert anchor_bucket.stat(anchor.key) is not None
    assert anchor_bucket.client.get_object_retention(anchor_bucket.bucket, anchor.key) is not None
    [read] = audit_chain.latest_anchors(anchor_bucket)
    assert (read.seq, read.hash, read.key) == (anchor.seq, anchor.hash, anchor.key)

    with psycopg.connect(_libpq(url)) as conn:
        assert audit_chain.verify_chain(conn, anchors=[read]).ok
        _rewrite_from(conn, made[1][0])
        # The chain is consistent again: only the anchor exported before the rewrite tells.
        alone = audit_chain.verify_chain(conn)
        assert alone.ok, alone.summary()
        result = audit_chain.verify_chain(conn, anchors=audit_chain.latest_anchors(anchor_bucket))
        conn.rollback()
    assert result.problem is None and result.anchor_problem is not None
    assert result.anchor_problem.seq == anchor.seq
    assert result.anchor_problem.id == made[-1][1]
    assert "rewrite detected" in result.anchor_problem.reason and anchor.key in result.anchor_problem.reason


def test_anchor_and_verify_jobs_are_scheduled(app: Flask) -> None:
    from governance import jobs

    crons = {p.task.name: p.cron for p in app.extensions["jobs"].periodic_registry.periodic_tasks.values()}
    assert crons[jobs.AUDIT_ANCHOR] == "7 * * * *"
    assert crons[jobs.AUDIT_VERIFY] == "40 2 * * *"


def test_the_anchor_job_writes_into_the_configured_bucket(app: Flask, clean_database: None,
                                                          test_settings: config.Settings) -> None:
    import dataclasses

    bucket = "anchors-" + uuid.uuid4().hex[:12]
    settings = dataclasses.replace(test_settings, audit_anchor_bucket=bucket, audit_anchor_lock_days=1)
    factory = lambda: Session(db.engine)  # noqa: E731
    anchor = audit_chain.export_anchor_now(factory, settings)
    store = audit_chain.anchor_store(settings)
    try:
        [read] = audit_chain.latest_anchors(store)
        assert (read.seq, read.hash) == (anchor.seq, anchor.hash)
        result = audit_chain.verify_now(settings.database_url or "", factory, settings)
        assert result.ok and result.anchors_checked == 1, result.summary()
        with Session(db.engine) as session:
            exported = session.scalars(select(AuditLog).where(AuditLog.action == "audit.anchor_export")).one()
            assert exported.object_id == anchor.key and exported.actor_name == "job:audit_anchor"
    finally:
        store.purge_bucket()


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_verify_reports_rows_per_second_and_names_a_tampered_entry(app: Flask, url: str,
                                                                        clean_database: None) -> None:
    runner = app.test_cli_runner()
    with psycopg.connect(_libpq(url)) as conn:
        made = _insert(conn, 3)
    ok = runner.invoke(args=["audit", "verify", "--no-anchors"])
    assert ok.exit_code == 0, ok.output
    assert "audit chain OK" in ok.output and "rows/s" in ok.output

    with psycopg.connect(_libpq(url)) as conn:  # committed: the CLI reads on a connection of its own
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit_logs SET object_id = 'changed' WHERE seq = %s", (made[1][0],))
    broken = runner.invoke(args=["audit", "verify", "--no-anchors"])
    assert broken.exit_code == 1
    assert f"seq {made[1][0]} (id {made[1][1]}" in broken.output
    with Session(db.engine) as session:
        alert = session.scalars(select(Alert).where(Alert.rule == "audit.chain_broken")).one()
        assert alert.severity == Severity.CRITICAL and alert.details["seq"] == made[1][0]


# --- append-only ----------------------------------------------------------------------------------


@pytest.fixture
def app_role(app: Flask, url: str, clean_database: None, admin_engine: Any) -> Iterator[str]:
    """A LOGIN role granted the app's privileges with grant_app_role; its connection URL."""
    name = "app_" + uuid.uuid4().hex[:10]
    password = uuid.uuid4().hex
    with admin_engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
        statements = audit_chain.grant_app_role(conn, name)
    assert any("GRANT SELECT, INSERT ON audit_logs" in s for s in statements)
    role_url = make_url(_libpq(url)).set(username=name, password=password).render_as_string(hide_password=False)
    try:
        yield role_url
    finally:
        with admin_engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {name}"))
            conn.execute(text(f"DROP ROLE {name}"))


def _refused(conn: psycopg.Connection[Any], statement: str) -> str:
    """Run statement in a savepoint (rolled back) and return the refusal's message."""
    with pytest.raises(errors.InsufficientPrivilege) as caught, conn.transaction():
        conn.execute(statement)
    return str(caught.value)


def test_the_app_role_may_insert_and_read_but_not_change_the_log(app_role: str) -> None:
    with psycopg.connect(app_role) as conn:
        [(seq, entry_id)] = _insert(conn)
        assert conn.execute("SELECT id::text FROM audit_logs WHERE seq = %s", (seq,)).fetchone() == (entry_id,)
        conn.commit()
        for statement in ("UPDATE audit_logs SET action = 'x'", "DELETE FROM audit_logs",
                          "TRUNCATE audit_logs", "TRUNCATE audit_logs_default",
                          "UPDATE audit_chain_heads SET seq = 0", "SELECT * FROM audit_logs_default"):
            message = _refused(conn, statement)
            assert "permission denied" in message, statement
        # What it needs elsewhere it has.
        conn.execute("UPDATE users SET name = name WHERE false")
        conn.execute("DELETE FROM notifications WHERE false")
        conn.rollback()


def test_the_triggers_refuse_even_a_superuser(superuser: psycopg.Connection[Any]) -> None:
    _insert(superuser, 2)
    _insert(superuser, created_at=datetime(2299, 1, 1, tzinfo=UTC))  # lands in the DEFAULT partition
    # The head moves at commit; a pending move would make PostgreSQL refuse TRUNCATE on its own.
    superuser.execute("SET CONSTRAINTS audit_logs_chain_head IMMEDIATE")
    for statement in ("UPDATE audit_logs SET action = 'x' WHERE action = 'test.write'",
                      "DELETE FROM audit_logs WHERE action = 'test.write'",
                      "TRUNCATE audit_logs", "TRUNCATE audit_logs_default",
                      "TRUNCATE users CASCADE"):
        message = _refused(superuser, statement)
        assert "audit_logs is append-only" in message, statement
    assert audit_chain.verify_chain(superuser).ok


def test_the_break_glass_role_may_change_the_log(superuser: psycopg.Connection[Any]) -> None:
    made = _insert(superuser, 3)
    superuser.execute("SET CONSTRAINTS audit_logs_chain_head IMMEDIATE")
    superuser.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(audit_chain.BREAK_GLASS_ROLE)))
    updated = superuser.execute("UPDATE audit_logs SET action = 'test.corrected' WHERE seq = %s", (made[0][0],))
    deleted = superuser.execute("DELETE FROM audit_logs WHERE seq = %s", (made[1][0],))
    assert (updated.rowcount, deleted.rowcount) == (1, 1)
    superuser.execute("TRUNCATE audit_logs_default")
    superuser.execute("TRUNCATE audit_logs")
    superuser.execute("RESET ROLE")
    assert superuser.execute("SELECT count(*) FROM audit_logs").fetchone() == (0,)


def test_new_partitions_refuse_truncate_too(admin_db_session: DBSession) -> None:
    from datetime import date

    db_session = admin_db_session  # creating partitions is DDL: the admin's

    from governance.services.partitions import ensure_partitions

    created = ensure_partitions(db_session(), months_ahead=0, start=date(2298, 5, 1))
    assert "audit_logs_p2298_05" in created
    triggers = db_session.execute(text(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_logs_p2298_05'::regclass AND NOT tgisinternal "
        "ORDER BY tgname")).scalars().all()
    assert {"audit_logs_refuse_truncate", "audit_logs_refuse_change", "audit_logs_chain"} <= set(triggers)
    grants = db_session.execute(text(
        "SELECT string_agg(privilege_type, ',' ORDER BY privilege_type) FROM information_schema.table_privileges "
        "WHERE table_name = 'audit_logs_p2298_05' AND grantee = :role"), {"role": audit_chain.BREAK_GLASS_ROLE}
    ).scalar_one()
    assert grants == "DELETE,SELECT,TRUNCATE,UPDATE"
    db_session.add(AuditLog(actor_name="system", action="test.far", outcome=AuditOutcome.SUCCESS,
                            created_at=datetime(2298, 5, 10, tzinfo=UTC)))
    db_session.flush()
    with pytest.raises(DBAPIError, match="append-only"), db_session.begin_nested():
        db_session.execute(text("TRUNCATE audit_logs_p2298_05"))


def test_rows_stranded_in_the_default_partition_move_with_their_hashes(admin_db_session: DBSession) -> None:
    from datetime import date

    db_session = admin_db_session  # creating partitions is DDL: the admin's

    from governance.services.partitions import ensure_partitions

    far = datetime(2297, 3, 14, tzinfo=UTC)
    entry = AuditLog(actor_name="system", action="test.stranded", outcome=AuditOutcome.SUCCESS, created_at=far)
    db_session.add(entry)
    db_session.flush()
    db_session.refresh(entry)
    seq, stored = entry.seq, entry.hash
    ensure_partitions(db_session(), months_ahead=0, start=date(2297, 3, 1))
    home, seq_after, hash_after = db_session.execute(
        text("SELECT tableoid::regclass::text, seq, hash FROM audit_logs WHERE id = :id"), {"id": entry.id}).one()
    assert (home, seq_after, bytes(hash_after)) == ("audit_logs_p2297_03", seq, stored)
    assert db_session.execute(text("SELECT current_user = session_user")).scalar_one()  # role restored
    assert audit_chain.verify_chain(db_session().connection().connection.driver_connection).ok
