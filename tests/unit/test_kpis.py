"""Daily KPI metrics: what each counts, re-running a day replaces its rows, and the periodic job
runs through a real worker."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from extensions import db
from governance.models import Task
from governance.models.audit import Alert
from governance.models.enums import AlertStatus, EvidenceStatus, ResultOutcome, TaskStatus
from governance.models.frameworks import Control, Framework
from governance.models.probes import Check, CheckControl, Probe
from governance.models.scoring import Metric
from governance.services import kpis, scoring

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
DAY = NOW.date()


def _metrics(session: Session, day: date) -> dict[tuple[str, str | None], Decimal]:
    start, end = kpis.day_period(day)
    rows = session.execute(select(Metric.key, Metric.dimensions, Metric.value)
                           .where(Metric.period_start == start, Metric.period_end == end)).all()
    return {(key, dims.get("framework_id")): value for key, dims, value in rows}


def _scored_framework(session: Session, outcomes: list[ResultOutcome]) -> Framework:
    fw = Framework(title=f"KPI framework {len(outcomes)} {id(outcomes)}", version="1")
    session.add(fw)
    session.flush()
    probe = Probe(name=f"kpi probe {fw.id}", kind="manual_attestation")
    session.add(probe)
    session.flush()
    checks = []
    for i, outcome in enumerate(outcomes):
        control = Control(framework_id=fw.id, ref_id=f"K-{i}", title="k")
        session.add(control)
        session.flush()
        check = Check(probe_id=probe.id, control_id=control.id, name=f"k{i}", last_outcome=outcome)
        session.add(check)
        session.flush()
        session.add(CheckControl(check_id=check.id, control_id=control.id))
        checks.append(check)
    session.flush()
    scoring.on_checks_changed(session, [c.id for c in checks])
    return fw


def test_snapshot_counts_scores_alerts_overdue_tasks_and_expiring_evidence(
        db_session: Any, make_user: Any, make_evidence: Any) -> None:
    session = db_session()
    base = kpis.counts(session, today=DAY, now=NOW)
    fw = _scored_framework(session, [ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT])
    unscored = Framework(title="KPI no score", version="1")
    session.add(unscored)
    for status in (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED):
        session.add(Alert(rule="test", title=f"alert {status}", status=status))
    yesterday = DAY - timedelta(days=1)
    session.add_all([
        Task(title="overdue", status=TaskStatus.OPEN, due_date=yesterday),
        Task(title="overdue in progress", status=TaskStatus.IN_PROGRESS, due_date=yesterday),
        Task(title="due today", status=TaskStatus.OPEN, due_date=DAY),
        Task(title="done late", status=TaskStatus.DONE, due_date=yesterday),
        Task(title="no date", status=TaskStatus.OPEN),
        Task(title="deleted", status=TaskStatus.OPEN, due_date=yesterday, deleted_at=NOW),
    ])
    uploader = make_user("engineer")
    for name, status, expires in (("soon", EvidenceStatus.APPROVED, NOW + timedelta(days=10)),
                                  ("later", EvidenceStatus.APPROVED, NOW + timedelta(days=40)),
                                  ("rejected", EvidenceStatus.REJECTED, NOW + timedelta(days=5)),
                                  ("never", EvidenceStatus.APPROVED, None)):
        evidence = make_evidence(uploader, name=name)
        evidence.status, evidence.expires_at = status, expires
    session.flush()

    written = kpis.snapshot(session, DAY, now=NOW)

    metrics = _metrics(session, DAY)
    assert written == len(metrics)
    assert metrics[(kpis.FRAMEWORK_SCORE, str(fw.id))] == Decimal("50.00")
    assert (kpis.FRAMEWORK_SCORE, str(unscored.id)) not in metrics  # no score yet: no point
    assert metrics[(kpis.OPEN_ALERTS, None)] == base.open_alerts + 2
    assert metrics[(kpis.OVERDUE_TASKS, None)] == base.overdue_tasks + 2
    assert metrics[(kpis.EVIDENCE_EXPIRING, None)] == base.evidence_expiring + 1


def test_rerunning_a_day_replaces_its_values(db_session: Any) -> None:
    session = db_session()
    fw = _scored_framework(session, [ResultOutcome.PARTIAL])
    kpis.snapshot(session, DAY, now=NOW)
    session.add(Alert(rule="test", title="new alert"))
    check = session.execute(select(Check).join(Control).where(Control.framework_id == fw.id)).scalar_one()
    check.last_outcome = ResultOutcome.COMPLIANT
    session.flush()
    scoring.on_checks_changed(session, [check.id])
    before = _metrics(session, DAY)

    kpis.snapshot(session, DAY, now=NOW)

    after = _metrics(session, DAY)
    assert after[(kpis.FRAMEWORK_SCORE, str(fw.id))] == Decimal("100.00")
    assert after[(kpis.OPEN_ALERTS, None)] == before[(kpis.OPEN_ALERTS, None)] + 1
    start, _ = kpis.day_period(DAY)
    assert session.scalar(select(func.count()).select_from(Metric).where(
        Metric.key == kpis.FRAMEWORK_SCORE, Metric.period_start == start,
        Metric.dimensions["framework_id"].astext == str(fw.id))) == 1
    # Another day is another row.
    kpis.snapshot(session, DAY + timedelta(days=1), now=NOW + timedelta(days=1))
    assert (kpis.FRAMEWORK_SCORE, str(fw.id)) in _metrics(session, DAY + timedelta(days=1))


def test_the_daily_job_is_scheduled_and_a_worker_writes_todays_metrics(app: Any, clean_database: None) -> None:
    job_app = app.extensions["jobs"]
    task_name = "gov:kpi_snapshot"
    [periodic] = [p for p in job_app.periodic_registry.periodic_tasks.values() if p.task.name == task_name]
    assert periodic.cron == "55 23 * * *"

    with Session(db.engine) as session:
        fw = _scored_framework(session, [ResultOutcome.COMPLIANT])
        session.commit()
        fw_id = fw.id
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = :t AND status = 'todo'"), {"t": task_name})
    with job_app.open():
        job_id = int(job_app.configure_task(task_name).defer(timestamp=0))
    worker = threading.Thread(target=job_app.run_worker, kwargs={"wait": False, "install_signal_handlers": False})
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()

    with db.engine.begin() as conn:
        status = conn.execute(text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}).scalar()
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id})
    assert status == "succeeded"
    with Session(db.engine) as session:
        today = session.scalar(select(func.now())).astimezone(UTC).date()
        assert _metrics(session, today)[(kpis.FRAMEWORK_SCORE, str(fw_id))] == Decimal("100.00")
