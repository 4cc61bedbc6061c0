"""Deny by default: every view declares who may reach it, or the request is refused.

`@public` marks a view anyone may reach (login, health, static); `@requires("resource", "action")`
marks one that needs a signed-in user whose role holds that permission (Casbin, governance.authz).
A view with neither is refused with 403 for everybody, and tests/web/test_access.py fails on any
such route.

Every 403 (whoever raised it) is written to the audit log with outcome `denied`; a burst of them
from one actor raises an alert (settings DENIAL_ALERT_THRESHOLD within DENIAL_ALERT_WINDOW_MINUTES).
Templates get `can(resource, action)` to show only the actions the user may take; the route check
here is what actually guards them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import Flask, abort, current_app, g, request
from flask_login import current_user
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from extensions import db
from governance import authz, context
from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.services import alerts, audit, personal_data

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)

PUBLIC_ATTR = "_access_public"
PERMISSION_ATTR = "_access_permission"
# Endpoints Flask itself adds: static files are public by nature.
BUILTIN_PUBLIC_ENDPOINTS = frozenset({"static"})

DENIED_ACTION = "access.denied"
DENIAL_ALERT_RULE = alerts.DENIAL_BURST


def public(view: F) -> F:
    setattr(view, PUBLIC_ATTR, True)
    return view


def requires(resource: str, action: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        setattr(view, PERMISSION_ATTR, (resource, action))
        return view

    return decorate


def declaration(app: Flask, endpoint: str) -> str | tuple[str, str] | None:
    """'public', (resource, action), or None when the view declares nothing."""
    if endpoint in BUILTIN_PUBLIC_ENDPOINTS:
        return "public"
    view = app.view_functions.get(endpoint)
    if view is None:
        return None
    if getattr(view, PUBLIC_ATTR, False):
        return "public"
    permission: tuple[str, str] | None = getattr(view, PERMISSION_ATTR, None)
    return permission


def current_role_name() -> str | None:
    if not current_user.is_authenticated:
        return None
    role = getattr(current_user, "role", None)
    return getattr(role, "name", None)


def can(resource: str, action: str) -> bool:
    """May the signed-in user do `action` on `resource`? (False when signed out.)

    Answers are kept for the rest of the request (pages ask the same few questions many times, and
    each Casbin enforce evaluates its matcher afresh); the rules were refreshed at its start."""
    role = current_role_name()
    memo: dict[tuple[str | None, str, str], bool] = g.setdefault("can_memo", {})
    key = (role, resource, action)
    if key not in memo:
        memo[key] = authz.can(role, resource, action)
    return memo[key]


def _denial_burst_alert(actor_id: Any, actor_name: str) -> None:
    """After a denial is recorded: if the actor now has ≥ threshold denials in the window, raise the
    actor's DENIAL_BURST alert (one per actor while unresolved: later denials count as repeats; the
    periodic sweep clears it once a window passes without any)."""
    settings = current_app.config["SETTINGS"]
    since = func.now() - timedelta(minutes=settings.denial_alert_window_minutes)
    recent = db.session.scalar(
        select(func.count()).select_from(AuditLog).where(
            AuditLog.actor_id == actor_id, AuditLog.action == DENIED_ACTION,
            AuditLog.outcome == AuditOutcome.DENIED, AuditLog.created_at >= since,
        )
    ) or 0
    if recent < settings.denial_alert_threshold:
        return
    alerts.raise_alert(
        db.session, rule=DENIAL_ALERT_RULE, subject_type="user", subject_id=actor_id,
        # The title goes into the append-only audit log (alert.raise, task.create): a pseudonym, not
        # the person's address (docs/erasure.md). details.actor_name names them on the alert's page.
        title=(f"{recent} refused requests by {personal_data.pseudonym(actor_id)} within "
               f"{settings.denial_alert_window_minutes} minutes"),
        severity=alerts.RULES[DENIAL_ALERT_RULE].severity,
        details={"actor_id": str(actor_id), "actor_name": actor_name, "denials": int(recent),
                 "window_minutes": settings.denial_alert_window_minutes},
    )


def record_denial(response: Response) -> None:
    """Write the 403 to the audit log in its own transaction (nothing the view did is kept)."""
    resource, action = g.get("access_required") or (None, None)
    db.session.rollback()
    entry = audit.record(
        db.session, DENIED_ACTION, object_type="endpoint", object_id=request.endpoint,
        outcome=AuditOutcome.DENIED,
        details={"endpoint": request.endpoint, "method": request.method, "path": request.path,
                 "resource": resource, "action": action, "role": current_role_name()},
    )
    if entry.actor_id is not None:
        # The entry holds a pseudonym (personal data is sealed): the alert names the person.
        _denial_burst_alert(entry.actor_id, context.current().actor_name)
    db.session.commit()


def init_app(app: Flask) -> None:
    authz.install(app)
    app.jinja_env.globals["can"] = can

    @app.before_request
    def enforce_declared_access() -> Any:
        endpoint = request.endpoint
        if endpoint is None:  # no route matched: let Flask answer 404/405
            return None
        declared = declaration(app, endpoint)
        if declared is None:
            abort(403)
        if declared == "public":
            return None
        if not current_user.is_authenticated:
            return app.login_manager.unauthorized()  # type: ignore[attr-defined]
        g.access_required = declared
        authorizer = authz.authorizer(app)
        authorizer.refresh(db.session)  # another worker may have changed the rules
        if not authorizer.can(current_role_name(), *declared):
            abort(403)
        return None

    @app.after_request
    def audit_forbidden(response: Response) -> Response:
        if response.status_code == 403:
            try:
                record_denial(response)
            except Exception:  # the refusal stands even if it could not be recorded
                log.exception("could not record a denied request")
                db.session.rollback()
        return response
