"""Remediation tasks (governance.services.tasks): one per high or critical alert with its owner and
SLA due date, the closing rules, manual creation and assignment with notices, evidence links, the
board, "my tasks", the navigation counts in one statement, and TASK_SLA_DAYS."""

from __future__ import annotations

import threading
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import config
from extensions import db
from governance import context
from governance.models.audit import Alert, AuditLog
from governance.models.enums import AlertStatus, Severity, TaskStatus
from governance.models.evidence import EvidenceLink
from governance.models.notifications import Notification
from governance.models.tasks import Task
from governance.services import alerts, tasks
from tests.conftest import count_statements


def _alert(session: Session, severity: Severity, owner: Any = None, *, subject: Any = None) -> Alert:
    return alerts.raise_alert(session, rule=alerts.CHECK_FAILING, subject_type="check",
                              subject_id=subject or uuid.uuid4(), title="Bias check is failing", severity=severity,
                              owner_id=owner.id if owner is not None else None)


def _acting(user: Any) -> Any:
    return context.acting_as(context.ActionContext(actor_id=user.id, actor_name=user.email))


def _entries(session: Session, task: Task, action: str) -> list[AuditLog]:
    return list(session.scalars(select(AuditLog).where(AuditLog.object_type == "task",
                                                       AuditLog.object_id == str(task.id),
                                                       AuditLog.action == action).order_by(AuditLog.seq)))


def _notices(session: Session, user: Any) -> list[Notification]:
    return list(session.scalars(select(Notification).where(Notification.user_id == user.id,
                                                           Notification.kind == "task_assigned")))


# --- tasks opened by alerts ------------------------------------------------------------------------

def test_a_high_alert_opens_exactly_one_task_for_its_owner_due_by_the_sla(db_session, make_user) -> None:
    owner = make_user("engineer")
    session = db_session()
    alert = _alert(session, Severity.HIGH, owner)
    [task] = session.scalars(select(Task).where(Task.alert_id == alert.id)).all()
    assert task.assignee_id == owner.id and task.priority == Severity.HIGH and task.status == TaskStatus.OPEN
    assert task.due_date == tasks.today() + timedelta(days=7)
    assert task.title == "Remediate: Bias check is failing"
    assert tasks.open_for_alert(session, alert).id == task.id  # once per alert
    [entry] = _entries(session, task, "task.create")
    assert entry.actor_name == "system:alerts" and entry.details["alert_id"] == str(alert.id)
    [notice] = _notices(session, owner)
    assert notice.link == f"/tasks/{task.id}"
    critical = _alert(session, Severity.CRITICAL, owner)
    assert tasks.for_alert(session, critical.id).due_date == tasks.today() + timedelta(days=2)


def test_medium_and_low_alerts_open_no_task(db_session, make_user) -> None:
    owner = make_user("engineer")
    session = db_session()
    for severity in (Severity.MEDIUM, Severity.LOW):
        alert = _alert(session, severity, owner)
        assert tasks.open_for_alert(session, alert) is None
        assert session.scalars(select(Task).where(Task.alert_id == alert.id)).all() == []


def test_the_sla_comes_from_the_settings(db_session, make_user, override_settings) -> None:
    override_settings(task_sla_days={**config.DEFAULT_TASK_SLA_DAYS, "high": 3})
    session = db_session()
    alert = _alert(session, Severity.HIGH)
    assert tasks.for_alert(session, alert.id).due_date == tasks.today() + timedelta(days=3)


def test_task_sla_days_parses_and_names_bad_values() -> None:
    assert config.load_settings({}).task_sla_days == {"critical": 2, "high": 7, "medium": 30, "low": 90}
    parsed = config.load_settings({"TASK_SLA_DAYS": "critical=1, HIGH=5"}).task_sla_days
    assert parsed == {"critical": 1, "high": 5, "medium": 30, "low": 90}
    for bad, words in (("urgent=1", "severity=days"), ("high", "severity=days"), ("high=soon", "whole number"),
                       ("low=-1", "negative")):
        with pytest.raises(config.ConfigError) as err:
            config.load_settings({"TASK_SLA_DAYS": bad})
        assert words in str(err.value)


def test_two_connections_opening_the_task_of_one_alert_make_one(app, clean_database) -> None:
    factory = sessionmaker(db.engine, expire_on_commit=False)
    with factory() as session:
        alert = _alert(session, Severity.MEDIUM)  # no task yet
        alert.severity = Severity.HIGH
        session.commit()
    first = factory()
    opened = tasks.open_for_alert(first, first.get_one(Alert, alert.id))
    outcome: dict[str, Any] = {}

    def second() -> None:
        with factory() as other:
            outcome["task"] = tasks.open_for_alert(other, other.get_one(Alert, alert.id))
            other.commit()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.5)
    first.commit()
    thread.join(30)
    first.close()
    assert not thread.is_alive()
    assert opened is not None and outcome["task"] is not None and outcome["task"].id == opened.id
    with factory() as check:
        assert len(check.scalars(select(Task).where(Task.alert_id == alert.id)).all()) == 1


# --- closing rules ----------------------------------------------------------------------------------

def test_a_task_whose_alert_is_active_cannot_close_until_the_alert_is_resolved(db_session, make_user) -> None:
    owner, officer = make_user("engineer"), make_user("compliance_officer")
    session = db_session()
    alert = _alert(session, Severity.HIGH, owner)
    task = tasks.for_alert(session, alert.id)
    with _acting(owner):
        tasks.change_status(session, task.id, TaskStatus.IN_PROGRESS)
        for status, reason in ((TaskStatus.DONE, None), (TaskStatus.WONT_FIX, "accepted risk")):
            with pytest.raises(tasks.TaskRuleError) as err:
                tasks.change_status(session, task.id, status, reason=reason)
            assert err.value.field == "status"
            assert "Bias check is failing" in err.value.message and "still open" in err.value.message
    with _acting(officer):
        alerts.acknowledge(session, alert.id)
    with _acting(owner), pytest.raises(tasks.TaskRuleError) as acked:
        tasks.change_status(session, task.id, TaskStatus.DONE)
    assert "still acknowledged" in acked.value.message
    assert task.status == TaskStatus.IN_PROGRESS and task.completed_at is None
    with _acting(officer):
        alerts.resolve(session, alert.id, comment="Retrained with the balanced set")
    with _acting(owner):
        done = tasks.change_status(session, task.id, "done")
    assert done.status == TaskStatus.DONE and done.completed_at is not None
    [_, closing] = _entries(session, task, "task.status")
    assert closing.actor_id == owner.id
    assert closing.details["before"]["status"] == "in_progress" and closing.details["after"]["status"] == "done"
    assert closing.details["after"]["completed_at"] is not None


def test_wont_fix_needs_a_reason_and_reopening_clears_the_closing(db_session, make_user) -> None:
    owner = make_user("engineer")
    session = db_session()
    with _acting(owner):
        task = tasks.create(session, title="Document the fallback model")
        for reason in (None, "", "  "):
            with pytest.raises(tasks.TaskRuleError) as err:
                tasks.change_status(session, task.id, TaskStatus.WONT_FIX, reason=reason)
            assert err.value.field == "reason"
        tasks.change_status(session, task.id, TaskStatus.WONT_FIX, reason="The model is retired next month")
        assert task.status == TaskStatus.WONT_FIX and task.resolution == "The model is retired next month"
        assert task.completed_at is not None
        with pytest.raises(tasks.TaskRuleError) as bad:
            tasks.change_status(session, task.id, "finished")
        assert bad.value.field == "status"
        tasks.change_status(session, task.id, TaskStatus.OPEN)
    assert task.status == TaskStatus.OPEN and task.completed_at is None and task.resolution is None
    reopened = _entries(session, task, "task.status")[-1]
    assert reopened.details["before"]["resolution"] == "The model is retired next month"


# --- by hand: create, assign, update, link evidence --------------------------------------------------------

def test_a_task_created_by_hand_is_audited_and_its_assignee_told(db_session, make_user, make_control) -> None:
    officer, engineer = make_user("compliance_officer"), make_user("engineer")
    control = make_control("GV-2")
    session = db_session()
    with _acting(officer):
        task = tasks.create(session, title="  Review   the model card ", description="Before the release",
                            priority="high", assignee_id=engineer.id, due_date="2030-01-31", control_id=control.id)
    assert task.title == "Review the model card" and task.priority == Severity.HIGH
    assert task.due_date == date(2030, 1, 31) and task.created_by_id == officer.id and task.alert_id is None
    [entry] = _entries(session, task, "task.create")
    assert entry.actor_id == officer.id and entry.details["after"]["assignee_id"] == str(engineer.id)
    [notice] = _notices(session, engineer)
    assert notice.title == "Task for you: Review the model card" and notice.link == f"/tasks/{task.id}"
    with _acting(engineer):
        mine = tasks.create(session, title="Note to self", assignee_id=engineer.id)
    assert mine.assignee_id == engineer.id and len(_notices(session, engineer)) == 1  # not told of one's own


def test_create_and_update_refuse_bad_input_beside_the_field(db_session, make_user) -> None:
    inactive = make_user("engineer")
    inactive.is_active = False
    db_session.commit()
    session = db_session()
    for kwargs, field in (({"title": "  "}, "title"), ({"title": "x" * 501}, "title"),
                          ({"title": "ok", "priority": "urgent"}, "priority"),
                          ({"title": "ok", "due_date": "31/01/2030"}, "due_date"),
                          ({"title": "ok", "assignee_id": inactive.id}, "assignee_id"),
                          ({"title": "ok", "assignee_id": uuid.uuid4()}, "assignee_id"),
                          ({"title": "ok", "control_id": uuid.uuid4()}, "control_id"),
                          ({"title": "ok", "evidence_id": uuid.uuid4()}, "evidence_id")):
        with pytest.raises(tasks.TaskRuleError) as err:
            tasks.create(session, **kwargs)
        assert err.value.field == field, kwargs
    task = tasks.create(session, title="Fine")
    with pytest.raises(tasks.TaskRuleError) as err:
        tasks.update(session, task.id, status="done")
    assert err.value.field == "status"
    with pytest.raises(tasks.TaskRuleError) as missing:
        tasks.change_status(session, uuid.uuid4(), "done")
    assert missing.value.field == "task"


def test_assign_and_update_are_audited_and_the_new_assignee_told(db_session, make_user) -> None:
    officer, first, second = make_user("compliance_officer"), make_user("engineer"), make_user("engineer")
    session = db_session()
    with _acting(officer):
        task = tasks.create(session, title="Rotate the API key", assignee_id=first.id)
        tasks.assign(session, task.id, second.id)
        tasks.assign(session, task.id, second.id)  # unchanged: nothing recorded or sent
        tasks.update(session, task.id, title="Rotate the API keys", due_date=date(2031, 5, 1), priority="low")
        tasks.update(session, task.id, title="Rotate the API keys")  # nothing changed
    assert task.assignee_id == second.id and len(_notices(session, second)) == 1 and len(_notices(session, first)) == 1
    [assigned] = _entries(session, task, "task.assign")
    # The officer's name, IP and user agent ride sealed beside the change (docs/erasure.md).
    assert assigned.details.pop("sealed").startswith("sealed:v1:")
    assert assigned.details == {"before": {"assignee_id": str(first.id)}, "after": {"assignee_id": str(second.id)}}
    [updated] = _entries(session, task, "task.update")
    assert updated.details["after"] == {"title": "Rotate the API keys", "due_date": "2031-05-01", "priority": "low"}
    assert updated.details["before"]["title"] == "Rotate the API key"
    with _acting(officer):
        tasks.assign(session, task.id, None)
    assert task.assignee_id is None


def test_evidence_the_task_produced_is_linked_through_evidence_links(db_session, make_user, make_evidence) -> None:
    engineer = make_user("engineer")
    evidence = make_evidence(engineer, name="Retraining report")
    session = db_session()
    with _acting(engineer):
        task = tasks.create(session, title="Retrain")
        row = tasks.link_evidence(session, task.id, evidence.id, note="the new run")
        assert tasks.link_evidence(session, task.id, evidence.id).id == row.id  # idempotent
        with pytest.raises(tasks.TaskRuleError) as err:
            tasks.link_evidence(session, task.id, uuid.uuid4())
        assert err.value.field == "evidence_id"
        with pytest.raises(tasks.TaskRuleError) as gone:
            tasks.link_evidence(session, uuid.uuid4(), evidence.id)
        assert gone.value.field == "evidence_id"
    [link] = session.scalars(select(EvidenceLink).where(EvidenceLink.task_id == task.id)).all()
    assert link.evidence_id == evidence.id and link.linked_by_id == engineer.id and link.note == "the new run"
    [entry] = session.scalars(select(AuditLog).where(AuditLog.action == "evidence.link",
                                                     AuditLog.object_id == str(evidence.id))).all()
    assert entry.details["target_type"] == "task"


# --- queries -----------------------------------------------------------------------------------------

def test_the_board_is_bounded_per_column_with_totals_in_two_statements(db_session, make_user) -> None:
    engineer = make_user("engineer")
    session = db_session()
    today = tasks.today()
    made = [tasks.create(session, title=f"T{i}", assignee_id=engineer.id, due_date=today + timedelta(days=10 - i))
            for i in range(6)]
    tasks.change_status(session, made[0].id, "in_progress")
    tasks.change_status(session, made[1].id, "done")
    tasks.change_status(session, made[2].id, "wont_fix", reason="duplicate")
    with count_statements() as statements:
        board = tasks.board(session, per_column=2, assignee_id=engineer.id)
    assert len(statements) == 2
    assert set(board) == set(TaskStatus)
    assert board[TaskStatus.OPEN].total == 3 and [t.title for t in board[TaskStatus.OPEN]] == ["T5", "T4"]
    assert [t.title for t in board[TaskStatus.IN_PROGRESS]] == ["T0"] and board[TaskStatus.IN_PROGRESS].total == 1
    assert board[TaskStatus.DONE].total == 1 and board[TaskStatus.WONT_FIX].total == 1
    assert board[TaskStatus.OPEN][0].assignee.id == engineer.id  # loaded with the board
    whole = tasks.board(session)
    assert whole[TaskStatus.OPEN].total >= 3


def test_mine_nav_counts_and_overdue(db_session, make_user) -> None:
    engineer, other = make_user("engineer"), make_user("engineer")
    session = db_session()
    today = tasks.today()
    late = tasks.create(session, title="Late", assignee_id=engineer.id, due_date=today - timedelta(days=1))
    soon = tasks.create(session, title="Soon", assignee_id=engineer.id, due_date=today + timedelta(days=1))
    undated = tasks.create(session, title="Undated", assignee_id=engineer.id)
    closed = tasks.create(session, title="Closed", assignee_id=engineer.id, due_date=today - timedelta(days=5))
    tasks.change_status(session, closed.id, "done")
    tasks.create(session, title="Someone else's", assignee_id=other.id, due_date=today - timedelta(days=3))
    _alert(session, Severity.LOW)
    assert [t.id for t in tasks.mine(session, engineer.id)] == [late.id, soon.id, undated.id]
    assert tasks.is_overdue(late, today) and not tasks.is_overdue(soon, today)
    assert not tasks.is_overdue(undated, today) and not tasks.is_overdue(closed, today)
    with count_statements() as statements:
        counts = tasks.nav_counts(session, engineer.id)
    assert len(statements) == 1
    assert counts["my_tasks"] == 3 and counts["my_overdue"] == 1
    assert counts["open_alerts"] == alerts.open_count(session) >= 1
    assert tasks.nav_counts(session, None)["my_tasks"] == 0
    assert session.scalar(select(Alert.status).where(Alert.rule == alerts.CHECK_FAILING)
                          .limit(1)) == AlertStatus.OPEN
