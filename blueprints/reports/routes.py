"""Reports (docs/reports.md): request a statement of applicability of a framework or an AI system
(the form with a preview of what it will hold), the reports list (polled with htmx while any is
queued or running) and the download, streamed from the object store with the stored SHA-256 in
a header. Rules live in governance.services.reports.service; one commit per request."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from flask_login import current_user

from blueprints.access import can, requires
from blueprints.errors.routes import error_response
from blueprints.reports.forms import ReportForm
from blueprints.web import done, parse_uuid, render
from extensions import db
from governance.models.reports import Report, ReportFormat, ReportScope, ReportStatus
from governance.services.notifications import Cursor
from governance.services.reports import service, soa
from governance.storage import StorageError

bp = Blueprint("reports", __name__, url_prefix="/reports")

PAGE = "reports/index.html"
ACTIVE = (ReportStatus.QUEUED, ReportStatus.RUNNING)


def _target_from_args() -> tuple[ReportScope, uuid.UUID] | None:
    for scope in ReportScope:
        raw = request.args.get(scope.value)
        if raw is not None:
            target = parse_uuid(raw)
            return (scope, target) if target is not None else None
    return None


def _after() -> tuple[Cursor | None, bool]:
    """The list's `after` cursor (None when absent), and whether it was readable."""
    raw = request.args.get("after", "")
    if not raw:
        return None, True
    cursor = Cursor.decode(raw)
    return cursor, cursor is not None


def _context(form: ReportForm | None, target: tuple[ReportScope, uuid.UUID] | None,
             after: Cursor | None = None, **extra: Any) -> dict[str, Any]:
    scope, target_id = target if target is not None else (None, None)
    page = service.recent(db.session(), scope=scope, target_id=target_id, after=after)
    reports = page.items
    target_args = {scope.value: str(target_id)} if scope is not None else {}
    next_url = page.next_cursor and url_for("reports.index", **target_args, after=page.next_cursor.encode())
    preview = None
    if target is not None and form is not None:
        period = soa.default_period()
        if form.period_start.data and form.period_end.data and form.period_start.data <= form.period_end.data:
            period = (form.period_start.data, form.period_end.data)
        preview, hit = soa.cached(db.session(), target[0], target[1], period)
        if not hit:
            db.session.commit()  # keep the computed entry for the next reader (not domain data)
    return {"form": form, "target": target, "preview": preview, "reports": reports, "next_url": next_url,
            "paged": after is not None, "first_url": url_for("reports.index", **target_args),
            "cursor_error": False, "polling": any(r.status in ACTIVE for r in reports), **extra}


@bp.get("/")
@requires("reports", "read")
def index() -> Response:
    target = _target_from_args()
    after, after_ok = _after()
    if not after_ok:
        target_args = {target[0].value: str(target[1])} if target is not None else {}
        return render(PAGE, block="list", status=400, target=target, form=None, preview=None, reports=[],
                      next_url=None, paged=True, cursor_error=True, polling=False, title=None,
                      first_url=url_for("reports.index", **target_args))
    form = None
    if target is not None:
        try:
            title = service.target_title(db.session(), *target)
        except soa.UnknownTarget:
            return error_response(404, "Not found", "No such framework or AI system.")
        if can("reports", "create"):
            start, end = soa.default_period()
            form = ReportForm(formdata=None, scope=target[0].value, target=str(target[1]),
                              period_start=start, period_end=end)
        return render(PAGE, block="list", **_context(form, target, after, title=title))
    # An htmx request here is the list polling itself while a report is queued or running.
    return render(PAGE, block="list", **_context(None, None, after, title=None))


@bp.post("/")
@requires("reports", "create")
def create() -> Response:
    form = ReportForm()
    valid = form.validate_on_submit()
    if form.csrf_token.errors:
        return error_response(400, "The form expired", "Reload the page and try again.")
    scope_value, target_id = form.scope.data, parse_uuid(form.target.data)
    if target_id is None or scope_value not in {s.value for s in ReportScope}:
        return error_response(422, "Bad request", "Choose a framework or AI system.")
    scope = ReportScope(scope_value)
    target = (scope, target_id)
    try:
        title = service.target_title(db.session(), scope, target_id)
    except soa.UnknownTarget:
        return error_response(404, "Not found", "No such framework or AI system.")
    if not valid:  # a format outside the choices, a date that is not one: beside the field
        return render(PAGE, block="request", status=422, **_context(form, target, title=title))
    try:
        report = service.request_report(db.session(), scope=scope, target_id=target_id,
                                        fmt=ReportFormat(form.format.data),
                                        period=(form.period_start.data, form.period_end.data),
                                        requested_by_id=current_user.id)
    except service.ReportRefused as refused:  # refused before anything was written
        getattr(form, refused.field).errors = [str(refused)]
        return render(PAGE, block="request", status=422, **_context(form, target, title=title))
    db.session.commit()
    return done(url_for("reports.index", **{scope.value: str(target_id)}),
                f"Report queued ({report.format.value.upper()}): it is rendered as soon as a worker is free.")


@bp.get("/<report_id>/download")
@requires("reports", "read")
def download(report_id: str) -> Response:
    parsed = parse_uuid(report_id)
    report = db.session.get(Report, parsed) if parsed is not None else None
    if report is None:
        return error_response(404, "Not found", "No such report.")
    if report.status != ReportStatus.SUCCEEDED or not report.object_key:
        return error_response(409, "Not ready", "The report has not been rendered (yet).")
    storage = current_app.extensions["storage"]
    try:
        chunks = storage.open_stream(report.object_key, bucket=report.bucket)
    except StorageError:
        return error_response(503, "Object store unavailable", "The report could not be read; try again.")
    # The chunks need no request context (as evidence downloads): stream them straight through.
    response = Response(chunks, mimetype=report.content_type, direct_passthrough=True)
    response.headers["Content-Disposition"] = f'attachment; filename="{service.download_name(report)}"'
    response.headers["Content-Length"] = str(report.size_bytes)
    response.headers["X-Content-SHA256"] = report.sha256 or ""
    response.headers["X-Report-As-Of"] = report.as_of.isoformat() if report.as_of else ""
    response.headers["Cache-Control"] = "private, no-store"
    return response
