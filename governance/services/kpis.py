"""Daily KPI snapshots (metrics rows) for the dashboard's trend charts.

One row per key, UTC day and dimensions, written with INSERT … ON CONFLICT on
uq_metrics_key_period_dimensions: re-running a day replaces its values. Each value is read from a
pre-aggregated row or a partial index, never from results:

- framework_score {"framework_id": …}: CurrentScore.value of each live framework that has one;
- open_alerts: alerts open or acknowledged;
- overdue_tasks: live tasks open / in progress whose due date is before the day;
- evidence_expiring_30d: live approved evidence expiring within 30 days of the snapshot time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from governance.models import Evidence, Framework, Task
from governance.models.audit import Alert
from governance.models.enums import AlertStatus, EvidenceStatus, TaskStatus
from governance.models.scoring import CurrentScore, Metric

FRAMEWORK_SCORE = "framework_score"
OPEN_ALERTS = "open_alerts"
OVERDUE_TASKS = "overdue_tasks"
EVIDENCE_EXPIRING = "evidence_expiring_30d"
EXPIRING_WITHIN = timedelta(days=30)
OPEN_ALERT_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
OPEN_TASK_STATUSES = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS)


@dataclass(frozen=True)
class Counts:
    open_alerts: int
    overdue_tasks: int
    evidence_expiring: int


def day_period(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def counts(session: Session, *, today: date, now: datetime) -> Counts:
    """The three counts in one statement (the dashboard shows the same numbers live)."""
    def count(model: Any, *conditions: Any) -> Any:
        return select(func.count()).select_from(model).where(*conditions).scalar_subquery()

    row = session.execute(
        select(
            count(Alert, Alert.status.in_(OPEN_ALERT_STATUSES)).label("alerts"),
            count(Task, Task.deleted_at.is_(None), Task.status.in_(OPEN_TASK_STATUSES),
                  Task.due_date < today).label("tasks"),
            count(Evidence, Evidence.deleted_at.is_(None), Evidence.status == EvidenceStatus.APPROVED,
                  Evidence.expires_at.is_not(None), Evidence.expires_at <= now + EXPIRING_WITHIN).label("evidence"),
        )
    ).one()
    return Counts(open_alerts=int(row.alerts), overdue_tasks=int(row.tasks), evidence_expiring=int(row.evidence))


def snapshot(session: Session, day: date | None = None, *, now: datetime | None = None) -> int:
    """Write the day's metrics (default: today, UTC); returns how many rows were written. Flushes."""
    now = now or datetime.now(UTC)
    day = day or now.date()
    start, end = day_period(day)
    rows: list[dict[str, Any]] = []
    scores = session.execute(
        select(CurrentScore.framework_id, CurrentScore.value)
        .join(Framework, Framework.id == CurrentScore.framework_id)
        .where(CurrentScore.value.is_not(None), Framework.deleted_at.is_(None))
    ).all()
    for framework_id, value in scores:
        rows.append({"key": FRAMEWORK_SCORE, "value": value,
                     "dimensions": {"framework_id": str(framework_id)}})
    current = counts(session, today=day, now=now)
    rows += [
        {"key": OPEN_ALERTS, "value": Decimal(current.open_alerts), "dimensions": {}},
        {"key": OVERDUE_TASKS, "value": Decimal(current.overdue_tasks), "dimensions": {}},
        {"key": EVIDENCE_EXPIRING, "value": Decimal(current.evidence_expiring), "dimensions": {}},
    ]
    for row in rows:
        row.update(period_start=start, period_end=end)
    stmt = insert(cast(Table, Metric.__table__))
    stmt = stmt.on_conflict_do_update(
        index_elements=["key", "period_start", "period_end", "dimensions"],
        set_={"value": stmt.excluded.value, "updated_at": text("now()")},
    )
    session.execute(stmt, rows)
    session.flush()
    return len(rows)


def snapshot_now(session_factory: Any, day: date | None = None) -> int:
    """The daily job's body: one transaction, acting as job:kpi_snapshot."""
    from governance import context

    with context.acting_as(context.ActionContext(actor_name="job:kpi_snapshot")), session_factory() as session:
        written = snapshot(session, day)
        session.commit()
    return written
