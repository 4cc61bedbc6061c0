"""Sign in and out. (Throttling, MFA and revocable server-side sessions: the identity issue.)"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from blueprints.access import public, requires
from blueprints.auth.forms import LoginForm
from blueprints.web import render
from extensions import db, login_manager
from governance.models.identity import User
from governance.services import audit, identity

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        return None
    user = db.session.get(User, uid)
    return user if user is not None and user.is_active and user.deleted_at is None else None


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("main.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Response | str | tuple[str, int]:
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        return render("auth/login.html", form=form)
    if not form.validate_on_submit():
        return render("auth/login.html", form=form, status=422)
    user = identity.authenticate(db.session, form.email.data or "", form.password.data or "")
    db.session.commit()
    if user is None:
        form.password.errors = ["E-mail or password is not right."]
        return render("auth/login.html", form=form, status=422)
    login_user(user)
    return redirect(_safe_next(form.next.data), code=303)


@bp.route("/logout", methods=["POST"])
@requires("session", "delete")
def logout() -> Response:
    audit.record(db.session, "auth.logout", object_type="user", object_id=current_user.id)
    db.session.commit()
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"), code=303)
