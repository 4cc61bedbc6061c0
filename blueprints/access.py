"""Deny by default: every view declares who may reach it, or the request is refused.

`@public` marks a view anyone may reach (login, health, static); `@requires("resource", "action")`
marks one that needs a signed-in user holding that permission. A view with neither is refused
with 403 for everybody, and tests/web/test_access.py fails on any such route. The Casbin check
behind `requires` arrives with the identity issue; until then a signed-in user passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort, request
from flask_login import current_user

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC_ATTR = "_access_public"
PERMISSION_ATTR = "_access_permission"
# Endpoints Flask itself adds: static files are public by nature.
BUILTIN_PUBLIC_ENDPOINTS = frozenset({"static"})


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


def init_app(app: Flask) -> None:
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
        return None
