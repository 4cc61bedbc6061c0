"""The costliest SQL statements, from pg_stat_statements (docs/operations.md, "Query performance").

`flask db slow-queries` prints them for the periodic plan review. The extension needs the server's
shared_preload_libraries (a restart) and CREATE EXTENSION in the database (an admin); when either is
missing, NotAvailable says which and how to fix it. Statements are those of the current database
only, and the review's own reads of pg_stat_statements are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, text

# --order: the pg_stat_statements column each sorts by (most first; ties by total time, then text).
ORDERS = {"total": "total_exec_time", "mean": "mean_exec_time", "calls": "calls"}
DEFAULT_WIDTH = 120

ENABLE_HINT = (
    "enable it once: in postgresql.conf set shared_preload_libraries = 'pg_stat_statements' and restart "
    "the server, then as a superuser (DATABASE_ADMIN_URL) run CREATE EXTENSION pg_stat_statements; "
    "in this database (docs/operations.md, \"Query performance\")"
)


class NotAvailable(RuntimeError):
    """pg_stat_statements cannot be read here; the message says why and how to enable it."""


@dataclass(frozen=True)
class SlowQuery:
    query: str  # normalised by PostgreSQL ($1 for constants), whitespace collapsed, trimmed to width
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    share: float  # of the total execution time of every statement listed for this database, 0..1
    cache_hit: float | None  # shared buffer hits / (hits + reads); None when it touched no buffers


def trim(query: str, width: int = DEFAULT_WIDTH) -> str:
    """One line: whitespace collapsed, cut to `width` characters with an ellipsis."""
    line = re.sub(r"\s+", " ", query).strip()
    return line if len(line) <= width else line[: max(1, width - 1)].rstrip() + "…"


def check_available(conn: Connection) -> None:
    """Raise NotAvailable unless pg_stat_statements is installed in this database and loaded."""
    database = conn.execute(text("SELECT current_database()")).scalar_one()
    available = conn.execute(
        text("SELECT installed_version FROM pg_available_extensions WHERE name = 'pg_stat_statements'")
    ).first()
    if available is None:
        raise NotAvailable("pg_stat_statements is not available on this server: install PostgreSQL's "
                           f"contrib modules (Debian: postgresql-contrib), then {ENABLE_HINT}")
    preload = conn.execute(text("SELECT current_setting('shared_preload_libraries')")).scalar_one()
    loaded = "pg_stat_statements" in [part.strip().strip('"') for part in str(preload).split(",")]
    if available[0] is None:
        step = "" if loaded else " and the server does not load it"
        raise NotAvailable(f"pg_stat_statements is not installed in database {database}{step}: {ENABLE_HINT}")
    if not loaded:
        raise NotAvailable("pg_stat_statements is installed in database "
                           f"{database} but the server does not load it: {ENABLE_HINT}")


def costliest(conn: Connection, *, limit: int = 20, order: str = "total",
              width: int = DEFAULT_WIDTH) -> list[SlowQuery]:
    """The `limit` costliest statements of the current database by total or mean execution time or
    by calls (most first)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    check_available(conn)
    rows = conn.execute(text("""
        WITH mine AS (
            SELECT s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.rows,
                   s.shared_blks_hit, s.shared_blks_read
            FROM pg_stat_statements s
            WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND s.query NOT ILIKE '%pg_stat_statements%'
        )
        SELECT query, calls, total_exec_time, mean_exec_time, rows, shared_blks_hit, shared_blks_read,
               total_exec_time / NULLIF(sum(total_exec_time) OVER (), 0) AS share
        FROM mine
        ORDER BY CASE :order WHEN 'mean' THEN mean_exec_time WHEN 'calls' THEN calls::float8
                             ELSE total_exec_time END DESC,
                 total_exec_time DESC, query
        LIMIT :limit
    """), {"limit": limit, "order": order}).all()
    found = []
    for query, calls, total, mean, count, hit, read, share in rows:
        touched = int(hit or 0) + int(read or 0)
        found.append(SlowQuery(query=trim(str(query), width), calls=int(calls), total_ms=float(total),
                               mean_ms=float(mean), rows=int(count), share=float(share or 0.0),
                               cache_hit=int(hit or 0) / touched if touched else None))
    return found


def format_table(queries: list[SlowQuery]) -> list[str]:
    """The lines `flask db slow-queries` prints: a header, then one line per statement."""
    lines = [f"{'#':>3} {'total ms':>12} {'mean ms':>10} {'calls':>10} {'rows':>10} {'time %':>6} "
             f"{'hit %':>6}  query"]
    for rank, q in enumerate(queries, 1):
        hit = f"{100 * q.cache_hit:6.1f}" if q.cache_hit is not None else f"{'-':>6}"
        lines.append(f"{rank:>3} {q.total_ms:12.1f} {q.mean_ms:10.3f} {q.calls:10d} {q.rows:10d} "
                     f"{100 * q.share:6.1f} {hit}  {q.query}")
    return lines
