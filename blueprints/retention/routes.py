"""Retention and legal holds (docs/retention.md): the settings in force, the dry-run plan (what would
be archived, what a hold keeps, what is skipped and why), the archives made, the active holds with
their release forms, a form to place a hold, and "Run retention now" (defers gov:retention).

Reads and changes live in governance.services.retention and legal_holds (validated and audited
there); one commit per request. Forms post and redirect without JavaScript; with htmx a refused
form comes back as its own block with 422 and the error beside the field.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, current_app, flash, redirect, request, url_for
from flask_login import current_user
from procrastinate import SyncPsycopgConnector
from procrastinate import exceptions as queue_exceptions
from procrastinate import jobs as queue_jobs
from procrastinate.manager import JobManager
from sqlalchemy import func, select, text
from werkzeug.wrappers import Response

from blueprints.access import can, requires
from blueprints.errors.routes import error_response
from blueprints.retention.forms import HoldForm, ReleaseForm, RunForm
from blueprints.web import done, parse_uuid, render, wants_fragment
from extensions import db
from governance import jobs
from governance.models.enums import HoldTarget
from governance.models.frameworks import Control, Framework
from governance.services import audit, audit_archive, legal_holds, retention

bp = Blueprint("retention", __name__, url_prefix="/admin/retention")

PAGE = "retention/index.html"
PLAN_EVIDENCE_LIMIT = 100


def hold_panel(target_type: str, target_id: uuid.UUID) -> dict[str, Any]:
    """For the framework, control and evidence pages' "Legal hold" panel: the active holds
    covering the target (one or two statements), or nothing for who may not see holds."""
    if not can("retention", "read"):
        return {"visible": False, "holds": []}
    ids = legal_holds.covering_holds(db.session, target_type, target_id)
    return {"visible": True, "holds": list(legal_holds.holds_by_id(db.session, ids).values())}


def _context(**extra: Any) -> dict[str, Any]:
    settings = current_app.config["SETTINGS"]
    context: dict[str, Any] = {
        "settings": settings,
        "plan": retention.plan(db.session, settings, evidence_limit=PLAN_EVIDENCE_LIMIT),
        "archives": audit_archive.archives(db.session),
        "holds": legal_holds.active_holds(db.session),
        "hold_form": HoldForm(formdata=None),
        "run_form": RunForm(formdata=None),
        "release_errors": {}, "release_values": {},
    }
    context.update(extra)
    return context


@bp.get("")
@requires("retention", "read")
def index() -> Response:
    return render(PAGE, **_context())


@bp.get("/panel")
@requires("retention", "read")
def panel() -> Response:
    """The "Legal hold" panel of a framework, control or evidence page (htmx loads it there; it is
    also a small page of its own without JavaScript)."""
    kind = request.args.get("type", "")
    target_id = parse_uuid(request.args.get("id"))
    if kind not in {t.value for t in HoldTarget} or target_id is None:
        return error_response(404, "Not found", "Name a framework, control or evidence by its id.")
    next_url = _local(request.args.get("next")) or url_for("retention.index")
    return render("retention/panel.html", block="panel", panel=hold_panel(kind, target_id), hold_type=kind,
                  hold_id=target_id, next_url=next_url)


def _resolve_target(kind: HoldTarget, raw: str) -> tuple[uuid.UUID | None, str | None]:
    """The target's id from an id, a control's reference or a framework's title; or the error."""
    text = raw.strip()
    target_id = parse_uuid(text)
    if target_id is not None:
        return target_id, None
    if kind == HoldTarget.EVIDENCE:
        return None, "Give the evidence's id (on its page)."
    if kind == HoldTarget.CONTROL:
        ids = list(db.session.scalars(select(Control.id).where(Control.ref_id == text).limit(2)))
        what = f"control with reference {text!r}"
    else:
        ids = list(db.session.scalars(select(Framework.id).where(func.lower(Framework.title) == text.lower()).limit(2)))
        what = f"framework titled {text!r}"
    if not ids:
        return None, f"No {what}."
    if len(ids) > 1:
        return None, f"More than one {what}: give its id."
    return ids[0], None


def _local(url: str | None) -> str | None:
    return url if url and url.startswith("/") and not url.startswith("//") else None


def _hold_form_failed(form: HoldForm) -> Response:
    if wants_fragment():
        return render(PAGE, block="hold_form", status=422, hold_form=form)
    return render(PAGE, status=422, **_context(hold_form=form))


@bp.post("/holds")
@requires("retention", "hold")
def place_hold() -> Response:
    form = HoldForm()
    if not form.validate_on_submit():
        return _hold_form_failed(form)
    kind = legal_holds.parse_target_type(form.target_type.data)
    target_id, error = _resolve_target(kind, form.target.data or "")
    if error is not None:
        form.target.errors = [*form.target.errors, error]
        return _hold_form_failed(form)
    try:
        hold = legal_holds.place(db.session, kind, target_id, form.reason.data, current_user.id)
    except legal_holds.HoldError as exc:
        db.session.rollback()
        field = getattr(form, exc.field or "target", form.target)
        field.errors = [*field.errors, exc.message]
        return _hold_form_failed(form)
    db.session.commit()
    return done(_local(form.next.data) or url_for("retention.index"), f"Legal hold placed ({hold.id}).")


@bp.post("/holds/<uuid:hold_id>/release")
@requires("retention", "hold")
def release_hold(hold_id: uuid.UUID) -> Response:
    form = ReleaseForm()
    reason = (request.form.get("release_reason") or "")[: legal_holds.REASON_MAX + 1]
    error: str | None = None
    if not form.validate_on_submit():
        error = " ".join(form.release_reason.errors) or "Say why the hold ends."
    else:
        try:
            legal_holds.release(db.session, hold_id, reason, current_user.id)
        except legal_holds.HoldError as exc:
            db.session.rollback()
            if exc.field == "hold" and "No legal hold" in exc.message:
                return error_response(404, "Legal hold not found", exc.message)
            error = exc.message
    if error is not None:
        extra = {"release_errors": {hold_id: error}, "release_values": {hold_id: reason}}
        return render(PAGE, block="holds", status=422, **_context(**extra))
    db.session.commit()
    return done(url_for("retention.index"), "Legal hold released.")


@bp.post("/run")
@requires("retention", "run")
def run_now() -> Response:
    """Queue the gov:retention job now (its queueing lock joins a run already waiting)."""
    form = RunForm()
    if not form.validate_on_submit():
        flash("The form expired; try again.", "error")
        return redirect(url_for("retention.index"), code=303)
    psycopg_conn = db.session.connection().connection.driver_connection
    job = queue_jobs.Job(queue="default", task_name=jobs.RETENTION, lock="retention", queueing_lock="retention",
                         task_kwargs={"timestamp": int(time.time())})
    waiting = db.session.execute(text("SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = "
                                      "'retention' AND status = 'todo')")).scalar()
    notice = "A retention run is already waiting in the queue."
    if not waiting:
        try:
            with db.session.begin_nested():
                JobManager(SyncPsycopgConnector()).defer_job(job, connection=psycopg_conn)
            notice = "Retention queued: it runs as soon as a worker is free."
        except queue_exceptions.AlreadyEnqueued:  # queued by someone else meanwhile
            pass
    audit.record(db.session, "retention.requested", object_type="retention", object_id="run",
                 details={"queued": notice.startswith("Retention queued")})
    db.session.commit()
    return done(url_for("retention.index"), notice)

