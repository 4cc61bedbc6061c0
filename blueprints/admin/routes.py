"""Admin console: users with search, create, inline role change, deactivate / reactivate, reset MFA,
sign out everywhere. Every route needs users:manage; every change goes through
governance.services.users (audited with before/after, last-admin guard, sessions ended).

Row actions are plain forms (they work without JavaScript: 303 back to the list with a flash) that
htmx upgrades to swap only the user's row, with the outcome shown in the row.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.admin.forms import CreateUserForm, RoleForm
from blueprints.web import is_htmx, render
from extensions import db
from governance.models.identity import Role, User
from governance.services import users as user_admin
from governance.services.identity import IdentityError

bp = Blueprint("admin", __name__, url_prefix="/admin")

PAGE_SIZE = 50
ROW_TEMPLATE = "admin/_user_row.html"


def _roles() -> list[Role]:
    return list(db.session.scalars(select(Role).order_by(Role.name)))


def _role_choices(roles: list[Role]) -> list[tuple[str, str]]:
    return [(r.name, r.name.replace("_", " ").title()) for r in roles]


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search(q: str, after: str | None) -> tuple[list[User], str | None]:
    """One page of live users ordered by e-mail (keyset on lower(email)), and the next cursor."""
    stmt = select(User).where(User.deleted_at.is_(None))
    if q:
        stmt = stmt.where(or_(User.email.ilike(_like(q), escape="\\"), User.name.ilike(_like(q), escape="\\")))
    if after:
        stmt = stmt.where(func.lower(User.email) > after.lower())
    rows = list(db.session.scalars(stmt.order_by(func.lower(User.email)).limit(PAGE_SIZE + 1)))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, (rows[-1].email.lower() if more and rows else None)


@bp.get("/users")
@requires("users", "manage")
def users() -> Response:
    q = (request.args.get("q") or "").strip()[:200]
    after = request.args.get("after") or None
    rows, next_after = _search(q, after)
    return render("admin/users.html", block="user_rows", users=rows, q=q, next_after=next_after,
                  roles=_roles())


@bp.route("/users/new", methods=["GET", "POST"])
@requires("users", "manage")
def create_user() -> Response:
    form = CreateUserForm()
    form.role.choices = _role_choices(_roles())
    if request.method == "GET":
        form.role.data = "engineer"
        return render("admin/new_user.html", form=form)
    if not form.validate_on_submit():
        return render("admin/new_user.html", form=form, status=422)
    try:
        user = user_admin.create_user_by_admin(
            db.session, email=form.email.data or "", name=form.name.data or "",
            role_name=form.role.data or "", password=form.password.data or "", actor_id=current_user.id,
        )
    except IdentityError as exc:
        db.session.rollback()
        target = getattr(form, exc.field, None) or form.email
        target.errors = [*target.errors, exc.message]
        return render("admin/new_user.html", form=form, status=422)
    db.session.commit()
    flash(f"Created {user.email} as {user.role.name.replace('_', ' ')}.", "success")
    return redirect(url_for("admin.users", q=user.email), code=303)


def _user_or_404(user_id: uuid.UUID) -> User:
    user = db.session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        abort(404)
    return user


def _row_response(user: User, *, notice: str | None = None, error: str | None = None,
                  status: int = 200) -> Response:
    """htmx: the user's row (with the outcome inside it). Otherwise: back to the list with a flash."""
    if is_htmx():
        body = render_template(ROW_TEMPLATE, u=user, roles=_roles(), notice=notice, error=error)
        response = make_response(body, status)
        response.vary.add("HX-Request")
        return response
    if error:
        flash(error, "error")
    elif notice:
        flash(notice, "success")
    return redirect(url_for("admin.users", q=user.email), code=303)


def _apply(user: User, change: Any, notice: str) -> Response:
    """Run one service change in its own transaction; a refusal (last admin) becomes a 422."""
    try:
        change()
    except IdentityError as exc:
        db.session.rollback()
        return _row_response(_user_or_404(user.id), error=exc.message, status=422)
    db.session.commit()
    return _row_response(user, notice=notice)


@bp.post("/users/<uuid:user_id>/role")
@requires("users", "manage")
def change_role(user_id: uuid.UUID) -> Response:
    user = _user_or_404(user_id)
    form = RoleForm()
    form.role.choices = _role_choices(_roles())
    if not form.validate_on_submit():
        return _row_response(user, error="Choose one of the listed roles.", status=422)
    role_name = form.role.data or ""
    return _apply(user, lambda: user_admin.set_role(db.session, user, role_name, actor_id=current_user.id),
                  f"Role changed to {role_name.replace('_', ' ')}.")


@bp.post("/users/<uuid:user_id>/deactivate")
@requires("users", "manage")
def deactivate(user_id: uuid.UUID) -> Response:
    user = _user_or_404(user_id)
    return _apply(user, lambda: user_admin.deactivate(db.session, user, actor_id=current_user.id),
                  "Deactivated; their sessions were ended.")


@bp.post("/users/<uuid:user_id>/reactivate")
@requires("users", "manage")
def reactivate(user_id: uuid.UUID) -> Response:
    user = _user_or_404(user_id)
    return _apply(user, lambda: user_admin.reactivate(db.session, user, actor_id=current_user.id),
                  "Reactivated.")


@bp.post("/users/<uuid:user_id>/reset-mfa")
@requires("users", "manage")
def reset_mfa(user_id: uuid.UUID) -> Response:
    user = _user_or_404(user_id)
    return _apply(user, lambda: user_admin.reset_mfa(db.session, user, actor_id=current_user.id),
                  "Second factor removed; they enrol again at their next sign-in.")


@bp.post("/users/<uuid:user_id>/sign-out")
@requires("users", "manage")
def sign_out_everywhere(user_id: uuid.UUID) -> Response:
    user = _user_or_404(user_id)
    return _apply(user, lambda: user_admin.sign_out_everywhere(db.session, user, actor_id=current_user.id),
                  "Signed out everywhere.")
