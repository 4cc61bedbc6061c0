"""Task pages: the board (open / in progress / done / won't fix), "My tasks", one task (its alert,
linked evidence, assignment), new and edit forms, and the navigation's work counts.

Views stay thin: changes in governance.services.tasks (validated and audited there), one commit per
request. Every form posts and redirects without JavaScript. With htmx a status change swaps only
the task's card: on the board a moved card is deleted where it was (HX-Reswap: delete) and inserted
at the top of its new column out of band, and the column counts follow out of band; a refused
change (closing a task whose alert is still active, won't fix without a reason) comes back with
422 and the reason beside the status control. Every alert or task change also sends the
navigation's counts out of band (with_nav_counts), and the navigation polls them every 60 s.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from flask import Blueprint, abort, flash, g, make_response, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_login import current_user
from jinja2_fragments.flask import render_block
from sqlalchemy import select
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.tasks.forms import TaskForm
from blueprints.web import done, parse_uuid, render, wants_fragment
from extensions import db
from governance.models.enums import TaskStatus
from governance.models.evidence import Evidence, EvidenceLink
from governance.models.tasks import Task
from governance.services import evidence_queries
from governance.services import probes as directory
from governance.services import tasks as service
from governance.services.tasks import TaskRuleError

bp = Blueprint("tasks", __name__)

BOARD_TEMPLATE = "tasks/board.html"
MINE_TEMPLATE = "tasks/mine.html"
DETAIL_TEMPLATE = "tasks/detail.html"
FORM_TEMPLATE = "tasks/form.html"
CARD_TEMPLATE = "tasks/_card.html"
COUNTS_TEMPLATE = "tasks/_column_counts.html"
NAV_COUNTS_TEMPLATE = "tasks/_nav_counts.html"
CANDIDATES_TEMPLATE = "tasks/evidence_candidates.html"
COLUMNS = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.DONE, TaskStatus.WONT_FIX)
STATUS_LABELS = {TaskStatus.OPEN: "Open", TaskStatus.IN_PROGRESS: "In progress", TaskStatus.DONE: "Done",
                 TaskStatus.WONT_FIX: "Won't fix"}
VIEWS = ("board", "mine", "detail")
EVIDENCE_SHOWN = 50
CANDIDATE_LIMIT = evidence_queries.TARGET_LIMIT
NO_COUNTS = {"open_alerts": 0, "my_tasks": 0, "my_overdue": 0}


# --- template helpers: labels, overdue, the navigation's counts ----------------------------------


@bp.app_template_filter("task_status")
def task_status(status: TaskStatus | str) -> str:
    try:
        return STATUS_LABELS[TaskStatus(status)]
    except ValueError:
        return str(status)


def _today() -> date:
    if "task_today" not in g:
        g.task_today = service.today()
    day: date = g.task_today
    return day


def overdue(task: Task) -> bool:
    return service.is_overdue(task, _today())


def work_counts() -> dict[str, int]:
    """The signed-in user's open alerts, open tasks and overdue tasks: one statement, at most once
    per request (only pages that render the navigation ask)."""
    if not current_user.is_authenticated:
        return dict(NO_COUNTS)
    if "work_counts" not in g:
        g.work_counts = service.nav_counts(db.session, current_user.id)
    counts: dict[str, int] = g.work_counts
    return counts


def with_nav_counts(body: str, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """An htmx answer: `body` plus the navigation's counts out of band (they may have just changed)."""
    g.pop("work_counts", None)
    response = make_response(body + render_template(NAV_COUNTS_TEMPLATE, oob=True), status)
    response.headers.update(headers or {})
    response.vary.add("HX-Request")
    return response


@bp.record_once
def _install_template_helpers(state: BlueprintSetupState) -> None:
    app = state.app
    app.jinja_env.globals.update(work_counts=work_counts, task_overdue=overdue, task_columns=COLUMNS,
                                 has_endpoint=lambda name: name in app.view_functions)


@bp.get("/tasks/nav-counts")
@requires("tasks", "read")
def nav_counts() -> Response:
    """The navigation's poll (every 60 s): only out-of-band swaps of the counts."""
    response = make_response(render_template(NAV_COUNTS_TEMPLATE, oob=True))
    response.vary.add("HX-Request")
    return response


# --- reads ---------------------------------------------------------------------------------------


def _task_or_404(task_id: uuid.UUID) -> Task:
    task = service.get(db.session, task_id)
    if task is None or task.deleted_at is not None:
        abort(404)
    return task


def _board_page(*, status: int = 200, card_errors: Mapping[uuid.UUID, Mapping[str, str]] | None = None,
                card_values: Mapping[uuid.UUID, Mapping[str, str]] | None = None) -> Response:
    columns = service.board(db.session)
    return render(BOARD_TEMPLATE, status=status, columns=columns, labels=STATUS_LABELS,
                  card_errors=card_errors or {}, card_values=card_values or {})


@bp.get("/tasks")
@requires("tasks", "read")
def board() -> Response:
    return _board_page()


def _mine_page(*, status: int = 200, card_errors: Mapping[uuid.UUID, Mapping[str, str]] | None = None,
               card_values: Mapping[uuid.UUID, Mapping[str, str]] | None = None) -> Response:
    tasks = service.mine(db.session, current_user.id)
    return render(MINE_TEMPLATE, status=status, tasks=tasks, limit=service.MINE_LIMIT, labels=STATUS_LABELS,
                  card_errors=card_errors or {}, card_values=card_values or {})


@bp.get("/tasks/mine")
@requires("tasks", "read")
def mine() -> Response:
    return _mine_page()


def _linked_evidence(task_id: uuid.UUID) -> list[tuple[Evidence, EvidenceLink]]:
    """The live evidence linked to the task, newest link first (one statement, bounded)."""
    rows = db.session.execute(
        select(Evidence, EvidenceLink)
        .join(EvidenceLink, EvidenceLink.evidence_id == Evidence.id)
        .where(EvidenceLink.task_id == task_id, Evidence.deleted_at.is_(None))
        .order_by(EvidenceLink.created_at.desc(), EvidenceLink.id.desc())
        .limit(EVIDENCE_SHOWN)
    ).all()
    return [(evidence, link) for evidence, link in rows]


def _detail_context(task: Task, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "task": task, "labels": STATUS_LABELS, "errors": {}, "values": {}, "notice": None,
        "evidence_rows": _linked_evidence(task.id), "evidence_error": None, "evidence_notice": None,
        "users": directory.active_users(db.session), "q": "", "candidates": None,
    }
    context.update(extra)
    return context


@bp.get("/tasks/<uuid:task_id>")
@requires("tasks", "read")
def detail(task_id: uuid.UUID) -> Response:
    return render(DETAIL_TEMPLATE, **_detail_context(_task_or_404(task_id)))


# --- status changes (tasks:work) -------------------------------------------------------------------


def _view() -> str:
    view = request.form.get("view", "")
    return view if view in VIEWS else "detail"


def _column_counts() -> str:
    totals = service.board(db.session, per_column=0)
    return render_template(COUNTS_TEMPLATE, columns=totals, oob=True)


def _status_answer(task_id: uuid.UUID, view: str, *, moved: bool, notice: str | None = None,
                   errors: Mapping[str, str] | None = None, values: Mapping[str, str] | None = None) -> Response:
    status = 422 if errors else 200
    task = _task_or_404(task_id)
    if wants_fragment():
        if view == "detail":
            body = render_block(DETAIL_TEMPLATE, "task_body", **_detail_context(
                task, errors=errors or {}, values=values or {}, notice=notice))
            return with_nav_counts(body, status=status)
        card = render_template(CARD_TEMPLATE, task=task, view=view, errors=errors or {}, values=values or {},
                               notice=notice)
        if view == "board" and moved:
            # The card leaves its column (the target is deleted) and opens its new one.
            body = f'<div hx-swap-oob="afterbegin:#task-list-{task.status.value}">{card}</div>' + _column_counts()
            return with_nav_counts(body, headers={"HX-Reswap": "delete"})
        return with_nav_counts(card + (_column_counts() if view == "board" else ""), status=status)
    if errors:
        card_errors, card_values = {task.id: errors}, {task.id: values or {}}
        if view == "board":
            return _board_page(status=422, card_errors=card_errors, card_values=card_values)
        if view == "mine":
            return _mine_page(status=422, card_errors=card_errors, card_values=card_values)
        return render(DETAIL_TEMPLATE, status=422, **_detail_context(task, errors=errors, values=values or {}))
    flash(notice or "Saved.", "success")
    endpoint = {"board": "tasks.board", "mine": "tasks.mine"}.get(view)
    return redirect(url_for(endpoint) if endpoint else url_for("tasks.detail", task_id=task.id), code=303)


@bp.post("/tasks/<uuid:task_id>/status")
@requires("tasks", "work")
def change_status(task_id: uuid.UUID) -> Response:
    before = _task_or_404(task_id).status
    view = _view()
    wanted = request.form.get("status", "")
    reason = (request.form.get("reason") or "")[: service.TEXT_MAX + 1]
    try:
        task = service.change_status(db.session, task_id, wanted, reason=reason)
    except TaskRuleError as exc:
        db.session.rollback()
        if exc.field == "task":
            abort(404)
        field = exc.field if exc.field in ("status", "reason") else "status"
        return _status_answer(task_id, view, moved=False, errors={field: exc.message},
                              values={"status": wanted, "reason": reason})
    db.session.commit()
    moved = task.status != before
    notice = f"Moved to {task_status(task.status)}." if moved else "No change."
    return _status_answer(task_id, view, moved=moved, notice=notice)


# --- assignment, details, evidence (tasks:update) ---------------------------------------------------


@bp.post("/tasks/<uuid:task_id>/assign")
@requires("tasks", "update")
def assign(task_id: uuid.UUID) -> Response:
    task = _task_or_404(task_id)
    raw = request.form.get("assignee_id") or ""
    assignee = parse_uuid(raw)
    try:
        if raw and assignee is None:
            raise TaskRuleError("assignee_id", "Choose an active user to assign the task to.")
        task = service.assign(db.session, task_id, assignee)
    except TaskRuleError as exc:
        db.session.rollback()
        task = _task_or_404(task_id)
        context = _detail_context(task, errors={"assignee_id": exc.message})
        if wants_fragment():
            return with_nav_counts(render_block(DETAIL_TEMPLATE, "task_body", **context), status=422)
        return render(DETAIL_TEMPLATE, status=422, **context)
    db.session.commit()
    notice = f"Assigned to {task.assignee.name}." if task.assignee else "Unassigned."
    if wants_fragment():
        return with_nav_counts(render_block(DETAIL_TEMPLATE, "task_body", **_detail_context(task, notice=notice)))
    flash(notice, "success")
    return redirect(url_for("tasks.detail", task_id=task.id), code=303)


def _evidence_section(task: Task, *, status: int = 200, **extra: Any) -> Response:
    context = _detail_context(task, **extra)
    if wants_fragment():
        response = make_response(render_block(DETAIL_TEMPLATE, "task_evidence", **context), status)
        response.vary.add("HX-Request")
        return response
    return render(DETAIL_TEMPLATE, status=status, **context)


def _candidates(task_id: uuid.UUID, q: str) -> list[Evidence]:
    """Live evidence not yet linked to the task whose name matches q (newest first; the newest
    when q is empty), at most CANDIDATE_LIMIT."""
    linked = select(EvidenceLink.id).where(EvidenceLink.evidence_id == Evidence.id,
                                           EvidenceLink.task_id == task_id).exists()
    stmt = select(Evidence).where(Evidence.deleted_at.is_(None), ~linked)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Evidence.name.ilike(f"%{escaped}%", escape="\\"))
    return list(db.session.scalars(stmt.order_by(Evidence.created_at.desc(), Evidence.id.desc())
                                   .limit(CANDIDATE_LIMIT)))


@bp.get("/tasks/<uuid:task_id>/evidence/candidates")
@requires("tasks", "update")
def evidence_candidates(task_id: uuid.UUID) -> Response:
    task = _task_or_404(task_id)
    q = evidence_queries.clean_query(request.args.get("q"))
    return render(CANDIDATES_TEMPLATE, block="candidates", task=task, q=q, candidates=_candidates(task.id, q),
                  standalone=not wants_fragment())


@bp.post("/tasks/<uuid:task_id>/evidence")
@requires("tasks", "update")
def link_evidence(task_id: uuid.UUID) -> Response:
    task = _task_or_404(task_id)
    evidence_id = parse_uuid(request.form.get("evidence_id"))
    if evidence_id is None:
        return _evidence_section(task, status=422, evidence_error="Choose evidence to link.")
    try:
        row = service.link_evidence(db.session, task.id, evidence_id)
    except TaskRuleError as exc:
        db.session.rollback()
        return _evidence_section(_task_or_404(task_id), status=422, evidence_error=exc.message)
    db.session.commit()
    notice = f"Linked {row.evidence.name}."
    if wants_fragment():
        return _evidence_section(task, evidence_notice=notice)
    flash(notice, "success")
    return redirect(url_for("tasks.detail", task_id=task.id, _anchor="task-evidence"), code=303)


# --- new and edit ----------------------------------------------------------------------------------


def _form(formdata: Any = None, **data: Any) -> TaskForm:
    form = TaskForm(formdata=formdata, **data)
    form.assignee_id.choices = [("", "Nobody")] + [
        (str(u.id), f"{u.name} ({u.email})") for u in directory.active_users(db.session)]
    return form


def _picker_state() -> tuple[uuid.UUID | None, str]:
    source = request.form if request.method == "POST" else request.args
    return parse_uuid(source.get("control_id")), (source.get("control_q") or "").strip()[:200]


def _form_page(form: TaskForm, *, task: Task | None, control_id: uuid.UUID | None, q: str = "",
               status: int = 200, block: str | None = None, control_error: str | None = None) -> Response:
    chosen = directory.controls_by_id(db.session, [control_id]) if control_id else []
    choices = directory.control_choices(db.session, q, exclude=[c.id for c in chosen]) if q else None
    return render(FORM_TEMPLATE, block=block, status=status, form=form, task=task, chosen=chosen[0] if chosen else None,
                  choices=choices, q=q, control_error=control_error)


def _place(form: TaskForm, exc: TaskRuleError) -> str | None:
    """The message beside its field; a control error is the picker's (returned)."""
    if exc.field == "control_id":
        return exc.message
    target = getattr(form, exc.field, None)
    if target is not None and hasattr(target, "errors") and exc.field != "meta":
        target.errors = [*target.errors, exc.message]
    else:
        form.form_errors.append(exc.message)
    return None


@bp.get("/tasks/new")
@requires("tasks", "create")
def new() -> Response:
    control_id, q = _picker_state()
    block = "control_picker" if request.args.get("picker") == "1" else None
    return _form_page(_form(None), task=None, control_id=control_id, q=q, block=block)


@bp.post("/tasks/new")
@requires("tasks", "create")
def create() -> Response:
    form = _form(request.form)
    control_id, q = _picker_state()
    if request.form.get("refresh") or not form.validate_on_submit():  # the picker's "Find" without JS
        return _form_page(form, task=None, control_id=control_id, q=q,
                          status=200 if request.form.get("refresh") else 422)
    try:
        task = service.create(
            db.session, title=form.title.data or "", description=form.description.data,
            priority=form.priority.data or "medium", assignee_id=_assignee(form), due_date=form.due_date.data or None,
            control_id=control_id)
    except TaskRuleError as exc:
        db.session.rollback()
        control_error = _place(form, exc)
        return _form_page(form, task=None, control_id=control_id, status=422, control_error=control_error)
    db.session.commit()
    return done(url_for("tasks.detail", task_id=task.id), f"Task “{task.title}” created.")


def _assignee(form: TaskForm) -> uuid.UUID | None:
    raw = form.assignee_id.data or ""
    assignee = parse_uuid(raw)
    if raw and assignee is None:
        raise TaskRuleError("assignee_id", "Choose an active user to assign the task to.")
    return assignee


@bp.get("/tasks/<uuid:task_id>/edit")
@requires("tasks", "update")
def edit(task_id: uuid.UUID) -> Response:
    task = _task_or_404(task_id)
    if request.args.get("picker") == "1":
        control_id, q = _picker_state()
        return _form_page(_form(None), task=task, control_id=control_id, q=q, block="control_picker")
    form = _form(None, title=task.title, description=task.description or "", priority=task.priority.value,
                 assignee_id=str(task.assignee_id or ""), due_date=task.due_date.isoformat() if task.due_date else "")
    return _form_page(form, task=task, control_id=task.control_id)


@bp.post("/tasks/<uuid:task_id>/edit")
@requires("tasks", "update")
def update(task_id: uuid.UUID) -> Response:
    task = _task_or_404(task_id)
    form = _form(request.form)
    control_id, q = _picker_state()
    if request.form.get("refresh") or not form.validate_on_submit():
        return _form_page(form, task=task, control_id=control_id, q=q,
                          status=200 if request.form.get("refresh") else 422)
    try:
        service.update(db.session, task.id, title=form.title.data or "", description=form.description.data,
                       priority=form.priority.data or "medium", due_date=form.due_date.data or None,
                       control_id=control_id)
        service.assign(db.session, task.id, _assignee(form))
    except TaskRuleError as exc:
        db.session.rollback()
        control_error = _place(form, exc)
        return _form_page(form, task=_task_or_404(task_id), control_id=control_id, status=422,
                          control_error=control_error)
    db.session.commit()
    return done(url_for("tasks.detail", task_id=task_id), "Saved.")
