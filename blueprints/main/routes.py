"""The dashboard: a read-only page of widgets, each a named block of one template with a stable id
that htmx reloads in place (every DASHBOARD_REFRESH_SECONDS and on the `probe-run-finished` event)
with `?widget=<name>`. Every widget reads pre-aggregated rows in a fixed number of statements
(blueprints/main/widgets.py); its body is rendered once for every viewer and kept in the shared read
cache (governance.services.read_cache) until a write changes its data, so a page view is one
statement for all widgets when nothing changed. Frameworks and controls: blueprints/frameworks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user
from sqlalchemy import ScalarSelect, func, select
from werkzeug.wrappers import Response

from blueprints.access import can, requires
from blueprints.main import widgets
from blueprints.web import render, wants_fragment
from extensions import db
from governance.models import Control, Evidence, Framework, Task, User
from governance.models.audit import Alert
from governance.models.enums import TaskStatus
from governance.services import kpis, read_cache, scoring

bp = Blueprint("main", __name__)

# Tasks someone still has to work on.
OPEN_TASK_STATUSES = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS)


def _live_count(model: Any, *conditions: Any) -> ScalarSelect[int]:
    live = model.deleted_at.is_(None)
    return select(func.count()).select_from(model).where(live, *conditions).scalar_subquery()


def dashboard_counts() -> dict[str, int]:
    """All the totals in one statement (one round trip)."""
    today = datetime.now(UTC).date()
    stmt = select(
        _live_count(Framework).label("frameworks"),
        _live_count(Control).label("controls"),
        _live_count(Evidence).label("evidence"),
        _live_count(User).label("users"),
        _live_count(Task, Task.status.in_(OPEN_TASK_STATUSES)).label("open_tasks"),
        _live_count(Task, Task.status.in_(OPEN_TASK_STATUSES), Task.due_date < today).label("overdue_tasks"),
        select(func.count()).select_from(Alert).where(Alert.status.in_(kpis.OPEN_ALERT_STATUSES))
        .scalar_subquery().label("open_alerts"),
    )
    row = db.session.execute(stmt).one()
    return {key: int(value or 0) for key, value in row._mapping.items()}


@dataclass(frozen=True)
class Widget:
    body: str  # the template of its body, the same for every viewer
    load: Callable[[datetime], dict[str, Any]]  # the body's context, read at `now`
    permission: tuple[str, str] | None  # who may see it (None: everyone with dashboard:read)


# widget name (the ?widget= value, the template block and the cache key)
WIDGETS: dict[str, Widget] = {
    "counts": Widget("main/_counts.html", lambda now: {"counts": dashboard_counts(), "as_of_time": now}, None),
    "scores": Widget("main/_scores.html",
                     lambda now: {"scores": widgets.framework_scores(db.session(), now),
                                  "formula": scoring.FORMULA_TEXT}, None),
    "failing": Widget("main/_failing.html", lambda now: {"failing": widgets.failing_checks(db.session(), now)},
                      ("checks", "read")),
    "expiring": Widget("main/_expiring.html",
                       lambda now: {"expiring": widgets.expiring_evidence(db.session(), now)}, ("evidence", "read")),
}


def _visible(name: str) -> bool:
    permission = WIDGETS[name].permission
    return permission is None or can(*permission)


def _renderer(template: str, load: Callable[[datetime], dict[str, Any]]) -> Callable[[datetime], str]:
    return lambda now: render_template(template, **load(now))


@bp.get("/")
@requires("dashboard", "read")
def dashboard() -> Response:
    settings = current_app.config["SETTINGS"]
    requested = request.args.get("widget", "counts")
    # An unknown or forbidden widget name falls back to the counts block (the Refresh button's).
    name = requested if requested in WIDGETS and _visible(requested) else "counts"
    wanted = [name] if wants_fragment() else [w for w in WIDGETS if _visible(w)]

    loaders = {w: _renderer(WIDGETS[w].body, WIDGETS[w].load) for w in wanted}
    own_key = f"mine:{current_user.id}"
    if "scores" in wanted:
        loaders[own_key] = _renderer(
            "main/_mine.html", lambda now: {"own": widgets.own_score(db.session(), now, current_user.id)})
    bodies = read_cache.get_or_compute(db.session(), read_cache.DASHBOARD, loaders,
                                       timedelta(seconds=settings.dashboard_cache_seconds))
    response = render("main/dashboard.html", block=name, generated_at=datetime.now(UTC),
                      refresh_seconds=settings.dashboard_refresh_seconds,
                      show={w: _visible(w) for w in WIDGETS},
                      bodies={("mine" if key == own_key else key): value for key, value in bodies.items()})
    if any(not body.hit for body in bodies.values()):
        db.session.commit()  # keep what was computed for the other viewers and workers
    return response
