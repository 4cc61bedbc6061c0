"""Backups and restore drills (admin page): see governance.services.backups and drills.

GET /admin/backups (backups:read: admins, compliance officers, auditors): the status (the last
successful backup and its age against BACKUP_MAX_AGE_HOURS, the last drill), the newest backups and
the newest drills (bounded lists: a fixed number of statements whatever the history's length).
The two buttons (backups:run, admins) queue a job for a worker and come back with a flash; the
job's result shows on the page once it has run.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, url_for
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.backups.forms import RunBackupForm, RunDrillForm
from blueprints.web import done, render, wants_fragment
from extensions import db
from governance.models.enums import DrillStatus
from governance.services import drills

bp = Blueprint("backups", __name__, url_prefix="/admin/backups")


@bp.app_template_filter("seconds")
def seconds(value: float | None) -> str:
    """A duration for people: 0.84 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if value is None:
        return ""
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@bp.get("")
@requires("backups", "read")
def index() -> Response:
    settings = current_app.config["SETTINGS"]
    limit = int(settings.backup_max_age_hours)
    age = drills.backup_age(db.session, limit)
    backups = drills.recent_backups(db.session)
    drill_rows = drills.recent_drills(db.session)
    last_drill = next((d for d, _b in drill_rows if d.status != DrillStatus.RUNNING), None)
    return render("backups/index.html", age=age, limit_hours=limit, backups=backups, drills=drill_rows,
                  last_drill=last_drill, check_lines=drills.check_lines, check_titles=drills.CHECK_TITLES,
                  backup_form=RunBackupForm(), drill_form=RunDrillForm(), page_limit=drills.PAGE_LIMIT)


def _back(message: str, category: str) -> Response:
    """Flash `message` and return to the page (204 + HX-Location for htmx, else 303)."""
    if category == "success":
        return done(url_for("backups.index"), message)
    flash(message, category)
    if wants_fragment():
        response = Response(status=204)
        response.headers["HX-Location"] = url_for("backups.index")
        return response
    return redirect(url_for("backups.index"), code=303)


def _queued(form_ok: bool, request_job: drills.JobRequestFn) -> Response:
    if not form_ok:
        # Only a missing or stale CSRF token gets here (the forms have no fields).
        return _back("The form expired: reload the page and press the button again.", "error")
    result = request_job(db.session)
    db.session.commit()
    return _back(result.message, "success" if result.queued else "info")


@bp.post("/run")
@requires("backups", "run")
def run_backup() -> Response:
    return _queued(RunBackupForm().validate_on_submit(), drills.request_backup)


@bp.post("/drill")
@requires("backups", "run")
def run_drill() -> Response:
    return _queued(RunDrillForm().validate_on_submit(), drills.request_drill)
