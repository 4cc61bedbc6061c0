"""The dashboard: a read-only page of bounded queries. Frameworks and controls: blueprints/frameworks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint
from sqlalchemy import ScalarSelect, func, select
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.web import render
from extensions import db
from governance.models import Control, Evidence, Framework, Task, User
from governance.models.enums import TaskStatus

bp = Blueprint("main", __name__)

# Tasks someone still has to work on.
OPEN_TASK_STATUSES = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS)


def _live_count(model: Any, *conditions: Any) -> ScalarSelect[int]:
    live = model.deleted_at.is_(None)
    return select(func.count()).select_from(model).where(live, *conditions).scalar_subquery()


def dashboard_counts() -> dict[str, int]:
    """All five totals in one statement (one round trip)."""
    stmt = select(
        _live_count(Framework).label("frameworks"),
        _live_count(Control).label("controls"),
        _live_count(Evidence).label("evidence"),
        _live_count(User).label("users"),
        _live_count(Task, Task.status.in_(OPEN_TASK_STATUSES)).label("open_tasks"),
    )
    row = db.session.execute(stmt).one()
    return {key: int(value or 0) for key, value in row._mapping.items()}


@bp.get("/")
@requires("dashboard", "read")
def dashboard() -> Response:
    return render(
        "main/dashboard.html",
        block="counts",
        counts=dashboard_counts(),
        generated_at=datetime.now(UTC),
    )
