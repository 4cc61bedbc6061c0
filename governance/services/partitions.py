"""Monthly range partitions of the time-series tables (audit_logs, results).

Each partitioned table has a DEFAULT partition (created by the migration) so an insert never fails
for want of a partition, and one partition per calendar month created ahead of time by
`ensure_partitions` (the lead's CLI: `flask partitions create --months N`; run it from cron/a
periodic job at least monthly).

If the default partition already holds rows of a month being created (the job did not run in time),
those rows are moved into the new partition in the same transaction, because PostgreSQL refuses to
create a partition whose range overlaps rows in the default partition.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

# Range-partitioned on created_at, by month.
PARTITIONED_TABLES: tuple[str, ...] = ("audit_logs", "results")
PARTITION_KEY = "created_at"


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after day's month."""
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month.year:04d}_{month.month:02d}"


def default_partition_name(table: str) -> str:
    return f"{table}_default"


def _bound(day: date) -> str:
    # Bounds are UTC midnights, whatever the session's TimeZone, so a month means the same rows
    # to every client.
    return f"{day.isoformat()} 00:00:00+00"


def _exists(session: Session, name: str) -> bool:
    return bool(session.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar_one())


def ensure_partition(session: Session, table: str, month: date) -> str | None:
    """Create table's partition for the month containing `month`; return its name, or None if it
    already existed. Executes statements only: the caller commits."""
    if table not in PARTITIONED_TABLES:
        raise ValueError(f"{table} is not a partitioned table (known: {', '.join(PARTITIONED_TABLES)})")
    lower = month_start(month)
    upper = add_months(lower, 1)
    name = partition_name(table, lower)
    if _exists(session, name):
        return None
    default = default_partition_name(table)
    bounds = f"FOR VALUES FROM ('{_bound(lower)}') TO ('{_bound(upper)}')"
    # Identifiers and bounds below come from PARTITIONED_TABLES and dates, never from user input.
    in_range = (
        f"{PARTITION_KEY} >= TIMESTAMPTZ '{_bound(lower)}' "
        f"AND {PARTITION_KEY} < TIMESTAMPTZ '{_bound(upper)}'"
    )
    stranded = (
        _exists(session, default)
        and session.execute(
            text(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {in_range})")  # noqa: S608
        ).scalar_one()
    )
    if stranded:
        # Build the partition detached, move the month's rows out of the default partition, attach.
        # ATTACH clones the parent's indexes, foreign keys and triggers onto it.
        session.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
        session.execute(
            text(
                f"WITH moved AS (DELETE FROM {default} WHERE {in_range} RETURNING *) "  # noqa: S608
                f"INSERT INTO {name} SELECT * FROM moved"
            )
        )
        session.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} {bounds}"))
    else:
        session.execute(text(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} {bounds}"))
    return name


def ensure_default_partition(session: Session, table: str) -> str | None:
    name = default_partition_name(table)
    if _exists(session, name):
        return None
    session.execute(text(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} DEFAULT"))
    return name


def ensure_partitions(session: Session, months_ahead: int = 3, start: date | None = None) -> list[str]:
    """Create, for every partitioned table, the DEFAULT partition if missing and the monthly
    partitions from start's month (default: this UTC month) through `months_ahead` months later.

    Idempotent; returns the names of the partitions it created. Flushes and executes, never commits.
    """
    if months_ahead < 0:
        raise ValueError("months_ahead must be >= 0")
    session.flush()
    first = month_start(start or datetime.now(UTC).date())
    created: list[str] = []
    for table in PARTITIONED_TABLES:
        default = ensure_default_partition(session, table)
        if default:
            created.append(default)
        for offset in range(months_ahead + 1):
            name = ensure_partition(session, table, add_months(first, offset))
            if name:
                created.append(name)
    return created


def list_partitions(session: Session, table: str) -> list[str]:
    """Names of table's partitions (default included), sorted."""
    rows = session.execute(
        text(
            "SELECT c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = :table ORDER BY c.relname"
        ),
        {"table": table},
    ).scalars()
    return list(rows)
