"""The sql_query probe kind against a real scratch PostgreSQL database: expected values, errors,
statement timeouts, connection failures, and writes refused by the read-only transaction even when
they get past the statement check (a data-modifying CTE, a function that writes)."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from governance.models.enums import ResultOutcome
from governance.probes import CheckSpec, ConfigError, ProbeError, RunContext, TransientProbeError, get
from governance.probes.sql_query import single_select

KIND = get("sql_query")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def scratch(scratch_database_url: str) -> str:
    with psycopg.connect(_libpq(scratch_database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE models (name text PRIMARY KEY, accuracy numeric NOT NULL, approved boolean)")
        conn.execute("INSERT INTO models VALUES ('credit', 0.93, true), ('churn', 0.71, false), ('fraud', 0.88, true)")
        conn.execute("CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS "
                     "$$ INSERT INTO models VALUES ('x' || random()::text, 1, true) RETURNING 1 $$")
    return scratch_database_url


def _count(url: str) -> int:
    with psycopg.connect(_libpq(url)) as conn:
        row = conn.execute("SELECT count(*) FROM models").fetchone()
        assert row is not None
        return int(row[0])


def _check(**params: Any) -> CheckSpec:
    return CheckSpec(id=uuid.uuid4(), name="q", parameters=KIND.validate_parameters(params),
                     control_ids=(uuid.uuid4(),))


def _run(checks: list[CheckSpec], **config: Any) -> list[Any]:
    ctx = RunContext(session=None, storage=None, settings=None, now=NOW,  # type: ignore[arg-type]
                     probe_id=uuid.uuid4(), probe_name="sql")
    return KIND.run(ctx, KIND.validate_config(config), checks)


def test_the_first_value_is_compared_with_the_expected_one(scratch: str) -> None:
    checks = [
        _check(query="SELECT count(*) FROM models WHERE NOT approved", expected="0"),
        _check(query="SELECT count(*) FROM models WHERE NOT approved", operator="<=", expected="1"),
        _check(query="select min(accuracy), 'ignored' from models where approved;", operator=">=", expected="0.85"),
        _check(query="WITH a AS (SELECT * FROM models WHERE approved) SELECT bool_and(approved) FROM a",
               expected="true"),
        _check(query="SELECT name FROM models ORDER BY accuracy DESC", expected="credit"),
        _check(query="SELECT name FROM models WHERE name LIKE 'c%' ORDER BY name", operator="!=", expected="credit"),
        _check(query="SELECT name FROM models WHERE false", expected="0"),
        _check(query="SELECT no_such_column FROM models", expected="0"),
        _check(query="SELECT name FROM models LIMIT 1", operator=">", expected="1"),
        _check(query="SELECT count(*) FROM models", expected=3),
    ]
    got = _run(checks, dsn=scratch)
    assert [o.outcome for o in got] == [
        ResultOutcome.NON_COMPLIANT, ResultOutcome.COMPLIANT, ResultOutcome.COMPLIANT, ResultOutcome.COMPLIANT,
        ResultOutcome.COMPLIANT, ResultOutcome.COMPLIANT, ResultOutcome.ERROR, ResultOutcome.ERROR,
        ResultOutcome.ERROR, ResultOutcome.COMPLIANT,
    ]
    assert got[5].observed == "churn"  # a % in the query is SQL, not a placeholder
    assert got[0].observed == 1 and got[0].expected == {"operator": "==", "value": "0"}
    assert got[0].message == 'The query returned 1, expected == "0".'
    assert got[2].observed == 0.88
    assert "returned no rows" in got[6].message
    assert 'column "no_such_column" does not exist' in got[7].message
    assert "is not a number" in got[8].message


def test_writes_are_refused_by_the_read_only_transaction(scratch: str) -> None:
    checks = [
        _check(query="WITH x AS (INSERT INTO models VALUES ('cte', 1, true) RETURNING 1) SELECT count(*) FROM x",
               expected="1"),
        _check(query="SELECT sneaky()", expected="1"),
        _check(query="SELECT set_config('default_transaction_read_only', 'off', false)", expected="off"),
        _check(query="SELECT sneaky()", expected="1"),
        _check(query="SELECT name FROM models FOR UPDATE", expected="credit"),
        _check(query="SELECT count(*) FROM models", expected="3"),
    ]
    got = _run(checks, dsn=scratch)
    assert [o.outcome for o in got] == [ResultOutcome.ERROR, ResultOutcome.ERROR, ResultOutcome.COMPLIANT,
                                        ResultOutcome.ERROR, ResultOutcome.ERROR, ResultOutcome.COMPLIANT]
    assert "read-only transaction" in got[1].message and "INSERT" in got[1].message
    assert "read-only transaction" in got[3].message  # the session setting is not what protects
    assert _count(scratch) == 3


@pytest.mark.parametrize("query", [
    "DELETE FROM models",
    "insert into models values ('a', 1, true)",
    "CREATE TABLE t (a int)",
    "UPDATE models SET accuracy = 1",
    "SELECT 1; DELETE FROM models",
    "SELECT 1 /* ; */; DROP TABLE models",
    "select 1 -- fine\n; drop table models",
    "COPY models TO STDOUT",
    "SET default_transaction_read_only = off",
    "SELECT 'unclosed",
    "SELECT $tag$ body",
    "",
])
def test_anything_but_one_select_is_refused_beside_the_query(query: str) -> None:
    with pytest.raises(ConfigError) as refused:
        KIND.validate_parameters({"query": query, "expected": "1"})
    assert refused.value.field == "query"


def test_literals_and_comments_do_not_confuse_the_statement_check() -> None:
    assert single_select("SELECT ';' AS semi, \"a;b\" FROM t -- ; DROP\n") == \
        "SELECT ';' AS semi, \"a;b\" FROM t -- ; DROP"
    assert single_select("SELECT 1; -- done") == "SELECT 1"
    assert single_select("/* DELETE */ select $$;$$, $x$ ; $x$;") == "/* DELETE */ select $$;$$, $x$ ; $x$"
    assert single_select("(SELECT 1) UNION (SELECT 2)") == "(SELECT 1) UNION (SELECT 2)"


def test_a_slow_query_hits_the_statement_timeout(scratch: str) -> None:
    got = _run([_check(query="SELECT pg_sleep(3)::text", expected="done"), _check(query="SELECT 1", expected="1"),
                _check(query="SELECT current_setting('statement_timeout')", expected="200ms"),
                _check(query="SELECT current_setting('default_transaction_read_only')", expected="on"),
                _check(query="SELECT current_setting('transaction_read_only')", expected="on")],
               dsn=scratch, statement_timeout_ms="200")
    assert got[0].outcome == ResultOutcome.ERROR and got[0].message == "The query took longer than 200 ms."
    assert [o.outcome for o in got[1:]] == [ResultOutcome.COMPLIANT] * 4


def test_connection_failures(scratch: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientProbeError, match="could not be reached"):
        _run([_check(query="SELECT 1", expected="1")], dsn=f"postgresql://probe@127.0.0.1:{port}/x")
    missing = scratch.rsplit("/", 1)[0] + "/no_such_db_" + uuid.uuid4().hex[:6]
    if "?" in scratch:
        missing += "?" + scratch.split("?", 1)[1]
    with pytest.raises(ProbeError) as refused:
        _run([_check(query="SELECT 1", expected="1")], dsn=missing)
    assert not isinstance(refused.value, TransientProbeError)
    assert _run([], dsn=f"postgresql://probe@127.0.0.1:{port}/x") == []


def test_the_password_is_masked_and_kept_on_edit() -> None:
    config = KIND.validate_config({"dsn": "postgresql://probe:hunter2@db.internal:5432/ml", "statement_timeout_ms": ""})
    assert config == {"dsn": "postgresql://probe:hunter2@db.internal:5432/ml", "statement_timeout_ms": 5000}
    public = KIND.public_config(config)
    assert public["dsn"] == "postgresql://probe:********@db.internal:5432/ml"
    assert KIND.restore_secrets(KIND.validate_config(public), config)["dsn"] == config["dsn"]
    moved = KIND.restore_secrets(KIND.validate_config({**public, "dsn": public["dsn"].replace("db.internal", "db2")}),
                                 config)
    assert moved["dsn"] == "postgresql://probe:hunter2@db2:5432/ml"
    with pytest.raises(ConfigError) as lost:
        KIND.restore_secrets(KIND.validate_config(public), {"dsn": "postgresql://probe@db.internal/ml"})
    assert lost.value.field == "dsn"

    split = KIND.validate_config({"dsn": "host=db.internal dbname=ml user=probe", "password": "hunter2"})
    assert KIND.public_config(split)["password"] == "********"
    kept = KIND.restore_secrets(KIND.validate_config({**KIND.public_config(split), "password": ""}), split)
    assert kept["password"] == "hunter2"
    assert KIND.public_config({"dsn": "host=db password='p w' user=u"})["dsn"] == "host=db password=******** user=u"
    kv = {"dsn": "host=db password='p w' user=u"}
    assert KIND.restore_secrets(KIND.public_config(kv), kv)["dsn"] == kv["dsn"]


@pytest.mark.parametrize(("config", "field"), [
    ({}, "dsn"),
    ({"dsn": "mysql://root@db/x"}, "dsn"),
    ({"dsn": "host=db nonsense"}, "dsn"),
    ({"dsn": "postgresql://u:pw@db/x", "password": "again"}, "password"),
    ({"dsn": "postgresql://db/x", "statement_timeout_ms": "0"}, "statement_timeout_ms"),
    ({"dsn": "postgresql://db/x", "statement_timeout_ms": "60001"}, "statement_timeout_ms"),
])
def test_bad_configuration_is_refused_beside_its_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        KIND.validate_config(config)
    assert refused.value.field == field


@pytest.mark.parametrize(("params", "field"), [
    ({"query": "SELECT 1"}, "expected"),
    ({"query": "SELECT 1", "expected": "1", "operator": "contains"}, "operator"),
    ({"query": "SELECT 1", "expected": "many", "operator": ">="}, "expected"),
])
def test_bad_parameters_are_refused_beside_their_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        KIND.validate_parameters(params)
    assert refused.value.field == field
