"""Deny by default: every route declares who may reach it."""

from flask import Blueprint

from app import create_app
from blueprints import access


def test_every_route_declares_its_access(app) -> None:
    undeclared = [rule.rule for rule in app.url_map.iter_rules()
                  if access.declaration(app, rule.endpoint) is None]
    assert undeclared == [], f"routes without @public or @requires: {undeclared}"


def test_an_undeclared_route_is_refused_even_when_signed_in(test_settings, make_user) -> None:
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False}, settings=test_settings)
    bp = Blueprint("forgotten", __name__)

    @bp.get("/forgotten")
    def forgotten() -> str:
        return "secret"

    app.register_blueprint(bp)
    response = app.test_client().get("/forgotten")
    assert response.status_code == 403
    assert "secret" not in response.get_data(as_text=True)


def test_protected_pages_send_anonymous_visitors_to_login(client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_public_pages_need_no_login(client) -> None:
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code == 200
