"""The shared read cache (governance.services.read_cache): committed writes to a scope's source
tables move its generation once per transaction, at COMMIT, without holding the generation row
while the writer works; readers serve an entry only under the generation it was computed for.

These tests commit for real (separate connections, emptied afterwards by clean_database): the
deferred triggers only show their behaviour at a real COMMIT."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from extensions import db
from governance.services import read_cache
from governance.services.read_cache import DASHBOARD

pytestmark = pytest.mark.usefixtures("clean_database")


@pytest.fixture
def connect(app: Flask) -> Iterator[Callable[[], Connection]]:
    opened: list[Connection] = []

    def new() -> Connection:
        conn = db.engine.connect()
        conn.execute(text("SET lock_timeout = '5s'"))
        conn.commit()
        opened.append(conn)
        return conn

    with app.app_context():
        yield new
        for conn in opened:
            conn.rollback()
            conn.close()


def _generation(conn: Connection) -> int:
    value = conn.execute(text("SELECT generation FROM cache_generations WHERE scope = 'dashboard'")).scalar_one()
    conn.commit()
    return int(value)


def _add_frameworks(conn: Connection, n: int) -> None:
    for _ in range(n):
        conn.execute(text("INSERT INTO frameworks (title, version) VALUES (:t, '1')"),
                     {"t": f"Cache {uuid.uuid4().hex[:8]}"})


@pytest.mark.parametrize("scope", sorted(read_cache.SOURCES))
def test_the_triggers_watch_exactly_the_declared_source_tables(connect: Callable[[], Connection],
                                                               scope: str) -> None:
    """Each scope's migration installed a deferred trigger and a TRUNCATE trigger on exactly the
    tables read_cache.SOURCES declares for it, and its generation row exists."""
    conn = connect()
    rows = conn.execute(text(
        "SELECT t.tgrelid::regclass::text, t.tgconstraint <> 0, t.tgdeferrable, t.tginitdeferred, "
        "       (t.tgtype & 32) <> 0 AS truncate "
        "  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        " WHERE p.proname = 'bump_cache_generation' AND NOT t.tgisinternal"
        "   AND t.tgname LIKE :pattern"), {"pattern": f"%\\_cache\\_{scope}%"}).all()
    deferred = {table for table, constraint, deferrable, initially, truncate in rows
                if constraint and deferrable and initially and not truncate}
    on_truncate = {table for table, constraint, _, _, truncate in rows if truncate and not constraint}
    assert deferred == on_truncate == set(read_cache.SOURCES[scope])
    assert len(rows) == 2 * len(read_cache.SOURCES[scope])
    assert read_cache.generation(Session(bind=conn), scope) is not None


def test_a_committed_write_moves_the_generation_once_however_many_rows(connect: Callable[[], Connection]) -> None:
    conn = connect()
    start = _generation(conn)
    _add_frameworks(conn, 25)
    conn.execute(text("UPDATE frameworks SET description = 'changed'"))
    conn.commit()
    assert _generation(conn) == start + 1

    _add_frameworks(conn, 3)
    conn.rollback()  # a write that never commits changes nothing
    assert _generation(conn) == start + 1


def test_writes_the_widgets_do_not_read_leave_it_alone(connect: Callable[[], Connection]) -> None:
    conn = connect()
    conn.execute(text("INSERT INTO users (email, name, password_hash, role_id) "
                      "SELECT 'cache@example.test', 'Cache', 'x', id FROM roles WHERE name = 'admin'"))
    conn.commit()
    start = _generation(conn)
    conn.execute(text("INSERT INTO login_attempts (email, succeeded) VALUES ('cache@example.test', true)"))
    conn.execute(text("UPDATE users SET last_login_at = now() WHERE email = 'cache@example.test'"))
    conn.commit()
    assert _generation(conn) == start  # a sign-in does not empty the dashboard's cache

    conn.execute(text("UPDATE users SET deleted_at = now() WHERE email = 'cache@example.test'"))
    conn.commit()
    assert _generation(conn) == start + 1  # ... a user leaving the count does


def test_the_generation_row_is_taken_only_at_commit_so_writers_do_not_queue(
        connect: Callable[[], Connection]) -> None:
    first, second, observer = connect(), connect(), connect()
    start = _generation(observer)
    _add_frameworks(first, 1)  # uncommitted: must not hold the generation row
    _add_frameworks(second, 1)
    second.commit()  # would wait (and fail after lock_timeout) if `first` held it
    assert _generation(observer) == start + 1
    first.commit()
    assert _generation(observer) == start + 2


def test_truncate_moves_it_too(admin_engine: Any) -> None:
    # TRUNCATE is the owner's (the app's service role may not): an admin's truncate moves it too.
    with admin_engine.connect() as conn:
        start = _generation(conn)
        conn.execute(text("TRUNCATE metrics"))
        conn.commit()
        assert _generation(conn) == start + 1


class Loader:
    def __init__(self, value: str) -> None:
        self.value, self.calls = value, 0

    def __call__(self, now: datetime) -> str:
        self.calls += 1
        return f"{self.value} at {now.isoformat()}"


def _get(app: Flask, loaders: dict[str, Any], max_age: timedelta = timedelta(minutes=1),
         now: datetime | None = None) -> dict[str, read_cache.Cached]:
    with app.app_context():
        session: Session = db.session()
        values = read_cache.get_or_compute(session, DASHBOARD, loaders, max_age, now)
        session.commit()
        db.session.remove()
    return values


def test_computed_once_then_served_until_a_write_commits(app: Flask, connect: Callable[[], Connection]) -> None:
    loader = Loader("scores")
    first = _get(app, {"scores": loader})["scores"]
    again = _get(app, {"scores": loader})["scores"]
    assert (loader.calls, first.hit, again.hit) == (1, False, True)
    assert again.value == first.value and again.computed_at == first.computed_at

    writer = connect()
    _add_frameworks(writer, 1)
    assert _get(app, {"scores": loader})["scores"].hit  # not committed yet: still current
    writer.commit()
    after = _get(app, {"scores": loader})["scores"]
    assert (loader.calls, after.hit) == (2, False)


def test_an_entry_expires_after_max_age_and_zero_turns_the_cache_off(app: Flask) -> None:
    loader = Loader("counts")
    now = datetime.now(UTC)
    _get(app, {"counts": loader}, now=now)
    assert _get(app, {"counts": loader}, now=now + timedelta(seconds=59))["counts"].hit
    assert not _get(app, {"counts": loader}, now=now + timedelta(seconds=61))["counts"].hit
    assert loader.calls == 2
    off = Loader("off")
    for _ in range(2):
        assert not _get(app, {"counts": off}, max_age=timedelta(0))["counts"].hit
    assert off.calls == 2


def test_a_value_computed_while_a_write_commits_is_never_served(app: Flask, connect: Callable[[], Connection]) -> None:
    """The reader reads generation N, a write commits (N+1), the reader stores what it computed under
    N: the next reader must compute again rather than serve it."""
    writer = connect()

    def slow(now: datetime) -> str:
        _add_frameworks(writer, 1)
        writer.commit()  # lands between the reader's generation read and its store
        return "computed from possibly older rows"

    assert not _get(app, {"race": slow})["race"].hit
    fresh = Loader("fresh")
    assert not _get(app, {"race": fresh})["race"].hit
    assert fresh.calls == 1 and _get(app, {"race": fresh})["race"].hit


def test_an_older_generation_never_overwrites_a_newer_entry(app: Flask) -> None:
    with app.app_context():
        session = db.session()
        generation = read_cache.generation(session, DASHBOARD)
        assert generation is not None
        now = datetime.now(UTC)
        read_cache.store(session, DASHBOARD, generation, "k", "new", now)
        read_cache.store(session, DASHBOARD, generation - 1, "k", "old", now)
        session.commit()
        _, found = read_cache.fetch(session, DASHBOARD, ["k"])
        session.commit()
        db.session.remove()
    assert found["k"].value == "new"
