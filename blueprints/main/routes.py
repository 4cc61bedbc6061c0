"""The dashboard and the frameworks list: read-only pages, each a bounded number of queries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort
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


@bp.get("/frameworks")
@requires("frameworks", "read")
def frameworks() -> Response:
    control_counts = (
        select(Control.framework_id, func.count().label("n"))
        .where(Control.deleted_at.is_(None))
        .group_by(Control.framework_id)
        .subquery()
    )
    stmt = (
        select(Framework, func.coalesce(control_counts.c.n, 0))
        .outerjoin(control_counts, control_counts.c.framework_id == Framework.id)
        .where(Framework.deleted_at.is_(None))
        .order_by(Framework.title, Framework.version)
    )
    rows = db.session.execute(stmt).all()
    return render("main/frameworks.html", frameworks=[(fw, int(n)) for fw, n in rows])


@bp.get("/frameworks/<uuid:framework_id>/controls")
@requires("frameworks", "read")
def framework_controls(framework_id: uuid.UUID) -> Response:
    framework = db.session.get(Framework, framework_id)
    if framework is None or framework.deleted_at is not None:
        abort(404)
    stmt = (
        select(Control)
        .where(Control.framework_id == framework.id, Control.parent_id.is_(None))
        .where(Control.deleted_at.is_(None))
        .order_by(Control.sort_order, Control.ref_id)
    )
    controls = db.session.scalars(stmt).all()
    return render("main/framework_controls.html", block="controls", framework=framework, controls=controls)
