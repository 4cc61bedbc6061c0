"""Remediation tasks: opened by people or, one per alert, by high and critical alerts.

Rules (docs/alerts.md):
- statuses open → in_progress → done, or wont_fix (which needs a reason, kept in `resolution`);
  reopening (back to open or in_progress) clears completed_at and the closing note (the audit log
  keeps both);
- a task raised by an alert cannot be closed while that alert is still active (open or
  acknowledged): resolve the alert first, or let it clear by itself;
- an alert's task goes to the alert's owner, due after the SLA of its severity (settings
  TASK_SLA_DAYS, e.g. "critical=2,high=7,medium=30,low=90");
- the assignee is told in-app (and by e-mail through the outbox when SMTP is configured) of every
  assignment, except one they made to themselves.
Every change is audited with before/after. Functions flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, joinedload

from governance import context
from governance.models.audit import Alert
from governance.models.enums import AlertStatus, Severity, TaskStatus
from governance.models.evidence import Evidence, EvidenceLink
from governance.models.frameworks import Control
from governance.models.identity import User
from governance.models.probes import Check, Probe
from governance.models.tasks import Task
from governance.services import audit, evidence_links, notifications

TITLE_MAX = 500
TEXT_MAX = 10_000
PER_COLUMN = 50
MINE_LIMIT = 50
COUNT_CAP = 100
ACTIVE = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS)
CLOSED = (TaskStatus.DONE, TaskStatus.WONT_FIX)
DEFAULT_SLA_DAYS: Mapping[str, int] = {"critical": 2, "high": 7, "medium": 30, "low": 90}
URGENT = (Severity.HIGH, Severity.CRITICAL)
UPDATABLE = ("title", "description", "priority", "due_date", "control_id", "evidence_id", "probe_id")


class TaskRuleError(ValueError):
    """A change the task rules refuse; `field` names the form field the page shows it beside."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def link(task: Task) -> str:
    return f"/tasks/{task.id}"


def today() -> date:
    return datetime.now(UTC).date()


def is_overdue(task: Task, today: date) -> bool:
    """Still to do and its due date has passed."""
    return task.status in ACTIVE and task.due_date is not None and task.due_date < today


def sla_days(settings: Any = None) -> Mapping[str, int]:
    """The SLA (days to the due date) per severity: the running app's TASK_SLA_DAYS, else defaults."""
    if settings is None:
        from flask import current_app, has_app_context

        if has_app_context() and "SETTINGS" in current_app.config:
            settings = current_app.config["SETTINGS"]
    configured = getattr(settings, "task_sla_days", None) or {}
    return {**DEFAULT_SLA_DAYS, **configured}


def due_for(severity: Severity, *, on: date | None = None, sla: Mapping[str, int] | None = None) -> date:
    sla = sla or sla_days()
    return (on or today()) + timedelta(days=int(sla[Severity(severity).value]))


def _snapshot(task: Task) -> dict[str, Any]:
    return {"title": task.title, "description": task.description, "status": task.status,
            "priority": task.priority, "assignee_id": task.assignee_id, "due_date": task.due_date,
            "control_id": task.control_id, "evidence_id": task.evidence_id, "probe_id": task.probe_id,
            "completed_at": task.completed_at, "resolution": task.resolution}


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def _notify_assignee(session: Session, task: Task, *, why: str) -> None:
    """Tell the assignee (not when they assigned it to themselves). One notice per assignment."""
    if task.assignee_id is None or task.assignee_id == context.current().actor_id:
        return
    notifications.notify(
        session, task.assignee_id, kind="task_assigned", title=f"Task for you: {task.title}",
        body=why + (f" Due {task.due_date.isoformat()}." if task.due_date else ""), link=link(task))


# --- validation ------------------------------------------------------------------------------------

def _clean_title(title: str | None) -> str:
    clean = " ".join((title or "").split())
    if not clean:
        raise TaskRuleError("title", "Give the task a title.")
    if len(clean) > TITLE_MAX:
        raise TaskRuleError("title", f"Keep the title under {TITLE_MAX} characters.")
    return clean


def _clean_text(field: str, value: str | None) -> str | None:
    clean = (value or "").strip()
    if len(clean) > TEXT_MAX:
        raise TaskRuleError(field, f"Keep it under {TEXT_MAX} characters.")
    return clean or None


def _priority(value: Severity | str | None) -> Severity:
    try:
        return Severity(value or Severity.MEDIUM)
    except ValueError:
        raise TaskRuleError("priority", "Choose low, medium, high or critical.") from None


def _due(value: date | str | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise TaskRuleError("due_date", "Enter the due date as YYYY-MM-DD.") from None


def _assignee(session: Session, assignee_id: uuid.UUID | None) -> uuid.UUID | None:
    if assignee_id is None:
        return None
    user = session.get(User, assignee_id)
    if user is None or user.deleted_at is not None or not user.is_active:
        raise TaskRuleError("assignee_id", "Choose an active user to assign the task to.")
    return user.id


def _reference(session: Session, field: str, model: type[Any], value: uuid.UUID | None, what: str) -> uuid.UUID | None:
    if value is None:
        return None
    found = session.get(model, value)
    if found is None or getattr(found, "deleted_at", None) is not None:
        raise TaskRuleError(field, f"That {what} does not exist (any more).")
    return value


def get(session: Session, task_id: uuid.UUID) -> Task | None:
    return session.get(Task, task_id)


def _locked(session: Session, task_id: uuid.UUID) -> Task:
    task = session.scalars(select(Task).where(Task.id == task_id).with_for_update()
                           .execution_options(populate_existing=True)).one_or_none()
    if task is None:
        raise TaskRuleError("task", "That task does not exist (any more).")
    return task


# --- changes ---------------------------------------------------------------------------------------

def create(session: Session, *, title: str, description: str | None = None, priority: Severity | str = Severity.MEDIUM,
           assignee_id: uuid.UUID | None = None, due_date: date | str | None = None,
           control_id: uuid.UUID | None = None, evidence_id: uuid.UUID | None = None,
           probe_id: uuid.UUID | None = None) -> Task:
    """A task opened by a person (the current actor), audited; the assignee is told."""
    task = Task(
        title=_clean_title(title), description=_clean_text("description", description),
        priority=_priority(priority), assignee_id=_assignee(session, assignee_id), due_date=_due(due_date),
        control_id=_reference(session, "control_id", Control, control_id, "control"),
        evidence_id=_reference(session, "evidence_id", Evidence, evidence_id, "evidence"),
        probe_id=_reference(session, "probe_id", Probe, probe_id, "probe"),
        created_by_id=context.current().actor_id, status=TaskStatus.OPEN,
    )
    session.add(task)
    session.flush()
    session.refresh(task)
    audit.record(session, "task.create", object_type="task", object_id=task.id, after=_snapshot(task))
    _notify_assignee(session, task, why="A task was assigned to you.")
    return task


def open_for_alert(session: Session, alert: Alert, *, sla: Mapping[str, int] | None = None) -> Task | None:
    """The remediation task of a high or critical alert (None for low and medium ones): opened once
    per alert, race-safe (ON CONFLICT on uq_tasks_alert_id); a second call returns the same task."""
    if alert.severity not in URGENT:
        return None
    opened = open_for_alerts(session, [alert], sla=sla)
    if opened:
        return opened[0]
    return session.scalars(select(Task).where(Task.alert_id == alert.id)
                           .execution_options(include_deleted=True)).one_or_none()


def open_for_alerts(session: Session, alerts: Sequence[Alert], *, sla: Mapping[str, int] | None = None) -> list[Task]:
    """open_for_alert for many alerts in one INSERT; returns only the tasks it opened."""
    urgent = {a.id: a for a in alerts if a.severity in URGENT}
    if not urgent:
        return []
    sla = sla or sla_days()
    on = today()
    check_ids = [uuid.UUID(a.source_id) for a in urgent.values() if a.source_type == "check" and _is_uuid(a.source_id)]
    # The check's control and probe, and the AI system that probe checks (its AI checks), if any.
    checks = {c.id: (c.control_id, c.probe_id, c.ai_system_id) for c in session.execute(
        select(Check.id, Check.control_id, Check.probe_id, Probe.ai_system_id)
        .join(Probe, Probe.id == Check.probe_id).where(Check.id.in_(check_ids)))} if check_ids else {}
    rows = []
    for a in urgent.values():
        control_id = probe_id = evidence_id = ai_system_id = None
        if a.source_type == "check" and _is_uuid(a.source_id) and uuid.UUID(str(a.source_id)) in checks:
            control_id, probe_id, ai_system_id = checks[uuid.UUID(str(a.source_id))]
        elif a.source_type == "evidence" and _is_uuid(a.source_id):
            evidence_id = uuid.UUID(str(a.source_id))
        rows.append({
            "title": f"Remediate: {a.title}"[:TITLE_MAX],
            "description": a.message or f"Opened by the {a.severity.value} alert {a.rule}.",
            "status": TaskStatus.OPEN, "priority": a.severity, "assignee_id": a.owner_id,
            "alert_id": a.id, "control_id": control_id, "probe_id": probe_id, "evidence_id": evidence_id,
            "ai_system_id": ai_system_id,
            "due_date": due_for(a.severity, on=on, sla=sla),
        })
    stmt = (insert(Task).values(rows)
            .on_conflict_do_nothing(index_elements=["alert_id"], index_where=Task.alert_id.isnot(None))
            .returning(Task.id))
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    opened = list(session.scalars(select(Task).where(Task.id.in_(ids)).execution_options(populate_existing=True)))
    ctx = context.ActionContext(actor_name="system:alerts", request_id=context.current().request_id)
    notices = []
    for task in opened:
        audit.record(session, "task.create", object_type="task", object_id=task.id, ctx=ctx,
                     after=_snapshot(task), details={"alert_id": task.alert_id, **(
                         {"ai_system_id": task.ai_system_id} if task.ai_system_id is not None else {})})
        if task.assignee_id is not None:
            notices.append(notifications.NewNotification(
                user_id=task.assignee_id, kind="task_assigned", title=f"Task for you: {task.title}",
                body=f"A {task.priority.value} alert needs remediation by {task.due_date}.", link=link(task),
                dedup_key=f"task:{task.id}:assigned:{task.assignee_id}"))
    notifications.notify_many(session, notices)
    return opened


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _active_alert(session: Session, task: Task) -> Alert | None:
    if task.alert_id is None:
        return None
    alert = session.get(Alert, task.alert_id, populate_existing=True)
    return alert if alert is not None and alert.status != AlertStatus.RESOLVED else None


def change_status(session: Session, task_id: uuid.UUID, status: TaskStatus | str, *, reason: str | None = None) -> Task:
    """Move a task to `status`. wont_fix needs a reason; closing (done, wont_fix) a task whose alert
    is still active is refused, naming the alert."""
    try:
        target = TaskStatus(status)
    except ValueError:
        raise TaskRuleError("status", "Choose open, in progress, done or won't fix.") from None
    task = _locked(session, task_id)
    note = _clean_text("reason", reason)
    if target == task.status and (target != TaskStatus.WONT_FIX or note in (None, task.resolution)):
        return task
    if target == TaskStatus.WONT_FIX and note is None:
        raise TaskRuleError("reason", "Say why this task will not be fixed.")
    if target in CLOSED:
        alert = _active_alert(session, task)
        if alert is not None:
            raise TaskRuleError("status", f"The alert \u201c{alert.title}\u201d that raised this task is still "
                                          f"{alert.status.value}: resolve the alert (or let it clear by "
                                          "itself) before closing the task.")
    before = _snapshot(task)
    if target in CLOSED:
        if task.status not in CLOSED:
            task.completed_at = func.now()  # type: ignore[assignment]
        task.resolution = note
    else:
        task.completed_at = None
        task.resolution = None
    task.status = target
    session.flush()
    session.refresh(task)
    old, new = _changed(before, _snapshot(task))
    audit.record(session, "task.status", object_type="task", object_id=task.id, before=old, after=new,
                 details={"reason": note} if note else None)
    return task


def assign(session: Session, task_id: uuid.UUID, assignee_id: uuid.UUID | None) -> Task:
    """Give the task to someone (None: unassign); audited, the new assignee told in-app."""
    task = _locked(session, task_id)
    new_assignee = _assignee(session, assignee_id)
    if new_assignee == task.assignee_id:
        return task
    before = {"assignee_id": task.assignee_id}
    task.assignee_id = new_assignee
    session.flush()
    audit.record(session, "task.assign", object_type="task", object_id=task.id, before=before,
                 after={"assignee_id": new_assignee})
    _notify_assignee(session, task, why="A task was assigned to you.")
    return task


def update(session: Session, task_id: uuid.UUID, **fields: Any) -> Task:
    """Change the task's details (title, description, priority, due_date, control_id, evidence_id,
    probe_id); status and assignee have their own functions. Audited with what changed."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise TaskRuleError(sorted(unknown)[0], f"{', '.join(sorted(unknown))} cannot be changed here.")
    task = _locked(session, task_id)
    clean: dict[str, Any] = {}
    if "title" in fields:
        clean["title"] = _clean_title(fields["title"])
    if "description" in fields:
        clean["description"] = _clean_text("description", fields["description"])
    if "priority" in fields:
        clean["priority"] = _priority(fields["priority"])
    if "due_date" in fields:
        clean["due_date"] = _due(fields["due_date"])
    for field, model, what in (("control_id", Control, "control"), ("evidence_id", Evidence, "evidence"),
                               ("probe_id", Probe, "probe")):
        if field in fields:
            clean[field] = _reference(session, field, model, fields[field], what)
    before = _snapshot(task)
    for key, value in clean.items():
        setattr(task, key, value)
    old, new = _changed(before, _snapshot(task))
    if not new:
        return task
    session.flush()
    audit.record(session, "task.update", object_type="task", object_id=task.id, before=old, after=new)
    return task


def link_evidence(session: Session, task_id: uuid.UUID, evidence_id: uuid.UUID, *,
                  note: str | None = None) -> EvidenceLink:
    """Attach evidence the task produced (evidence_links.task_id; audited by evidence_links)."""
    evidence = session.get(Evidence, evidence_id)
    if evidence is None or evidence.deleted_at is not None:
        raise TaskRuleError("evidence_id", "That evidence does not exist (any more).")
    try:
        return evidence_links.link(session, evidence, "task", task_id, linked_by_id=context.current().actor_id,
                                   note=note)
    except evidence_links.LinkError as exc:
        raise TaskRuleError("evidence_id", exc.message) from None


# --- queries ---------------------------------------------------------------------------------------

class Column(list[Task]):
    """One board column: up to PER_COLUMN tasks (a list), and `total`, how many have that status."""

    total: int = 0


def board(session: Session, *, per_column: int = PER_COLUMN,
          assignee_id: uuid.UUID | None = None) -> dict[TaskStatus, Column]:
    """Live tasks by status, each column bounded (to-do soonest due first, closed most recent
    first), with every column's total: two statements whatever the number of tasks."""
    scope: list[Any] = [Task.deleted_at.is_(None)]
    if assignee_id is not None:
        scope.append(Task.assignee_id == assignee_id)
    # Within a column every row has one status: closed ones sort by completed_at (newest first),
    # the others (completed_at NULL, so tied) by due date.
    closed_at = case((Task.status.in_(CLOSED), Task.completed_at))
    ranked = (select(Task.id, func.row_number().over(
        partition_by=Task.status,
        order_by=(closed_at.desc().nulls_last(), Task.due_date.asc().nulls_last(), Task.created_at, Task.id),
    ).label("n")).where(*scope).subquery())
    rows = session.scalars(
        select(Task).join(ranked, ranked.c.id == Task.id).where(ranked.c.n <= per_column)
        .options(joinedload(Task.assignee)).order_by(Task.status, ranked.c.n))
    columns = {status: Column() for status in TaskStatus}
    for task in rows.unique():
        columns[task.status].append(task)
    counted = session.execute(select(Task.status, func.count()).where(*scope).group_by(Task.status)).all()
    totals: dict[TaskStatus, int] = {row[0]: int(row[1]) for row in counted}
    for status, column in columns.items():
        column.total = int(totals.get(status, 0))
    return columns


def mine(session: Session, user_id: uuid.UUID, *, limit: int = MINE_LIMIT) -> list[Task]:
    """The user's open and in-progress tasks, soonest due first (ix_tasks_open_assignee_id_due_date)."""
    return list(session.scalars(
        select(Task).where(Task.assignee_id == user_id, Task.status.in_(ACTIVE), Task.deleted_at.is_(None))
        .order_by(Task.due_date.asc().nulls_last(), Task.created_at, Task.id).limit(limit)))


def nav_counts(session: Session, user_id: uuid.UUID | None, *, on: date | None = None,
               cap: int = COUNT_CAP) -> dict[str, int]:
    """{"open_alerts", "my_tasks", "my_overdue"} for the navigation, each counted up to `cap`, in
    one statement."""
    from governance.services import alerts

    on = on or today()
    my_active = and_(Task.assignee_id == user_id, Task.status.in_(ACTIVE), Task.deleted_at.is_(None))

    def capped(*where: Any) -> Any:
        sub = select(Task.id).where(*where).limit(cap).subquery()
        return select(func.count()).select_from(sub).scalar_subquery()

    if user_id is None:
        mine_q: Any = literal(0)
        overdue_q: Any = literal(0)
    else:
        mine_q = capped(my_active)
        overdue_q = capped(my_active, Task.due_date < on)
    row = session.execute(select(alerts.open_count_query(cap).label("open_alerts"),
                                 mine_q.label("my_tasks"), overdue_q.label("my_overdue"))).one()
    return {"open_alerts": int(row.open_alerts or 0), "my_tasks": int(row.my_tasks or 0),
            "my_overdue": int(row.my_overdue or 0)}


def for_alert(session: Session, alert_id: uuid.UUID) -> Task | None:
    return session.scalars(select(Task).where(Task.alert_id == alert_id)).one_or_none()


def overdue_filter(on: date) -> Any:
    return and_(Task.status.in_(ACTIVE), Task.due_date < on)

