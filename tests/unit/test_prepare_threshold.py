"""DB_PREPARE_THRESHOLD (docs/operations.md, "Query performance"): psycopg prepares a statement on
the server after that many executions on a connection; 0 prepares everything at once, off/none never
prepares (for a PgBouncer in transaction mode before 1.21). The setting reaches every connection of
the app's engine, and the pages work with it off, at 0 and at the default."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

import config
from extensions import db
from tests.conftest import TEST_PASSWORD, IsolatedClient, _csrf_token

PAGES = ("/", "/frameworks", "/frameworks?q=policy", "/evidence", "/audit", "/alerts")


@pytest.mark.parametrize(("raw", "expected"), [
    (None, 5), ("", 5), ("0", 0), ("1", 1), ("12", 12), ("off", None), ("None", None), (" OFF ", None),
])
def test_the_setting_is_read(raw: str | None, expected: int | None) -> None:
    env = {} if raw is None else {"DB_PREPARE_THRESHOLD": raw}
    settings = config.load_settings(env)
    assert settings.db_prepare_threshold == expected
    options = config.flask_config(settings)["SQLALCHEMY_ENGINE_OPTIONS"]
    assert isinstance(options, dict) and options["connect_args"]["prepare_threshold"] == expected


@pytest.mark.parametrize("raw", ["-1", "five", "1.5", "true"])
def test_a_bad_value_is_refused_by_name(raw: str) -> None:
    with pytest.raises(config.ConfigError, match="DB_PREPARE_THRESHOLD"):
        config.load_settings({"DB_PREPARE_THRESHOLD": raw})


@pytest.fixture
def app_with(app_factory: Callable[..., Flask], clean_database: None) -> Callable[[int | None], Flask]:
    """app_with(threshold): another app on the session database with that prepare threshold (rows it
    commits are truncated after the test)."""
    return lambda threshold: app_factory(settings={"db_prepare_threshold": threshold})


def _signed_in_client(application: Flask) -> IsolatedClient:
    from governance.services import identity

    def create() -> str:
        with application.app_context():
            user = identity.create_user(db.session(), email=f"prep-{id(application)}@example.test", name="Prep",
                                        role_name="admin", password=TEST_PASSWORD)
            db.session.commit()
            email = str(user.email)
            db.session.remove()
            return email

    email = contextvars.Context().run(create)
    client = IsolatedClient(application, application.response_class, use_cookies=True)
    with client.session_transaction():
        pass
    token = _csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": email, "password": TEST_PASSWORD, "csrf_token": token,
                                           "next": ""})
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


REPEATED = "SELECT count(*) FROM roles WHERE name = :name"
LISTING = "SELECT statement FROM pg_prepared_statements ORDER BY statement"


def _prepared_in_one_transaction(application: Flask) -> tuple[set[Any], list[str], list[str]]:
    """(prepare_threshold of the psycopg connections the pages used, the statements prepared on the
    server after one statement ran six times in a transaction, those after its rollback)."""
    def run() -> tuple[set[Any], list[str], list[str]]:
        with application.app_context(), contextlib.ExitStack() as stack:
            pooled = db.engine.pool.checkedin()
            assert pooled >= 1  # the pages' connections, all checked out at once to look at each
            connections = [stack.enter_context(db.engine.connect()) for _ in range(pooled)]
            thresholds = {getattr(c.connection.driver_connection, "prepare_threshold", "missing")
                          for c in connections}
            conn = connections[0]
            for _ in range(6):
                assert conn.execute(text(REPEATED), {"name": "admin"}).scalar_one() == 1
            during = list(conn.execute(text(LISTING)).scalars())
            conn.rollback()
            after = list(conn.execute(text(LISTING)).scalars())
            return thresholds, during, after

    return contextvars.Context().run(run)


@pytest.mark.parametrize("threshold", [None, 0, 5])
def test_the_threshold_reaches_psycopg_and_the_pages_work(app_with: Any, threshold: int | None) -> None:
    application = app_with(threshold)
    client = _signed_in_client(application)
    for _ in range(2):
        for page in PAGES:
            response = client.get(page)
            assert response.status_code == 200, (threshold, page, response.status_code)
    thresholds, during, after = _prepared_in_one_transaction(application)
    assert thresholds == {threshold}
    repeated = [s for s in during if "FROM roles WHERE name" in s]
    listing = [s for s in during if "pg_prepared_statements" in s]
    if threshold is None:
        assert during == [] and after == []  # never prepares: safe behind a transaction-mode pooler
    elif threshold == 0:
        assert repeated and listing  # everything, from its first run
    else:
        assert repeated and not listing  # only what ran more than five times
    # psycopg (3.3) deallocates everything it prepared when a transaction is rolled back, and every
    # request ends in one (the session's close, the pool's reset): a statement stays prepared for
    # the rest of its transaction only (docs/operations.md, "Query performance").
    assert not any("FROM roles WHERE name" in s for s in after)
