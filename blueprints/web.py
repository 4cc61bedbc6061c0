"""Rendering helpers shared by every blueprint: one URL, two renderings (DESIGN.md §Conventions 3).

A normal request gets the whole page; an htmx request gets only the named block of the same
template, except a boosted navigation or a history restore, which replace the whole page and so
need all of it. Responses vary on HX-Request so no cache hands a fragment to a full-page load.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_block

# Scripts come only from our own origin (htmx + static/js/app.js): a per-request nonce would never
# reach scripts inside swapped fragments, so templates carry no inline script or style at all.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)

# Production is served over TLS only (behind the load balancer); two years, as preload lists ask.
HSTS = "max-age=63072000; includeSubDomains"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


def parse_uuid(raw: str | None) -> uuid.UUID | None:
    """A UUID from user input (a form field or query argument), or None when it is not one."""
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        return None


def is_htmx() -> bool:
    """Any request htmx made (including boosted navigations and history restores)."""
    return request.headers.get("HX-Request") == "true"


def wants_fragment() -> bool:
    """An htmx request that swaps part of the page, so it should get one block, not the page."""
    return (
        is_htmx()
        and request.headers.get("HX-Boosted") != "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render(template_name: str, block: str | None = None, status: int = 200, **context: Any) -> Response:
    """The page, or only `block` of it for an htmx fragment request."""
    if block is not None and wants_fragment():
        body = render_block(template_name, block, **context)
    else:
        body = render_template(template_name, **context)
    response = make_response(body, status)
    response.vary.add("HX-Request")
    return response


def done(url: str, notice: str) -> Response:
    """After a change: flash `notice` and go to `url` (204 + HX-Location for htmx, else 303)."""
    flash(notice, "success")
    if wants_fragment():
        response = Response(status=204)
        response.headers["HX-Location"] = url
        return response
    return redirect(url, code=303)


def _login_redirect_for_htmx(app: Flask, response: Response) -> Response:
    """An htmx request whose session has expired would follow the redirect inside the XHR and swap
    the whole sign-in page into a fragment's place: make the browser navigate there instead."""
    login_view = getattr(getattr(app, "login_manager", None), "login_view", None)
    if not (login_view and is_htmx() and response.status_code in (301, 302, 303, 307, 308)):
        return response
    location = response.location or ""
    if urlsplit(location).path != url_for(login_view):
        return response
    redirect = make_response("", 401)
    redirect.headers["HX-Redirect"] = location
    redirect.vary.add("HX-Request")
    return redirect


def init_app(app: Flask) -> None:
    @app.after_request
    def finish_response(response: Response) -> Response:
        response = _login_redirect_for_htmx(app, response)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if app.config.get("APP_ENV") == "production":
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if request.endpoint != "static" and current_user.is_authenticated:
            # A signed-in page must not outlive the session in a shared or back-button cache.
            response.headers["Cache-Control"] = "no-store"
        return response
