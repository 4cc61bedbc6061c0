"""Report requests, the rendering job and downloads (docs/reports.md).

request_report validates and queues (report.request audited, the gov:render_report job deferred
in the same transaction). execute_report, the job's body, reads the statement of applicability in
one REPEATABLE READ transaction (its as_of is that snapshot's time), renders the format, stores
the bytes in the object store under reports/<id>.<ext> and records their SHA-256 and size
(report.generate audited with the hash). A failure marks the report failed with the error.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from procrastinate import SyncPsycopgConnector
from procrastinate import jobs as queue_jobs
from procrastinate.manager import JobManager
from sqlalchemy import Engine, and_, or_, select, text
from sqlalchemy.orm import Session

from governance import read_only
from governance.models.ai import AISystem
from governance.models.enums import AuditOutcome
from governance.models.frameworks import Framework
from governance.models.reports import Report, ReportFormat, ReportScope, ReportStatus
from governance.services import audit
from governance.services.notifications import Cursor
from governance.services.reports import oscal, render_csv, render_pdf, soa

log = logging.getLogger(__name__)

RENDER_REPORT = "gov:render_report"
QUEUE = "reports"
MAX_PERIOD = timedelta(days=3 * 366)
OBJECT_PREFIX = "reports/"


class ReportRefused(ValueError):
    """Bad input for a report request; `field` names the form field it belongs beside."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Rendered:
    body: bytes
    sha256: str
    as_of: datetime


def validate_period(start: date | None, end: date | None, today: date | None = None) -> tuple[date, date]:
    today = today or datetime.now(UTC).date()
    if start is None:
        raise ReportRefused("period_start", "Give the first day of the period.")
    if end is None:
        raise ReportRefused("period_end", "Give the last day of the period.")
    if start > end:
        raise ReportRefused("period_end", "The period ends before it starts.")
    if end > today:
        raise ReportRefused("period_end", "The period cannot end in the future.")
    if end - start > MAX_PERIOD:
        raise ReportRefused("period_start", "A report covers at most three years.")
    return start, end


def target_title(session: Session, scope: ReportScope, target_id: uuid.UUID) -> str:
    if scope == ReportScope.FRAMEWORK:
        framework = session.get(Framework, target_id)
        if framework is None or framework.deleted_at is not None:
            raise soa.UnknownTarget(f"no framework {target_id}")
        return f"{framework.title} {framework.version}"
    system = session.get(AISystem, target_id)
    if system is None or system.deleted_at is not None:
        raise soa.UnknownTarget(f"no AI system {target_id}")
    return system.name


def _defer(session: Session, report: Report) -> None:
    """The job row on the session's own connection: it commits or rolls back with the request."""
    psycopg_conn = session.connection().connection.driver_connection
    job = queue_jobs.Job(queue=QUEUE, task_name=RENDER_REPORT, lock=f"report:{report.id}",
                         queueing_lock=f"report:{report.id}", task_kwargs={"report_id": str(report.id)})
    JobManager(SyncPsycopgConnector()).defer_job(job, connection=psycopg_conn)
    read_only.mark_written(session)  # the job row went in through the raw connection


def request_report(session: Session, *, scope: ReportScope, target_id: uuid.UUID, fmt: ReportFormat,
                   period: tuple[date, date], requested_by_id: uuid.UUID | None) -> Report:
    """Queue a report (flushes; the caller commits). Raises UnknownTarget or ReportRefused."""
    title = target_title(session, scope, target_id)
    start, end = validate_period(*period)
    report = Report(id=uuid.uuid4(), scope=scope, format=fmt, status=ReportStatus.QUEUED,
                    framework_id=target_id if scope == ReportScope.FRAMEWORK else None,
                    ai_system_id=target_id if scope == ReportScope.AI_SYSTEM else None,
                    period_start=start, period_end=end, title=title, requested_by_id=requested_by_id)
    session.add(report)
    session.flush()
    _defer(session, report)
    audit.record(session, "report.request", object_type="report", object_id=report.id,
                 details={"scope": scope.value, "target_id": str(target_id), "format": fmt.value,
                          "period_start": start.isoformat(), "period_end": end.isoformat()})
    return report


def object_key(report: Report) -> str:
    return f"{OBJECT_PREFIX}{report.id}.{report.extension}"


def _snapshot(session: Session) -> datetime:
    """Begin the read as one REPEATABLE READ snapshot and return its time. A session bound to an
    engine gets a fresh transaction at that level; one bound to a connection already in a
    transaction (a test's) reads in the transaction it has."""
    if isinstance(session.get_bind(), Engine) and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    as_of: datetime = session.execute(text("SELECT transaction_timestamp()")).scalar_one()
    return as_of


def render(report: Report, data: soa.SoA, as_of: datetime) -> bytes:
    stamp = as_of.astimezone(UTC).isoformat()
    if report.format == ReportFormat.CSV:
        return render_csv.render(data, as_of=stamp)
    if report.format == ReportFormat.OSCAL:
        return oscal.render(data, as_of=stamp, report_id=report.id)
    return render_pdf.render(data, as_of=stamp, report_id=str(report.id))


def _mark(session_factory: Callable[[], Session], report_id: uuid.UUID, **values: Any) -> Report | None:
    with session_factory() as session:
        report = session.scalars(select(Report).where(Report.id == report_id).with_for_update()).first()
        if report is None:
            return None
        for name, value in values.items():
            setattr(report, name, value)
        session.commit()
        return report


def execute_report(session_factory: Callable[[], Session], storage: Any, report_id: uuid.UUID) -> str | None:
    """The job's body: render one queued report; returns its final status (None: nothing to do)."""
    started = _mark(session_factory, report_id, status=ReportStatus.RUNNING, error=None)
    if started is None:
        return None
    try:
        with session_factory() as session:
            as_of = _snapshot(session)
            report = session.scalars(select(Report).where(Report.id == report_id)).one()
            target = report.framework_id or report.ai_system_id
            assert target is not None
            data, hit = soa.cached(session, report.scope, target, (report.period_start, report.period_end))
            body = render(report, data, as_of)
            digest = hashlib.sha256(body).hexdigest()
            key = object_key(report)
            stored = storage.put(key, body, content_type=report.content_type)
            report.status, report.as_of, report.sha256 = ReportStatus.SUCCEEDED, as_of, digest
            report.size_bytes, report.bucket, report.object_key = len(body), stored.bucket, key
            report.finished_at = datetime.now(UTC)
            audit.record(session, "report.generate", object_type="report", object_id=report.id,
                         details={"sha256": digest, "size_bytes": len(body), "format": report.format.value,
                                  "as_of": as_of.isoformat(), "object_key": key, "cache_hit": hit})
            session.commit()
            return ReportStatus.SUCCEEDED.value
    except Exception as exc:
        log.exception("report %s failed", report_id)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        with session_factory() as session:
            report = session.scalars(select(Report).where(Report.id == report_id).with_for_update()).one()
            report.status, report.error, report.finished_at = ReportStatus.FAILED, error, datetime.now(UTC)
            audit.record(session, "report.generate", object_type="report", object_id=report_id,
                         outcome=AuditOutcome.ERROR, details={"error": error})
            session.commit()
        return ReportStatus.FAILED.value


PAGE_SIZE = 50


@dataclass(frozen=True)
class ReportPage:
    items: list[Report]
    next_cursor: Cursor | None


def recent(session: Session, *, limit: int = PAGE_SIZE, scope: ReportScope | None = None,
           target_id: uuid.UUID | None = None, after: Cursor | None = None) -> ReportPage:
    """One page of reports, newest first, optionally of one target: keyset on (created_at, id) after
    the cursor (one statement over ix_reports_created_at_id, the same Cursor as the other long lists)."""
    stmt = select(Report)
    if scope == ReportScope.FRAMEWORK and target_id is not None:
        stmt = stmt.where(Report.framework_id == target_id)
    elif scope == ReportScope.AI_SYSTEM and target_id is not None:
        stmt = stmt.where(Report.ai_system_id == target_id)
    if after is not None:
        stmt = stmt.where(or_(Report.created_at < after.created_at,
                              and_(Report.created_at == after.created_at, Report.id < after.id)))
    rows = list(session.scalars(stmt.order_by(Report.created_at.desc(), Report.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return ReportPage(rows, Cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)


def download_name(report: Report) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in report.title)[:80].strip("-") or "report"
    return f"soa-{safe}-{report.created_at:%Y%m%d}-{str(report.id)[:8]}.{report.extension}"
