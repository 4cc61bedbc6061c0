"""Monthly range partitions of the time-series tables (audit_logs, results).

Each partitioned table has a DEFAULT partition (created by the migration) so an insert never fails
for want of a partition, and one partition per calendar month created ahead of time by
`ensure_partitions` (the lead's CLI: `flask partitions create --months N`; run it from cron/a
periodic job at least monthly).

If the default partition already holds rows of a month being created (the job did not run in time),
those rows are moved into the new partition in the same transaction, because PostgreSQL refuses to
create a partition whose range overlaps rows in the default partition.

audit_logs is append-only (migration 0011, docs/audit.md): each new partition of it gets the
TRUNCATE-refusing trigger (statement triggers are not inherited) and the break-glass role's
privileges, and moving stranded audit rows deletes them from the default partition as that role
(the maintaining role must be a superuser or a member of it). The rows keep their seq and hashes:
the copy goes into the new table before it is attached, where no trigger fires.

The DDL here is expected: `governance.expected_ddl` is set for it, so the schema-change event
trigger audits it without raising an alert.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

# Range-partitioned on created_at, by month.
PARTITIONED_TABLES: tuple[str, ...] = ("audit_logs", "results")
PARTITION_KEY = "created_at"
AUDIT_TABLE = "audit_logs"
BREAK_GLASS_ROLE = "governance_break_glass"
EXPECTED_DDL_SETTING = "governance.expected_ddl"


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
        # ATTACH clones the parent's indexes, foreign keys and row triggers onto it.
        session.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
        session.execute(text(f"INSERT INTO {name} SELECT * FROM {default} WHERE {in_range}"))  # noqa: S608
        if table == AUDIT_TABLE:
            with _as_role(session, BREAK_GLASS_ROLE):
                session.execute(text(f"DELETE FROM {default} WHERE {in_range}"))  # noqa: S608
        else:
            session.execute(text(f"DELETE FROM {default} WHERE {in_range}"))  # noqa: S608
        session.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} {bounds}"))
    else:
        session.execute(text(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} {bounds}"))
    if table == AUDIT_TABLE:
        protect_audit_partition(session, name)
    return name


@contextmanager
def _as_role(session: Session, role: str) -> Iterator[None]:
    """Run the block as `role` (SET LOCAL ROLE), then go back to the role in force before."""
    previous = session.execute(text("SELECT current_setting('role')")).scalar_one()
    session.execute(text(f"SET LOCAL ROLE {role}"))
    yield
    session.execute(text("SELECT set_config('role', :previous, true)"), {"previous": previous})


def protect_audit_partition(session: Session, name: str) -> None:
    """What a partition of audit_logs needs beyond what it inherits (docs/audit.md): the statement
    trigger refusing TRUNCATE, and the break-glass role's privileges for direct access. A no-op on a
    database migrated before 0011_audit_chain."""
    ready = session.execute(
        text("SELECT to_regproc('audit_logs_refuse_change') IS NOT NULL "
             "AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :role)"),
        {"role": BREAK_GLASS_ROLE},
    ).scalar_one()
    if not ready:
        return
    session.execute(text(f"DROP TRIGGER IF EXISTS audit_logs_refuse_truncate ON {name}"))
    session.execute(text(f"CREATE TRIGGER audit_logs_refuse_truncate BEFORE TRUNCATE ON {name} "
                         "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_refuse_change()"))
    session.execute(text(f"GRANT SELECT, UPDATE, DELETE, TRUNCATE ON {name} TO {BREAK_GLASS_ROLE}"))


def ensure_default_partition(session: Session, table: str) -> str | None:
    name = default_partition_name(table)
    if _exists(session, name):
        return None
    session.execute(text(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} DEFAULT"))
    if table == AUDIT_TABLE:
        protect_audit_partition(session, name)
    return name


@contextmanager
def _chain_head_immediate(session: Session) -> Iterator[None]:
    """Move the audit chain's head after each statement from here to the end of the transaction,
    instead of at commit: a pending (deferred) head move on an audit_logs partition makes PostgreSQL
    refuse to ALTER it or DELETE from it later in the transaction, and the DDL here writes audit
    entries. (The mode is not put back: PostgreSQL cannot tell what it was, and immediate is only
    slower for transactions that write many entries.)"""
    exists = session.execute(
        text("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_logs_chain_head')")).scalar_one()
    if exists:
        session.execute(text("SET CONSTRAINTS audit_logs_chain_head IMMEDIATE"))
    yield


@contextmanager
def expected_ddl(session: Session | Connection, reason: str) -> Iterator[None]:
    """Mark the DDL run inside the block as expected (audited, no schema-change alert) for the rest
    of this block only; the setting is transaction-local and goes back to what it was."""
    previous = session.execute(
        text("SELECT coalesce(current_setting(:name, true), '')"), {"name": EXPECTED_DDL_SETTING}
    ).scalar_one()
    session.execute(text("SELECT set_config(:name, :value, true)"), {"name": EXPECTED_DDL_SETTING, "value": reason})
    yield
    session.execute(text("SELECT set_config(:name, :value, true)"), {"name": EXPECTED_DDL_SETTING, "value": previous})


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
    with expected_ddl(session, "partitions"), _chain_head_immediate(session):
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
