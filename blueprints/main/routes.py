"""The dashboard: a read-only page of widgets, each a named block of one template with a stable id
that htmx reloads in place (every DASHBOARD_REFRESH_SECONDS and on the `probe-run-finished` event)
with `?widget=<name>`. Every widget reads pre-aggregated rows in a fixed number of statements
(blueprints/main/widgets.py). Frameworks and controls: blueprints/frameworks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, request
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
from governance.services import kpis, scoring

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


def _user_id() -> Any:
    return current_user.id if current_user.is_authenticated else None


# widget name (the ?widget= value and the template block) -> what it needs, and who may see it.
WIDGETS: dict[str, tuple[str, Callable[[datetime], Any], tuple[str, str] | None]] = {
    "counts": ("counts", lambda now: dashboard_counts(), None),
    "scores": ("scores", lambda now: widgets.framework_scores(db.session(), now, _user_id()), None),
    "failing": ("failing", lambda now: widgets.failing_checks(db.session(), now), ("checks", "read")),
    "expiring": ("expiring", lambda now: widgets.expiring_evidence(db.session(), now), ("evidence", "read")),
}


def _visible(name: str) -> bool:
    permission = WIDGETS[name][2]
    return permission is None or can(*permission)


@bp.get("/")
@requires("dashboard", "read")
def dashboard() -> Response:
    now = datetime.now(UTC)
    context: dict[str, Any] = {
        "generated_at": now,
        "refresh_seconds": current_app.config["SETTINGS"].dashboard_refresh_seconds,
        "formula": scoring.FORMULA_TEXT,
        "show": {name: _visible(name) for name in WIDGETS},
    }
    requested = request.args.get("widget", "counts")
    # An unknown or forbidden widget name falls back to the counts block (the Refresh button's).
    name = requested if requested in WIDGETS and _visible(requested) else "counts"
    wanted = [name] if wants_fragment() else [w for w in WIDGETS if _visible(w)]
    for widget in wanted:
        key, load, _permission = WIDGETS[widget]
        context[key] = load(now)
    return render("main/dashboard.html", block=name, **context)
