"""Alert pages: the list (filtered by status, severity and rule; keyset-paginated, newest first), one
alert with its history and its remediation task, and the two things a responder does: acknowledge
(an optional comment) and resolve (a required comment saying how).

Views stay thin: reads and changes in governance.services.alerts (validated and audited there), one
commit per request. The forms post and redirect without JavaScript; with htmx the alert's row (on
the list) or its body (on its page) is swapped in place, a refused change comes back with 422 and
the message beside its field, and the navigation's counts follow out of band.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from jinja2_fragments.flask import render_block
from sqlalchemy import select
from werkzeug.wrappers import Response

from blueprints.access import can, requires
from blueprints.tasks.routes import with_nav_counts
from blueprints.web import render, wants_fragment
from extensions import db
from governance.models.audit import Alert, AlertEvent
from governance.models.enums import Severity
from governance.models.identity import User
from governance.models.tasks import Task
from governance.services import alerts as service
from governance.services.alerts import AlertRuleError
from governance.services.notifications import Cursor

bp = Blueprint("alerts", __name__)

PAGE_TEMPLATE = "alerts/index.html"
DETAIL_TEMPLATE = "alerts/detail.html"
ROW_TEMPLATE = "alerts/_row.html"
PAGE_SIZE = service.PAGE_SIZE
# The status filter's choices: "" (the default) shows what still needs someone: open and acknowledged.
STATUS_CHOICES = (("", "Open and acknowledged"), ("open", "Open"), ("acknowledged", "Acknowledged"),
                  ("resolved", "Resolved"), ("all", "Any status"))
SEVERITIES = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)
EVENT_LABELS = {"raised": "Raised", "repeated": "Seen again", "acknowledged": "Acknowledged",
                "resolved": "Resolved", "auto_resolved": "Cleared by itself"}


@bp.app_template_filter("alert_rule")
def alert_rule(rule: str) -> str:
    known = service.RULES.get(rule)
    return known.title if known else rule


@bp.app_template_filter("alert_event")
def alert_event(kind: str) -> str:
    return EVENT_LABELS.get(kind, kind.replace("_", " ").capitalize())


def subject_link(alert: Alert) -> tuple[str, str | None]:
    """(label, url or None) of what the alert is about: a check, evidence, a user, the schema."""
    details = alert.details or {}
    kind, ident = alert.source_type or "", alert.source_id or ""
    target = _uuid(ident)
    if kind == "check":
        label = f"Check {details.get('check') or ident}"
        return label, url_for("probes.check_detail", check_id=target) if target and can("checks", "read") else None
    if kind == "evidence":
        label = f"Evidence {details.get('name') or ident}"
        return label, url_for("evidence.detail", evidence_id=target) if target and can("evidence", "read") else None
    if kind == "user":
        name = str(details.get("actor_name") or ident)
        return f"User {name}", url_for("admin.users", q=name) if can("users", "manage") else None
    if kind == "schema":
        return f"Schema {ident}", None
    return (f"{kind} {ident}".strip() or "—"), None


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


@bp.record_once
def _install_template_helpers(state: Any) -> None:
    state.app.jinja_env.globals.update(alert_subject=subject_link)


# --- reads -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Related:
    """What the alert rows name besides the alerts: their tasks and the people (owners,
    responders, assignees, event actors) by id. Read in two statements whatever the count (lazy
    loads would cost one per person: the soft-delete criteria keep them off the identity map)."""

    tasks: dict[uuid.UUID, Task]
    people: dict[uuid.UUID, User]


def _related(alerts: Iterable[Alert], events: Iterable[AlertEvent] = ()) -> Related:
    alerts = list(alerts)
    ids = [a.id for a in alerts]
    tasks = {t.alert_id: t for t in db.session.scalars(select(Task).where(Task.alert_id.in_(ids)))
             if t.alert_id is not None} if ids else {}
    wanted = {a.owner_id for a in alerts} | {a.acknowledged_by_id for a in alerts} | {a.resolved_by_id for a in alerts}
    wanted |= {t.assignee_id for t in tasks.values()} | {e.actor_id for e in events}
    ids_wanted = [p for p in wanted if p is not None]
    people = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(ids_wanted)))} if ids_wanted else {}
    return Related(tasks, people)


def _filters() -> dict[str, str]:
    """The list's filters as given (unknown values fall back to no filter)."""
    status = request.values.get("status", "")
    severity = request.values.get("severity", "")
    rule = request.values.get("rule", "")
    return {
        "status": status if status in {value for value, _label in STATUS_CHOICES} else "",
        "severity": severity if severity in {s.value for s in Severity} else "",
        "rule": rule if rule in service.RULES else "",
    }


def _service_status(value: str) -> str | None:
    if value == "":
        return "active"
    return None if value == "all" else value


@bp.get("/alerts")
@requires("alerts", "read")
def index() -> Response:
    filters = _filters()
    after = Cursor.decode(request.args.get("after"))
    page = service.list_alerts(db.session, status=_service_status(filters["status"]),
                               severity=filters["severity"] or None, rule=filters["rule"] or None,
                               after=after, limit=PAGE_SIZE)
    related = _related(page.items)
    query = {k: v for k, v in filters.items() if v}
    next_url = page.next_cursor and url_for("alerts.index", **query, after=page.next_cursor.encode())
    return render(PAGE_TEMPLATE, block="results", page=page, tasks=related.tasks, people=related.people,
                  filters=filters, next_url=next_url,
                  paged=after is not None, status_choices=STATUS_CHOICES, severities=SEVERITIES,
                  rules=service.RULES, row_errors={}, row_values={})


def _alert_or_404(alert_id: uuid.UUID) -> Alert:
    alert = service.get(db.session, alert_id)
    if alert is None:
        abort(404)
    return alert


def _detail_context(alert: Alert, **extra: Any) -> dict[str, Any]:
    events = service.history(db.session, alert.id)
    related = _related([alert], events)
    context: dict[str, Any] = {"alert": alert, "events": events, "task": related.tasks.get(alert.id),
                               "people": related.people, "errors": {}, "values": {}, "notice": None}
    context.update(extra)
    return context


@bp.get("/alerts/<uuid:alert_id>")
@requires("alerts", "read")
def detail(alert_id: uuid.UUID) -> Response:
    return render(DETAIL_TEMPLATE, **_detail_context(_alert_or_404(alert_id)))


# --- acknowledge and resolve -----------------------------------------------------------------------


def _respond(alert_id: uuid.UUID, *, notice: str | None = None, error: AlertRuleError | None = None,
             comment: str = "") -> Response:
    """For htmx: the alert's row (on the list) or body (on its page), with the navigation's counts
    out of band. Without htmx: a redirect back (success), or the alert's page again with the
    message beside its field (422)."""
    view = "detail" if request.form.get("view") == "detail" else "row"
    status = 422 if error is not None else 200
    alert = _alert_or_404(alert_id)
    errors = {error.field: error.message} if error is not None else {}
    values = {"comment": comment} if error is not None else {}
    if wants_fragment():
        if view == "detail":
            body = render_block(DETAIL_TEMPLATE, "alert_body",
                                **_detail_context(alert, errors=errors, values=values, notice=notice))
        else:
            related = _related([alert])
            body = render_template(ROW_TEMPLATE, a=alert, task=related.tasks.get(alert.id), people=related.people,
                                   errors=errors, values=values, notice=notice, filters=_filters())
        return with_nav_counts(body, status=status)
    if error is not None:
        return render(DETAIL_TEMPLATE, status=422, **_detail_context(alert, errors=errors, values=values))
    flash(notice or "Saved.", "success")
    if view == "detail":
        return redirect(url_for("alerts.detail", alert_id=alert_id), code=303)
    return redirect(url_for("alerts.index", **{k: v for k, v in _filters().items() if v}), code=303)


def _change(alert_id: uuid.UUID, action: str) -> Response:
    comment = (request.form.get("comment") or "")[: service.COMMENT_MAX + 1]
    try:
        if action == "acknowledge":
            service.acknowledge(db.session, alert_id, comment=comment)
            notice = "Acknowledged."
        else:
            service.resolve(db.session, alert_id, comment=comment)
            notice = "Resolved."
    except AlertRuleError as exc:
        db.session.rollback()
        if exc.field == "alert":
            abort(404)
        return _respond(alert_id, error=exc, comment=comment)
    db.session.commit()
    return _respond(alert_id, notice=notice)


@bp.post("/alerts/<uuid:alert_id>/acknowledge")
@requires("alerts", "update")
def acknowledge(alert_id: uuid.UUID) -> Response:
    return _change(alert_id, "acknowledge")


@bp.post("/alerts/<uuid:alert_id>/resolve")
@requires("alerts", "update")
def resolve(alert_id: uuid.UUID) -> Response:
    return _change(alert_id, "resolve")
