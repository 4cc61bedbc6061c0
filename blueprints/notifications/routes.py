"""In-app notifications: the signed-in user's own list, mark one or all read.

Everyone may read and mark their own notifications (account:read / account:update); another
user's notification is a 404, as if it did not exist. The navigation shows the unread count
(`unread_notifications()`, a Jinja global: one indexed, capped count per page, only when the nav
is rendered). With htmx, marking read swaps the row (or the list) and updates that count
out of band (hx-swap-oob); without JavaScript the forms post and redirect back (303).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import Blueprint, abort, flash, g, make_response, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_login import current_user
from jinja2_fragments.flask import render_block
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.web import is_htmx, render
from extensions import db
from governance.services import notifications

bp = Blueprint("notifications", __name__)

PAGE_TEMPLATE = "notifications/index.html"
ROW_TEMPLATE = "notifications/_row.html"
NAV_TEMPLATE = "notifications/_nav_link.html"


def unread_notifications() -> int:
    """The signed-in user's unread count (capped), computed at most once per request."""
    if not current_user.is_authenticated:
        return 0
    if "unread_notifications" not in g:
        g.unread_notifications = notifications.unread_count(db.session, current_user.id)
    return int(g.unread_notifications)


def notification_time(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def safe_link(link: str | None) -> str | None:
    """Only paths inside the portal become links (the service refuses others; this guards the page)."""
    try:
        return notifications.check_link(link)
    except notifications.NotificationError:
        return None


@bp.record_once
def _install_template_helpers(state: BlueprintSetupState) -> None:
    state.app.jinja_env.globals.update(unread_notifications=unread_notifications,
                                       notification_time=notification_time, notification_link=safe_link)


def _page() -> notifications.Page:
    after = notifications.Cursor.decode(request.values.get("after"))
    return notifications.list_for_user(db.session, current_user.id, after=after)


def _with_nav_count(body: str) -> Response:
    """An htmx response: `body`, plus the navigation's count swapped out of band."""
    g.pop("unread_notifications", None)  # the count changed in this request
    response = make_response(body + render_template(NAV_TEMPLATE, oob=True))
    response.vary.add("HX-Request")
    return response


@bp.get("/notifications")
@requires("account", "read")
def index() -> Response:
    return render(PAGE_TEMPLATE, block="notification_list", page=_page(), after=request.args.get("after"))


@bp.post("/notifications/<uuid:notification_id>/read")
@requires("account", "update")
def mark_read(notification_id: uuid.UUID) -> Response:
    notification = notifications.mark_read(db.session, current_user.id, notification_id)
    if notification is None:
        abort(404)
    db.session.commit()
    if is_htmx():
        return _with_nav_count(render_template(ROW_TEMPLATE, n=notification))
    return redirect(url_for("notifications.index", after=request.form.get("after") or None), code=303)


@bp.post("/notifications/read-all")
@requires("account", "update")
def mark_all_read() -> Response:
    count = notifications.mark_all_read(db.session, current_user.id)
    db.session.commit()
    after = request.form.get("after") or None
    if is_htmx():
        return _with_nav_count(render_block(PAGE_TEMPLATE, "notification_list", page=_page(), after=after))
    flash(f"Marked {count} notification(s) read." if count else "Nothing was unread.", "success")
    return redirect(url_for("notifications.index", after=after), code=303)
