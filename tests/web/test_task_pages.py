"""Task pages: the board's four columns, status changes in place (the card moves, the column counts
and the navigation's counts follow out of band), a refused close showing the reason beside the
control, won't fix asking for a reason, "My tasks", the overdue highlight, new / edit forms, the task
page (its alert, assignment, linked evidence), the navigation's counts and their poll, who may do
what, and statement counts that do not grow with the data."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from extensions import db
from governance.models.audit import AuditLog
from governance.models.enums import Severity, TaskStatus
from governance.models.evidence import EvidenceLink
from governance.models.tasks import Task
from governance.services import alerts, tasks
from tests.conftest import count_statements

HX = {"HX-Request": "true"}


def _task(title: str | None = None, *, status: TaskStatus = TaskStatus.OPEN, assignee: Any = None,
          due_in: int | None = None, priority: Severity = Severity.MEDIUM, reason: str | None = None) -> Task:
    due = tasks.today() + timedelta(days=due_in) if due_in is not None else None
    task = tasks.create(db.session, title=title or f"Task {uuid.uuid4().hex[:6]}", priority=priority,
                        assignee_id=assignee.id if assignee is not None else None, due_date=due)
    if status != TaskStatus.OPEN:
        tasks.change_status(db.session, task.id, status, reason=reason)
    db.session.commit()
    return task


def _alert_task(owner: Any = None) -> tuple[Any, Task]:
    alert = alerts.raise_alert(db.session, rule=alerts.DENIAL_BURST, subject_type="user", subject_id=uuid.uuid4(),
                               title="Refused requests burst", severity=Severity.HIGH,
                               owner_id=owner.id if owner is not None else None)
    db.session.commit()
    task = tasks.for_alert(db.session, alert.id)
    assert task is not None
    return alert, task


def _column(html: str, status: str) -> str:
    match = re.search(rf'<section class="task-column" id="column-{status}".*?</section>', html, re.S)
    assert match, f"no {status} column"
    return match.group(0)


def _card_ids(html: str) -> list[str]:
    return re.findall(r'<article id="task-([0-9a-f-]{36})"', html)


def _token(client: FlaskClient, csrf_token: Any, url: str = "/tasks") -> str:
    return str(csrf_token(client.get(url).get_data(as_text=True)))


def _status(client: FlaskClient, token: str, task: Task, status: str, *, view: str = "board", reason: str = "",
            htmx: bool = True) -> Any:
    return client.post(f"/tasks/{task.id}/status", headers=HX if htmx else {},
                       data={"csrf_token": token, "view": view, "status": status, "reason": reason})


# --- the board -----------------------------------------------------------------------------------


def test_the_board_has_four_columns_with_their_tasks_and_counts(client: FlaskClient, login_as: Any) -> None:
    login_as("auditor")
    todo = _task("Write the policy")
    doing = _task("Rotate keys", status=TaskStatus.IN_PROGRESS)
    done = _task("Patch the model server", status=TaskStatus.DONE)
    skipped = _task("Buy a HSM", status=TaskStatus.WONT_FIX, reason="Out of budget this year")

    html = client.get("/tasks").get_data(as_text=True)

    for status, task, label in (("open", todo, "Open"), ("in_progress", doing, "In progress"),
                                ("done", done, "Done"), ("wont_fix", skipped, "Won&#39;t fix")):
        column = _column(html, status)
        assert str(task.id) in _card_ids(column), status
        assert f'<h2 id="column-heading-{status}">{label}' in column
        total = db.session.scalar(select(db.func.count()).select_from(Task).where(Task.status == status))
        assert f'<span id="column-count-{status}" class="column-count">{total}<' in column
    # An auditor reads the board but neither works nor creates tasks.
    assert "Save status" not in html and 'href="/tasks/new"' not in html


def test_a_status_change_moves_the_card_and_sends_the_counts_out_of_band(
        client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    user = login_as("engineer")
    task = _task("Move me", assignee=user)
    token = _token(client, csrf_token)

    response = _status(client, token, task, "in_progress")

    assert response.status_code == 200
    assert response.headers["HX-Reswap"] == "delete"  # the card leaves the column it was in
    html = response.get_data(as_text=True)
    moved = re.search(r'<div hx-swap-oob="afterbegin:#task-list-in_progress">\s*<article id="task-([0-9a-f-]+)"', html)
    assert moved is not None and moved.group(1) == str(task.id)
    assert "Moved to In progress." in html
    counts = dict(re.findall(r'<span id="column-count-(\w+)" class="column-count" hx-swap-oob="true">(\d+)<', html))
    assert set(counts) == {"open", "in_progress", "done", "wont_fix"}
    for status, number in counts.items():
        assert int(number) == db.session.scalar(select(db.func.count()).select_from(Task)
                                                .where(Task.status == status, Task.deleted_at.is_(None)))
    assert re.search(r'<span id="nav-tasks-count" class="nav-count" hx-swap-oob="true"> \(1 mine\)</span>', html)
    db.session.expire_all()
    assert db.session.get(Task, task.id).status == TaskStatus.IN_PROGRESS  # type: ignore[union-attr]
    assert db.session.scalars(select(AuditLog).where(AuditLog.action == "task.status",
                                                     AuditLog.object_id == str(task.id))).all()

    # The same status again changes nothing: the card stays where it is.
    same = _status(client, token, task, "in_progress")
    assert same.status_code == 200 and "HX-Reswap" not in same.headers
    assert same.get_data(as_text=True).lstrip().startswith(f'<article id="task-{task.id}"')


def test_closing_a_task_whose_alert_is_active_is_refused_beside_the_control(
        client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    login_as("admin")
    alert, task = _alert_task()
    token = _token(client, csrf_token)

    refused = _status(client, token, task, "done")

    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert html.lstrip().startswith(f'<article id="task-{task.id}"') and "HX-Reswap" not in refused.headers
    error = re.search(rf'<p class="field-error" id="status-error-{task.id}" role="alert">(.*?)</p>', html, re.S)
    assert error is not None and "still open" in error.group(1) and "resolve the alert" in error.group(1)
    assert f'aria-describedby="status-error-{task.id}"' in html
    assert re.search(r'<option value="done" selected>', html)  # what was chosen stays chosen
    db.session.expire_all()
    assert db.session.get(Task, task.id).status == TaskStatus.OPEN  # type: ignore[union-attr]

    alerts.resolve(db.session, alert.id, comment="It was a pen test")
    db.session.commit()
    closed = _status(client, token, task, "done")
    assert closed.status_code == 200 and closed.headers["HX-Reswap"] == "delete"
    assert 'hx-swap-oob="afterbegin:#task-list-done"' in closed.get_data(as_text=True)


def test_wont_fix_asks_for_a_reason(client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    login_as("compliance_officer")
    task = _task("Not worth it")
    token = _token(client, csrf_token)

    refused = _status(client, token, task, "wont_fix", reason="  ")
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    error = re.search(rf'<p class="field-error" id="reason-error-{task.id}" role="alert">(.*?)</p>', html)
    assert error is not None and error.group(1) == "Say why this task will not be fixed."
    assert 'class="field reason-field field-invalid"' in html

    done = _status(client, token, task, "wont_fix", reason="Accepted risk, see minutes")
    assert done.status_code == 200
    assert 'hx-swap-oob="afterbegin:#task-list-wont_fix"' in done.get_data(as_text=True)
    db.session.expire_all()
    stored = db.session.get(Task, task.id)
    assert stored is not None and stored.status == TaskStatus.WONT_FIX
    assert stored.resolution == "Accepted risk, see minutes"
    assert "Accepted risk, see minutes" in client.get(f"/tasks/{task.id}").get_data(as_text=True)


def test_without_javascript_a_status_change_redirects_or_shows_the_board_with_the_error(
        client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    login_as("admin")
    task = _task("Plain form")
    token = _token(client, csrf_token)
    moved = _status(client, token, task, "in_progress", htmx=False)
    assert moved.status_code == 303 and moved.headers["Location"] == "/tasks"
    assert "Moved to In progress." in client.get("/tasks").get_data(as_text=True)

    refused = _status(client, token, task, "wont_fix", htmx=False)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "<html" in html and f'id="reason-error-{task.id}"' in html

    on_page = _status(client, token, task, "done", view="detail", htmx=False)
    assert on_page.status_code == 303 and on_page.headers["Location"] == f"/tasks/{task.id}"
    assert _status(client, token, task, "nonsense").status_code == 422
    assert client.post(f"/tasks/{uuid.uuid4()}/status", data={"csrf_token": token, "status": "done"}).status_code == 404


# --- my tasks, overdue ------------------------------------------------------------------------------


def test_my_tasks_lists_my_open_work_soonest_due_first(client: FlaskClient, login_as: Any, make_user: Any,
                                                       csrf_token: Any) -> None:
    me = login_as("engineer")
    other = make_user("engineer")
    later = _task("Later", assignee=me, due_in=10)
    late = _task("Late", assignee=me, due_in=-2, status=TaskStatus.IN_PROGRESS)
    _task("Someone else's", assignee=other)
    _task("Finished", assignee=me, status=TaskStatus.DONE)

    html = client.get("/tasks/mine").get_data(as_text=True)

    assert _card_ids(html) == [str(late.id), str(later.id)]
    late_card = re.search(rf'<article id="task-{late.id}" class="([^"]+)".*?</article>', html, re.S)
    assert late_card is not None and "overdue" in late_card.group(1).split()
    assert '<strong class="overdue-flag">Overdue</strong>' in late_card.group(0)
    later_card = re.search(rf'<article id="task-{later.id}" class="([^"]+)".*?</article>', html, re.S)
    assert later_card is not None and "overdue" not in later_card.group(1).split()
    assert "Overdue" not in later_card.group(0)
    # The navigation counts my open tasks and the overdue ones, in words, not colour alone.
    assert re.search(r'id="nav-tasks-count" class="nav-count"> \(2 mine, <span class="nav-overdue">1 overdue</span>\)',
                     html)

    # Closing from "My tasks" swaps the card in place (it says so) and updates the count.
    token = csrf_token(html)
    done = _status(client, token, later, "done", view="mine")
    body = done.get_data(as_text=True)
    assert done.status_code == 200 and "HX-Reswap" not in done.headers
    assert body.lstrip().startswith(f'<article id="task-{later.id}"') and "Moved to Done." in body
    assert re.search(r'id="nav-tasks-count" class="nav-count" hx-swap-oob="true"> \(1 mine, ', body)
    assert client.get("/tasks/mine", headers=HX).status_code == 200


def test_the_board_highlights_overdue_tasks(client: FlaskClient, login_as: Any) -> None:
    login_as("auditor")
    late = _task("Overdue one", due_in=-1)
    closed_late = _task("Closed late one", due_in=-5, status=TaskStatus.DONE)
    html = client.get("/tasks").get_data(as_text=True)
    card = re.search(rf'<article id="task-{late.id}" class="([^"]+)".*?</article>', html, re.S)
    assert card is not None and "overdue" in card.group(1).split() and "Overdue" in card.group(0)
    closed = re.search(rf'<article id="task-{closed_late.id}" class="([^"]+)".*?</article>', html, re.S)
    assert closed is not None and "overdue" not in closed.group(1).split()
    detail = client.get(f"/tasks/{late.id}").get_data(as_text=True)
    assert 'class="task-body overdue"' in detail and '<strong class="overdue-flag">Overdue</strong>' in detail


# --- new, edit, the task page -------------------------------------------------------------------


def test_create_a_task_with_errors_beside_the_fields(client: FlaskClient, login_as: Any, csrf_token: Any,
                                                     make_user: Any, make_control: Any) -> None:
    login_as("compliance_officer")
    assignee = make_user("engineer")
    control = make_control("GV-7", "Incident response is rehearsed")
    page = client.get("/tasks/new")
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))
    picker = client.get("/tasks/new?picker=1&control_q=GV-7", headers=HX).get_data(as_text=True)
    assert picker.lstrip().startswith('<fieldset id="control-picker"') and f'value="{control.id}"' in picker

    base = {"csrf_token": token, "title": "", "description": "Run the tabletop", "priority": "high",
            "assignee_id": str(assignee.id), "due_date": "2031-02-30", "control_id": str(control.id)}
    missing = client.post("/tasks/new", data=base)
    assert missing.status_code == 422
    assert re.search(r'<p class="field-error" id="title-error">Give the task a title.</p>',
                     missing.get_data(as_text=True))

    bad_date = client.post("/tasks/new", data={**base, "title": "Tabletop exercise"})
    html = bad_date.get_data(as_text=True)
    assert bad_date.status_code == 422 and 'id="due_date-error">Enter the due date as YYYY-MM-DD.' in html
    assert f'value="{control.id}" id="control-{control.id}" checked' in html  # the chosen control is kept

    created = client.post("/tasks/new", data={**base, "title": "Tabletop exercise", "due_date": "2031-02-28"})
    assert created.status_code == 303
    task = db.session.scalars(select(Task).where(Task.title == "Tabletop exercise")).one()
    assert created.headers["Location"] == f"/tasks/{task.id}"
    assert (task.priority, task.assignee_id, task.control_id, task.due_date.isoformat()) == (  # type: ignore[union-attr]
        Severity.HIGH, assignee.id, control.id, "2031-02-28")
    detail = client.get(created.headers["Location"]).get_data(as_text=True)
    assert "Task “Tabletop exercise” created." in detail and "GV-7" in detail and assignee.name in detail


def test_edit_a_task(client: FlaskClient, login_as: Any, csrf_token: Any, make_user: Any) -> None:
    login_as("admin")
    task = _task("Draft title")
    new_owner = make_user("engineer")
    page = client.get(f"/tasks/{task.id}/edit").get_data(as_text=True)
    assert 'value="Draft title"' in page
    token = csrf_token(page)
    saved = client.post(f"/tasks/{task.id}/edit", data={
        "csrf_token": token, "title": "Final title", "description": "", "priority": "low",
        "assignee_id": str(new_owner.id), "due_date": "", "control_id": ""})
    assert saved.status_code == 303 and saved.headers["Location"] == f"/tasks/{task.id}"
    db.session.expire_all()
    stored = db.session.get(Task, task.id)
    assert stored is not None and (stored.title, stored.priority, stored.assignee_id) == (
        "Final title", Severity.LOW, new_owner.id)
    refused = client.post(f"/tasks/{task.id}/edit", data={"csrf_token": token, "title": " ", "priority": "low"})
    assert refused.status_code == 422 and 'id="title-error"' in refused.get_data(as_text=True)


def test_the_task_page_shows_its_alert_assigns_and_links_evidence(
        client: FlaskClient, login_as: Any, csrf_token: Any, make_user: Any, make_evidence: Any) -> None:
    login_as("admin")
    engineer = make_user("engineer")
    alert, task = _alert_task()
    report = make_evidence(engineer, name="Firewall review")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert f'<p id="task-alert"><a href="/alerts/{alert.id}">Refused requests burst</a>' in page
    assert "This task can be closed once the alert is resolved." in page
    token = csrf_token(page)

    assigned = client.post(f"/tasks/{task.id}/assign", headers=HX,
                           data={"csrf_token": token, "assignee_id": str(engineer.id)})
    body = assigned.get_data(as_text=True)
    assert assigned.status_code == 200 and body.lstrip().startswith('<div id="task-body"')
    assert f"Assigned to {engineer.name}." in body and 'id="nav-tasks-count"' in body
    bad = client.post(f"/tasks/{task.id}/assign", headers=HX, data={"csrf_token": token, "assignee_id": "x"})
    assert bad.status_code == 422 and 'id="task-assignee-error"' in bad.get_data(as_text=True)

    found = client.get(f"/tasks/{task.id}/evidence/candidates?q=firewall", headers=HX).get_data(as_text=True)
    assert found.lstrip().startswith('<div id="task-evidence-candidates"') and "Firewall review" in found
    linked = client.post(f"/tasks/{task.id}/evidence", headers=HX,
                         data={"csrf_token": token, "evidence_id": str(report.id)})
    section = linked.get_data(as_text=True)
    assert linked.status_code == 200 and section.lstrip().startswith('<section id="task-evidence"')
    assert "Linked Firewall review." in section and f'id="task-evidence-{report.id}"' in section
    link = db.session.scalars(select(EvidenceLink).where(EvidenceLink.task_id == task.id)).one()
    assert link.evidence_id == report.id
    again = client.get(f"/tasks/{task.id}/evidence/candidates?q=firewall", headers=HX).get_data(as_text=True)
    assert "Firewall review" not in again  # linked already
    missing = client.post(f"/tasks/{task.id}/evidence", headers=HX, data={"csrf_token": token, "evidence_id": ""})
    assert missing.status_code == 422 and "Choose evidence to link." in missing.get_data(as_text=True)
    gone = client.post(f"/tasks/{task.id}/evidence", headers=HX,
                       data={"csrf_token": token, "evidence_id": str(uuid.uuid4())})
    assert gone.status_code == 422 and "does not exist" in gone.get_data(as_text=True)
    # Without JavaScript the candidates are a page of their own.
    standalone = client.get(f"/tasks/{task.id}/evidence/candidates").get_data(as_text=True)
    assert "<h1>Link evidence to" in standalone
    assert client.get(f"/tasks/{uuid.uuid4()}").status_code == 404


# --- the navigation -----------------------------------------------------------------------------


def test_the_navigation_links_and_counts_in_one_statement(client: FlaskClient, login_as: Any) -> None:
    me = login_as("admin")
    _task("Mine, late", assignee=me, due_in=-1)
    _alert_task()
    with count_statements() as statements:
        html = client.get("/probes").get_data(as_text=True)
    nav = re.search(r'<nav class="site-nav".*?</nav>', html, re.S)
    assert nav is not None
    assert 'href="/alerts"' in nav.group(0) and 'href="/tasks"' in nav.group(0)
    open_alerts = alerts.open_count(db.session)
    assert f'id="nav-alerts-count" class="nav-count"> ({open_alerts}<span class="visually-hidden"> open</span>)' in html
    assert '(1 mine, <span class="nav-overdue">1 overdue</span>)' in html
    assert 'hx-get="/tasks/nav-counts" hx-trigger="every 60s" hx-swap="none"' in html
    assert len([s for s in statements if "my_overdue" in s]) == 1

    polled = client.get("/tasks/nav-counts", headers=HX).get_data(as_text=True)
    assert 'id="nav-alerts-count" class="nav-count" hx-swap-oob="true"' in polled
    assert 'id="nav-tasks-count" class="nav-count" hx-swap-oob="true"' in polled


def test_the_audit_log_link_is_for_who_may_read_it(client: FlaskClient, login_as: Any, app: Any) -> None:
    login_as("engineer")
    html = client.get("/tasks").get_data(as_text=True)
    assert ">Audit log</a>" not in html
    if "audit.index" in app.view_functions:
        client.post("/logout")
        login_as("auditor")
        assert ">Audit log</a>" in client.get("/tasks").get_data(as_text=True)


# --- who may do what ----------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "works", "creates"), [
    ("admin", True, True), ("compliance_officer", True, True), ("engineer", True, False), ("auditor", False, False)])
def test_who_may_work_create_and_update(client: FlaskClient, login_as: Any, csrf_token: Any, role: str,
                                        works: bool, creates: bool) -> None:
    login_as(role)
    task = _task("Permissions")
    html = client.get("/tasks").get_data(as_text=True)
    assert ("Save status" in html) is works
    assert ('href="/tasks/new"' in html) is creates
    token = csrf_token(html)
    assert _status(client, token, task, "in_progress").status_code == (200 if works else 403)
    assert client.get("/tasks/new").status_code == (200 if creates else 403)
    assert client.get(f"/tasks/{task.id}/edit").status_code == (200 if creates else 403)  # tasks:update
    detail = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert ('id="task-assignee"' in detail) is creates


# --- statement counts -----------------------------------------------------------------------------


def test_pages_run_the_same_statements_for_few_and_many_tasks(client: FlaskClient, login_as: Any,
                                                              make_user: Any) -> None:
    me = login_as("admin")
    people = [make_user("engineer") for _ in range(3)]
    first = _task("First", assignee=me, due_in=-1)
    _alert_task(owner=me)
    client.get("/tasks")  # the first request after signing in also loads the access rules

    def measure(url: str) -> int:
        with count_statements() as statements:
            assert client.get(url).status_code == 200
        return len(statements)

    few = {url: measure(url) for url in ("/tasks", "/tasks/mine", f"/tasks/{first.id}")}
    for i in range(15):
        status = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.DONE)[i % 3]
        _task(f"Bulk {i}", status=status, assignee=(me if i % 2 else people[i % 3]), due_in=i - 7)
        _alert_task(owner=people[i % 3])
    many = {url: measure(url) for url in few}
    assert few == many
