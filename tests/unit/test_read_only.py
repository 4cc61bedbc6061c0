"""governance.read_only: a request that only read ends with COMMIT, so psycopg's prepared statements
outlive it; anything that wrote (through SQLAlchemy or, marked, through the raw connection), pending
ORM changes, a failed transaction or an exception still end with ROLLBACK."""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

import config
from extensions import db
from governance import read_only
from governance.models.frameworks import Framework
from tests.unit.test_prepare_threshold import _signed_in_client

PAGE_QUERY = "FROM frameworks"  # a statement only the frameworks list runs


@pytest.fixture
def app_with(app_factory: Callable[..., Flask], clean_database: None) -> Callable[..., Flask]:
    """app_with(**settings): another app on the session database (what it commits is truncated after)."""
    return lambda **changes: app_factory(settings=changes)


def _prepared(application: Flask) -> list[str]:
    """The statements prepared on the server on every pooled connection of the app."""
    def run() -> list[str]:
        with application.app_context(), contextlib.ExitStack() as stack:
            connections = [stack.enter_context(db.engine.connect()) for _ in range(db.engine.pool.checkedin())]
            found = [s for c in connections
                     for s in c.execute(text("SELECT statement FROM pg_prepared_statements")).scalars()]
            for c in connections:
                c.rollback()
            return found

    return contextvars.Context().run(run)


@pytest.mark.parametrize("commit_read_only", [True, False])
def test_prepared_statements_outlive_a_read_only_request_only_when_it_commits(
    app_with: Callable[..., Flask], commit_read_only: bool
) -> None:
    application = app_with(db_prepare_threshold=0, db_commit_read_only=commit_read_only)
    client = _signed_in_client(application)
    for _ in range(2):
        assert client.get("/frameworks").status_code == 200
    kept = [s for s in _prepared(application) if PAGE_QUERY in s]
    if commit_read_only:
        assert kept, "the frameworks list's statements should stay prepared after the request"
    else:
        assert kept == []  # ROLLBACK: psycopg deallocated everything


def _session_of(application: Flask) -> Iterator[Any]:
    with application.app_context():
        session = db.session()
        try:
            yield session
        finally:
            session.rollback()
            db.session.remove()


@pytest.fixture
def session(app_with: Callable[..., Flask]) -> Iterator[Any]:
    yield from _session_of(app_with())


def _frameworks_titled(session: Any, title: str) -> int:
    return int(session.execute(text("SELECT count(*) FROM frameworks WHERE title = :t"), {"t": title}).scalar_one())


def test_only_selects_commit(session: Any) -> None:
    assert session.execute(text("SELECT 1")).scalar_one() == 1
    driver = session.connection().connection.driver_connection
    assert read_only.commit_if_only_read(session) is True
    assert driver.info.transaction_status == 0  # IDLE: the transaction ended with COMMIT


def _insert(session: Any, title: str) -> None:
    session.execute(text("INSERT INTO frameworks (title, version) VALUES (:t, '1')"), {"t": title})


def _writable_cte(session: Any, title: str) -> None:
    session.execute(text("WITH made AS (INSERT INTO frameworks (title, version) VALUES (:t, '1') RETURNING id)"
                         " SELECT id FROM made"), {"t": title})


def _pending_orm_object(session: Any, title: str) -> None:
    session.add(Framework(title=title, version="1"))


def _raw_connection_marked(session: Any, title: str) -> None:
    session.connection().connection.driver_connection.execute(
        "INSERT INTO frameworks (title, version) VALUES (%s, '1')", (title,))
    read_only.mark_written(session)


@pytest.mark.parametrize("write", [_insert, _writable_cte, _pending_orm_object, _raw_connection_marked])
def test_a_transaction_that_wrote_is_never_committed(session: Any, write: Callable[[Any, str], None]) -> None:
    title = f"RO {uuid.uuid4().hex[:8]}"
    session.execute(text("SELECT 1"))
    write(session, title)
    assert read_only.commit_if_only_read(session) is False
    session.rollback()
    assert _frameworks_titled(session, title) == 0


def test_session_settings_and_set_config_are_never_committed(session: Any) -> None:
    session.execute(text("SELECT set_config('application_name', 'leaked', false)"))
    assert read_only.commit_if_only_read(session) is False
    session.rollback()
    assert session.execute(text("SHOW application_name")).scalar_one() != "leaked"
    session.execute(text("SET application_name = 'leaked'"))
    assert read_only.commit_if_only_read(session) is False


def test_a_failed_transaction_is_left_for_the_rollback(session: Any) -> None:
    with pytest.raises(ProgrammingError):
        session.execute(text("SELECT * FROM no_such_table"))
    assert read_only.commit_if_only_read(session) is False
    session.rollback()
    assert session.execute(text("SELECT 1")).scalar_one() == 1


def test_no_transaction_is_nothing_to_do(session: Any) -> None:
    assert read_only.commit_if_only_read(session) is False


def test_the_setting_is_read() -> None:
    assert config.load_settings({}).db_commit_read_only is True
    assert config.load_settings({"DB_COMMIT_READ_ONLY": "false"}).db_commit_read_only is False
