"""sql_query: a read-only query against a configured PostgreSQL database returns the expected value.

Configuration: dsn (a postgresql:// URL or libpq key=value string), password (optional, kept apart
from the DSN), statement_timeout_ms (default 5000, at most 60000). The password — in the DSN or the
password field — is stored in the probe's configuration in our database; public_config() masks it
for pages and audit entries (and the key "password" is one the audit log redacts anyway). Give the
probe a database role that may only SELECT what it needs.

Check parameters: query (one SELECT or WITH statement), operator (==, !=, >=, <=, >, <; default ==)
and expected, compared with the first column of the first row.

Read-only, three ways: the query text must be a single SELECT/WITH statement; the session sets
default_transaction_read_only and statement_timeout; each query runs through a server-side cursor
inside a READ ONLY transaction that is rolled back. So a write smuggled in (a data-modifying CTE, a
function that writes) is refused by PostgreSQL itself. Only the first row is fetched.
A connection failure is transient (the run is retried); a failing query is that check's `error`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import conninfo, errors

from governance.models.enums import ResultOutcome
from governance.probes import (
    CheckSpec,
    ConfigError,
    Observation,
    ProbeError,
    RunContext,
    TransientProbeError,
    register,
)
from governance.probes import _util as u

OPERATORS = ("==", "!=", ">=", "<=", ">", "<")
CONNECT_TIMEOUT_S = 10
QUERY_MAX = 20_000


def single_select(query: str) -> str:
    """The query without a trailing semicolon, or ConfigError("query") unless it is one SELECT/WITH
    statement. Comments, quoted strings, quoted names and dollar-quoted bodies are skipped over."""
    i, n = 0, len(query)
    code: list[str] = []  # the statement with comments and literals blanked out
    last_semicolon = -1
    while i < n:
        c = query[i]
        if query.startswith("--", i):
            end = query.find("\n", i)
            i = n if end < 0 else end
            code.append(" ")
        elif query.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if query.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif query.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise ConfigError("query", "A /* comment */ is not closed.")
            code.append(" ")
        elif c in "'\"":
            end = i + 1
            while True:
                end = query.find(c, end)
                if end < 0:
                    raise ConfigError("query", f"A {c} quote is not closed.")
                if query.startswith(c * 2, end):
                    end += 2
                    continue
                break
            code.append(" x ")
            i = end + 1
        elif c == "$" and (tag := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", query[i:])) \
                and not (code and re.match(r"[A-Za-z0-9_]", code[-1][-1:])):
            delimiter = tag.group(0)
            end = query.find(delimiter, i + len(delimiter))
            if end < 0:
                raise ConfigError("query", f"A {delimiter} quoted string is not closed.")
            code.append(" x ")
            i = end + len(delimiter)
        else:
            if c == ";":
                last_semicolon = i
            code.append(c)
            i += 1
    stripped = "".join(code).strip()
    body = stripped.rstrip().rstrip(";").rstrip() if stripped.endswith(";") else stripped
    if ";" in body:
        raise ConfigError("query", "Write a single statement (no ; between statements).")
    first = re.match(r"\(*\s*([A-Za-z]+)", body)
    if first is None or first.group(1).lower() not in ("select", "with"):
        raise ConfigError("query", "Only a SELECT (or WITH … SELECT) query may run.")
    # A trailing ; goes, with any comment after it (the query runs inside DECLARE … CURSOR FOR).
    return query[:last_semicolon].strip() if stripped.endswith(";") else query.strip()


def _dsn_parts(dsn: str) -> dict[str, Any]:
    return conninfo.conninfo_to_dict(dsn)


_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)([^@/?#]*)@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def _masked_dsn(dsn: str) -> str:
    pattern = _URL_PASSWORD if "://" in dsn else _KV_PASSWORD
    return pattern.sub(lambda m: m.group(1) + u.MASK + ("@" if pattern is _URL_PASSWORD else ""), dsn)


def _raw_password(dsn: str) -> str | None:
    """The password as written in the DSN (still URL-encoded or quoted), or None."""
    match = (_URL_PASSWORD if "://" in dsn else _KV_PASSWORD).search(dsn)
    return match.group(2) if match else None


def _first_value(row: Any) -> Any:
    return None if row is None else row[0]


class SqlQuery:
    name = "sql_query"
    label = "SQL query"
    description = "A read-only query against a PostgreSQL database returns the expected value."
    config_fields: u.Fields = (
        ("dsn", "Database (DSN)", "postgresql://user@host:5432/dbname — use a role that may only SELECT.", True),
        ("password", "Password", "Optional; kept apart from the DSN and never shown again.", False),
        ("statement_timeout_ms", "Statement timeout (ms)", "Per query; default 5000, at most 60000.", False),
    )
    parameter_fields: u.Fields = (
        ("query", "Query", "One SELECT statement; the first column of the first row is compared.", True),
        ("operator", "Operator", "One of ==, !=, >=, <=, >, < (default ==).", False),
        ("expected", "Expected value", "e.g. 0, or true, or a text.", True),
    )
    secret_fields: tuple[str, ...] = ("password", "dsn")

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        dsn = u.text_value(config, "dsn", required=True, max_len=2000, label="The DSN")
        assert dsn is not None
        if re.match(r"postgresql\+psycopg2?://", dsn, re.I):  # an SQLAlchemy URL: the libpq part of it
            dsn = "postgresql://" + dsn.split("://", 1)[1]
        if "://" in dsn and not re.match(r"postgres(ql)?://", dsn, re.I):
            raise ConfigError("dsn", "Only PostgreSQL: write postgresql://user@host:5432/dbname.")
        try:
            parts = _dsn_parts(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigError("dsn", f"Not a valid DSN: {str(exc).splitlines()[0][:200]}") from None
        if parts.get("password") and not u.blank(config.get("password")):
            raise ConfigError("password", "The DSN has a password already: give it in one place only.")
        clean: dict[str, Any] = {"dsn": dsn}
        password = config.get("password")
        if not u.blank(password):
            clean["password"] = str(password)
        clean["statement_timeout_ms"] = u.int_value(config, "statement_timeout_ms", default=5000, minimum=1,
                                                    maximum=60000)
        return clean

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        query = u.text_value(parameters, "query", required=True, max_len=QUERY_MAX, label="The query")
        assert query is not None
        clean: dict[str, Any] = {"query": single_select(query)}
        clean["operator"] = u.choice_value(parameters, "operator", OPERATORS, default="==")
        expected = parameters.get("expected")
        if expected is None or (isinstance(expected, str) and expected == ""):
            raise ConfigError("expected", "Enter the value the query must return.")
        if clean["operator"] in u.ORDERING and u.to_number(expected) is None:
            raise ConfigError("expected", f"{clean['operator']} compares numbers: enter a number.")
        clean["expected"] = expected.strip() if isinstance(expected, str) else expected
        return clean

    def public_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        shown = dict(config)
        if shown.get("dsn"):
            shown["dsn"] = _masked_dsn(str(shown["dsn"]))
        if shown.get("password"):
            shown["password"] = u.MASK
        return shown

    def restore_secrets(self, config: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        """A configuration edited from its public form: a blank or masked password keeps the old one,
        a DSN still carrying the mask keeps the old DSN."""
        restored = dict(config)
        dsn = str(config.get("dsn") or "")
        old_password = _raw_password(str(previous.get("dsn") or ""))
        if _raw_password(dsn) == u.MASK:
            if old_password is None:
                raise ConfigError("dsn", "Write the password into the DSN again, or use the password field.")
            restored["dsn"] = (_URL_PASSWORD if "://" in dsn else _KV_PASSWORD).sub(
                lambda m: m.group(1) + old_password + ("@" if "://" in dsn else ""), dsn, count=1)
        if u.blank(config.get("password")) or config.get("password") == u.MASK:
            restored.pop("password", None)
            if previous.get("password") and _raw_password(str(restored["dsn"])) is None:
                restored["password"] = previous["password"]
        return restored

    def _connect(self, config: Mapping[str, Any]) -> psycopg.Connection[Any]:
        kwargs: dict[str, Any] = {"autocommit": False, "application_name": "governance-probe"}
        if config.get("password"):
            kwargs["password"] = config["password"]
        if "connect_timeout" not in _dsn_parts(str(config["dsn"])):
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        try:
            conn = psycopg.connect(str(config["dsn"]), **kwargs)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            reason = _masked_dsn(reason)[:300]
            if "authentication failed" in reason or ("database" in reason and "does not exist" in reason):
                raise ProbeError(f"The database refused the probe: {reason}") from None
            raise TransientProbeError(f"The database could not be reached: {reason}") from None
        conn.read_only = True  # every transaction psycopg begins is BEGIN READ ONLY
        timeout = int(config.get("statement_timeout_ms") or 5000)
        with conn.cursor() as cur:
            cur.execute("SET default_transaction_read_only = on")
            cur.execute(f"SET statement_timeout = {timeout:d}")
            cur.execute("SET idle_in_transaction_session_timeout = 60000")
        conn.commit()  # session settings made in a rolled-back transaction would be undone
        return conn

    def run(self, ctx: RunContext, config: Mapping[str, Any], checks: list[CheckSpec]) -> list[Observation]:
        if not checks:
            return []
        conn = self._connect(config)
        try:
            return [self._check(conn, config, check) for check in checks]
        finally:
            conn.close()

    def _check(self, conn: psycopg.Connection[Any], config: Mapping[str, Any], check: CheckSpec) -> Observation:
        params = check.parameters
        operator = str(params.get("operator") or "==")
        expected_value = params.get("expected")
        expected = {"operator": operator, "value": expected_value}
        resource = _masked_dsn(str(config.get("dsn") or ""))[:1024]
        try:
            query = single_select(str(params.get("query") or ""))
        except ConfigError as exc:
            return Observation(check.id, ResultOutcome.ERROR, expected=expected, resource=resource,
                               message=f"The query was refused: {exc.message}")
        try:
            with conn.cursor(name="probe_check") as cur:
                cur.execute(query)
                row = cur.fetchone()
        except errors.QueryCanceled:
            return Observation(check.id, ResultOutcome.ERROR, expected=expected, resource=resource,
                               message=f"The query took longer than {config.get('statement_timeout_ms')} ms.")
        except psycopg.OperationalError as exc:
            raise TransientProbeError(f"The database connection broke: {str(exc).strip()[:300]}") from None
        except psycopg.Error as exc:
            detail = (exc.diag.message_primary or str(exc)).strip()[:500]
            return Observation(check.id, ResultOutcome.ERROR, expected=expected, resource=resource,
                               message=f"The query failed: {detail}")
        finally:
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
        if row is None:
            return Observation(check.id, ResultOutcome.ERROR, expected=expected, resource=resource,
                               message="The query returned no rows: write one that always returns a row, "
                                       "e.g. SELECT count(*) …")
        value = _first_value(row)
        observed = u.jsonable(value)
        try:
            ok = u.compare(observed, operator, expected_value)
        except u.NotComparable as exc:
            return Observation(check.id, ResultOutcome.ERROR, observed=observed, expected=expected,
                               resource=resource, message=f"Cannot compare with {operator}: {exc}.")
        return Observation(
            check.id, ResultOutcome.COMPLIANT if ok else ResultOutcome.NON_COMPLIANT, observed=observed,
            expected=expected, resource=resource,
            message=f"The query returned {u.short(observed)}"
                    + ("." if ok else f", expected {operator} {u.short(expected_value)}."),
        )


KIND = register(SqlQuery())
