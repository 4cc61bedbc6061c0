"""Ending a read-only request's transaction with COMMIT rather than ROLLBACK, so prepared statements live on.

psycopg discards every prepared statement of a connection at ROLLBACK (and sends DEALLOCATE ALL),
and a request that only read ends with one: Flask-SQLAlchemy closes its session, and the pool rolls
the connection back. psycopg's prepare threshold (DB_PREPARE_THRESHOLD) would then prepare nothing
that outlives a request. A transaction whose every statement was a plain SELECT has nothing to
undo, so COMMIT leaves the data exactly as ROLLBACK would, and keeps the plans (docs/performance.md
has the before/after figures).

How a transaction counts as read-only: an engine event looks at every statement SQLAlchemy sends on
a connection since its transaction began; anything but a SELECT (INSERT, UPDATE, DELETE, SET, DDL,
a writable CTE, a SELECT calling set_config) marks it written. Code that writes through the raw
psycopg connection (the job queue's defer) calls mark_written(). Pending ORM changes, an inactive
(failed) transaction or an exception also mean no COMMIT: the request's own code decides those.
"""

from __future__ import annotations

from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session

_WROTE = "governance_transaction_wrote"


def install(engine: Engine) -> None:
    """Watch `engine`'s connections (idempotent)."""
    if not event.contains(engine, "begin", _begin):
        event.listen(engine, "begin", _begin)
        event.listen(engine, "before_cursor_execute", _seen)


def _begin(conn: Connection) -> None:
    conn.info[_WROTE] = False


def is_plain_select(statement: str) -> bool:
    head = statement.lstrip()[:6].upper()
    return head == "SELECT" and "set_config" not in statement.lower()


def _seen(conn: Connection, _cursor: Any, statement: str, _parameters: Any, _context: Any,
          _executemany: bool) -> None:
    if not is_plain_select(statement):
        conn.info[_WROTE] = True


def mark_written(session: Session) -> None:
    """Say that the session's transaction wrote through a path the engine does not see."""
    session.connection().info[_WROTE] = True


def commit_if_only_read(session: Session) -> bool:
    """COMMIT the session's transaction when it ran only plain SELECTs and holds no pending ORM
    change; True when it did. Anything else is left for the caller's ROLLBACK."""
    transaction = session.get_transaction()
    if transaction is None or not transaction.is_active or session.new or session.dirty or session.deleted:
        return False
    connection = session.connection()
    if connection.info.get(_WROTE, True):
        return False
    driver = connection.connection.driver_connection
    if getattr(getattr(driver, "info", None), "transaction_status", None) != TransactionStatus.INTRANS:
        return False  # failed (INERROR: COMMIT would only roll back, keeping what psycopg would drop)
    session.commit()
    return True
