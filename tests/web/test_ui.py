"""The base web UI: one URL two renderings, security headers, error pages, dashboard, frameworks."""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from blueprints import web
from blueprints.errors.routes import CSRF_MESSAGE
from extensions import db
from governance.models.frameworks import Control, Framework
from tests.conftest import count_statements

HX = {"HX-Request": "true"}


def _is_full_page(html: str) -> bool:
    return "<html" in html and "</html>" in html


# --- the render helper ------------------------------------------------------------------------------

ERROR_CONTEXT = {"code": 418, "title": "Teapot", "message": "Short and stout.", "request_id": None}


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, False),
        (HX, True),
        ({**HX, "HX-Boosted": "true"}, False),
        ({**HX, "HX-History-Restore-Request": "true"}, False),
        ({"HX-Request": "false"}, False),
    ],
)
def test_render_gives_the_block_only_to_plain_htmx_requests(
    app: Flask, headers: dict[str, str], fragment: bool
) -> None:
    def run() -> Any:
        with app.test_request_context("/", headers=headers):
            return web.render("errors/error.html", block="error", status=418, **ERROR_CONTEXT)

    response = contextvars.Context().run(run)
    html = response.get_data(as_text=True)
    assert response.status_code == 418
    assert "Short and stout." in html
    assert _is_full_page(html) is not fragment
    assert ('class="flash flash-error error-fragment"' in html) is fragment
    assert "HX-Request" in response.headers["Vary"]


def test_render_without_block_is_always_the_page(app: Flask) -> None:
    def run() -> None:
        with app.test_request_context("/", headers=HX):
            response = web.render("errors/error.html", **ERROR_CONTEXT)
            assert _is_full_page(response.get_data(as_text=True))
            assert web.is_htmx()
            assert web.wants_fragment()

    contextvars.Context().run(run)


# --- security headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/static/css/app.css", "/no-such-page"])
def test_security_headers_on_every_response(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = response.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                      "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_pages_carry_no_inline_script_or_style(client: FlaskClient, login_as: Callable[[str], Any]) -> None:
    login_as("admin")
    for path in ("/", "/frameworks", "/login", "/no-such-page"):
        html = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, f"inline script on {path}: {tag}"
        assert "<style" not in html
        assert " style=" not in html
        assert re.search(r"\son[a-z]+=", html) is None, f"inline event handler on {path}"


def test_layout_loads_vendored_htmx_and_app_js(client: FlaskClient, app: Flask) -> None:
    html = client.get("/login").get_data(as_text=True)
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/static/vendor/htmx-2.0.11.min.js", "/static/js/app.js"]
    for src in scripts:
        assert client.get(src).status_code == 200
    assert 'href="#main"' in html and 'id="main"' in html  # skip link and its target
    assert 'id="flash"' in html and 'aria-live="polite"' in html
    assert re.search(r"<html lang=\"en\">", html)


# --- error pages ------------------------------------------------------------------------------------


def test_404_is_a_full_page(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert _is_full_page(html)
    assert "Not found" in html
    assert "HX-Retarget" not in response.headers


def test_404_for_htmx_goes_to_the_flash_region(client: FlaskClient) -> None:
    response = client.get("/no-such-page", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert not _is_full_page(html)
    assert 'role="alert"' in html and "Not found" in html
    assert response.headers["HX-Retarget"] == "#flash"
    assert response.headers["HX-Reswap"] == "innerHTML"
    assert "HX-Request" in response.headers["Vary"]


def test_405_page_and_fragment(client: FlaskClient) -> None:
    page = client.put("/login")
    assert page.status_code == 405
    assert _is_full_page(page.get_data(as_text=True))
    assert "GET" in page.headers["Allow"] and "POST" in page.headers["Allow"]
    fragment = client.put("/login", headers=HX)
    assert fragment.status_code == 405
    assert not _is_full_page(fragment.get_data(as_text=True))
    assert "Method not allowed" in fragment.get_data(as_text=True)
    assert fragment.headers["HX-Retarget"] == "#flash"


def test_post_without_csrf_token_is_refused_with_a_clear_page(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"email": "a@example.test", "password": "x" * 12})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert _is_full_page(html)
    assert CSRF_MESSAGE in html


def test_csrf_refusal_for_htmx_shows_in_flash(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"email": "a@example.test"},
                           headers={**HX, "X-CSRFToken": "forged"})
    assert response.status_code == 400
    assert CSRF_MESSAGE in response.get_data(as_text=True)
    assert response.headers["HX-Retarget"] == "#flash"


@pytest.fixture
def failing_app(app_factory: Callable[..., Flask]) -> Flask:
    """A separate app with a route that raises (routes cannot be added to the session app)."""
    application = app_factory(PROPAGATE_EXCEPTIONS=False)
    from blueprints.access import public

    @application.get("/boom")
    @public
    def boom() -> str:
        raise RuntimeError("secret internals: /etc/passwd")

    return application


def test_500_shows_request_id_and_no_traceback(failing_app: Flask) -> None:
    client = failing_app.test_client()
    response = client.get("/boom", headers={"X-Request-ID": "req-12345678"})
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert _is_full_page(html)
    assert "Traceback" not in html and "secret internals" not in html
    assert "req-12345678" in html
    fragment = client.get("/boom", headers={**HX, "X-Request-ID": "req-87654321"})
    assert fragment.status_code == 500
    assert "req-87654321" in fragment.get_data(as_text=True)
    assert not _is_full_page(fragment.get_data(as_text=True))
    assert fragment.headers["HX-Retarget"] == "#flash"


# --- sign in page (the form macro) ------------------------------------------------------------------


def test_login_page_renders_the_form(client: FlaskClient) -> None:
    html = client.get("/login?next=/frameworks").get_data(as_text=True)
    assert 'action="/login"' in html
    assert 'name="email"' in html and 'name="password"' in html and 'name="csrf_token"' in html
    assert re.search(r'name="next"[^>]*value="/frameworks"|value="/frameworks"[^>]*name="next"', html)
    assert html.count('name="next"') == 1


def test_login_errors_sit_beside_their_fields(client: FlaskClient, csrf_token: Callable[[str], str]) -> None:
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "", "password": "", "csrf_token": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="email-error"' in html and "Enter your e-mail address." in html
    email_input = re.search(r"<input[^>]*id=\"email\"[^>]*>", html)
    assert email_input is not None
    assert 'aria-describedby="email-error"' in email_input.group(0)
    assert 'aria-invalid="true"' in email_input.group(0)


def test_anonymous_dashboard_redirects_to_login(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code in (302, 303)
    assert "/login" in response.headers["Location"]


def test_anonymous_htmx_request_navigates_to_login(client: FlaskClient) -> None:
    response = client.get("/", headers=HX)
    assert response.status_code == 401
    assert "/login" in response.headers["HX-Redirect"]
    assert response.get_data() == b""


# --- dashboard ------------------------------------------------------------------------------------


def _framework(title: str, *, controls: int = 0, deleted: bool = False, version: str = "1.0") -> Framework:
    from sqlalchemy import func

    fw = Framework(title=title, version=version)
    db.session.add(fw)
    db.session.flush()
    for i in range(controls):
        db.session.add(Control(framework_id=fw.id, ref_id=f"{title[:3].upper()}-{i + 1}",
                               title=f"{title} control {i + 1}", sort_order=i))
    if deleted:
        fw.deleted_at = func.now()
    db.session.flush()
    return fw


def test_dashboard_counts_live_rows(client: FlaskClient, login_as: Callable[[str], Any]) -> None:
    login_as("admin")
    before = client.get("/").get_data(as_text=True)
    assert 'id="dashboard-counts"' in before
    base_frameworks = _stat(before, "frameworks")
    base_controls = _stat(before, "controls")
    _framework("Alpha", controls=3)
    _framework("Gone", controls=0, deleted=True)
    html = client.get("/").get_data(as_text=True)
    assert _stat(html, "frameworks") == base_frameworks + 1
    assert _stat(html, "controls") == base_controls + 3
    assert _stat(html, "users") >= 1
    assert _stat(html, "open-tasks") >= 0


def _stat(html: str, name: str) -> int:
    match = re.search(rf'id="stat-{name}".*?data-count="(\d+)"', html, re.S)
    assert match, f"stat {name} missing"
    return int(match.group(1))


def test_dashboard_refresh_is_an_htmx_swap_of_the_counts_block(
    client: FlaskClient, login_as: Callable[[str], Any]
) -> None:
    user = login_as("admin")
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert _is_full_page(html)
    assert user.name in html and 'action="/logout"' in html
    button = re.search(r'<form[^>]*hx-get="/"[^>]*>', html)
    assert button and 'hx-target="#dashboard-counts"' in button.group(0)

    fragment = client.get("/", headers=HX)
    body = fragment.get_data(as_text=True).strip()
    assert fragment.status_code == 200
    assert body.startswith('<section id="dashboard-counts"')
    assert not _is_full_page(body)
    assert "HX-Request" in fragment.headers["Vary"]

    boosted = client.get("/", headers={**HX, "HX-Boosted": "true"})
    assert _is_full_page(boosted.get_data(as_text=True))




def test_dashboard_counts_take_one_statement(client: FlaskClient, login_as: Callable[[str], Any]) -> None:
    login_as("admin")
    with count_statements() as statements:
        client.get("/", headers=HX)
    counting = [s for s in statements if "count(" in s.lower()]
    assert len(counting) == 1


# --- frameworks -----------------------------------------------------------------------------------


def test_frameworks_list_shows_live_frameworks_with_control_counts(
    client: FlaskClient, login_as: Callable[[str], Any]
) -> None:
    login_as("admin")
    alpha = _framework("Alpha Framework", controls=2, version="2.1")
    _framework("Beta Framework", controls=0)
    _framework("Deleted Framework", controls=1, deleted=True)
    html = client.get("/frameworks").get_data(as_text=True)
    assert "Alpha Framework" in html and "v2.1" in html and "Beta Framework" in html
    assert "Deleted Framework" not in html
    assert re.search(rf'id="framework-{alpha.id}".*?2 controls', html, re.S)
    assert f'hx-get="/frameworks/{alpha.id}/controls"' in html


def test_frameworks_list_is_not_n_plus_one(client: FlaskClient, login_as: Callable[[str], Any]) -> None:
    login_as("admin")
    _framework("One", controls=1)
    with count_statements() as few:
        client.get("/frameworks")
    for i in range(6):
        _framework(f"More {i}", controls=2)
    with count_statements() as many:
        client.get("/frameworks")
    assert len(many) == len(few)


def test_framework_controls_fragment_lists_top_level_controls(
    client: FlaskClient, login_as: Callable[[str], Any]
) -> None:
    login_as("admin")
    fw = _framework("Gamma", controls=2)
    top = db.session.query(Control).filter_by(framework_id=fw.id, ref_id="GAM-1").one()
    db.session.add(Control(framework_id=fw.id, parent_id=top.id, ref_id="GAM-1.1", title="Child control"))
    db.session.flush()

    fragment = client.get(f"/frameworks/{fw.id}/controls", headers=HX)
    html = fragment.get_data(as_text=True)
    assert fragment.status_code == 200
    assert not _is_full_page(html)
    assert html.strip().startswith(f'<div id="controls-{fw.id}"')
    assert "GAM-1" in html and "GAM-2" in html and "Child control" not in html
    assert html.index("GAM-1") < html.index("GAM-2")

    page = client.get(f"/frameworks/{fw.id}/controls")
    assert _is_full_page(page.get_data(as_text=True))


def test_framework_controls_unknown_or_deleted_is_404(
    client: FlaskClient, login_as: Callable[[str], Any]
) -> None:
    login_as("admin")
    gone = _framework("Gone", controls=1, deleted=True)
    for fid in (uuid.uuid4(), gone.id):
        response = client.get(f"/frameworks/{fid}/controls", headers=HX)
        assert response.status_code == 404
        assert response.headers["HX-Retarget"] == "#flash"
    assert client.get("/frameworks/not-a-uuid/controls").status_code == 404
