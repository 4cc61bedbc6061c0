"""Frameworks and controls pages: the list with ranked full-text search, a framework's control tree
(branches load on demand), the control page with its mappings, inline edit, soft delete with undo.

Views stay thin: read queries live in governance.services.catalog_queries, changes in
governance.services.controls (validated and audited there); each page runs a bounded number of SQL
statements whatever the size of the catalog (tests/web/test_framework_pages.py counts them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.frameworks.forms import ControlForm
from blueprints.web import render, wants_fragment
from extensions import db
from governance.models.frameworks import Control, Framework
from governance.services import catalog_queries as catalog
from governance.services import controls as control_service
from governance.services import evidence_queries, read_cache
from governance.services import probes as probe_service
from governance.services.controls import ControlError

bp = Blueprint("frameworks", __name__)

PAGE_SIZE = 50  # frameworks per page of the list
SEARCH_PAGE_SIZE = 25  # control hits per page of search results
BRANCH_PAGE_SIZE = 200  # children per page of one tree branch


@bp.app_template_filter("highlight")
def highlight(marked: str) -> Markup:
    """Search highlight: escape all of the text, then turn the query's markers into <mark>."""
    escaped = str(escape(marked))
    html = (escaped.replace(catalog.MARK_START, "<mark>").replace(catalog.MARK_END, "</mark>")
            .replace(catalog.LT, "&lt;").replace(catalog.AMP, "&amp;"))
    return Markup(html)  # noqa: S704 - everything but our own two markers was escaped above


def _uuid_arg(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.args.get(name, ""))
    except ValueError:
        return None


def _int_arg(name: str) -> int | None:
    try:
        return int(request.args.get(name, ""))
    except ValueError:
        return None


def _float_arg(name: str) -> float | None:
    try:
        value = float(request.args.get(name, ""))
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None  # no NaN / infinity


# --- the shared read cache (scope "catalog": invalidated by writes to frameworks and controls) ------

COUNTS_KEY = "control_counts"


def _catalog_cached(loaders: dict[str, Callable[[datetime], str]]) -> dict[str, str]:
    """The values of `loaders`' keys from the read cache (one statement), computed and stored when
    missing; what was stored is committed for the other viewers and workers."""
    max_age = timedelta(seconds=current_app.config["SETTINGS"].catalog_cache_seconds)
    values = read_cache.get_or_compute(db.session(), read_cache.CATALOG, loaders, max_age)
    if max_age and any(not v.hit for v in values.values()):
        db.session.commit()
    return {key: v.value for key, v in values.items()}


def _counts_loader(_now: datetime) -> str:
    return json.dumps(catalog.control_counts(db.session), sort_keys=True)


# --- the list and search ---------------------------------------------------------------------------


@bp.get("/frameworks")
@requires("frameworks", "read")
def index() -> Response:
    q = catalog.clean_query(request.args.get("q"))
    context: dict[str, Any] = {"q": q}
    if q:
        after_rank, after_id = _float_arg("after_rank"), _uuid_arg("after_id")
        after = (after_rank, after_id) if after_rank is not None and after_id is not None else None
        hits, cursor = catalog.search_controls(db.session, q, after=after, limit=SEARCH_PAGE_SIZE)
        context.update(
            framework_hits=[] if after else catalog.search_frameworks(db.session, q),
            control_hits=hits,
            next_url=cursor and url_for("frameworks.index", q=q, after_rank=repr(cursor[0]), after_id=cursor[1]),
        )
    else:
        after_title, after_version = request.args.get("after_title"), request.args.get("after_version")
        list_after = (after_title, after_version) if after_title is not None and after_version is not None else None
        counts = json.loads(_catalog_cached({COUNTS_KEY: _counts_loader})[COUNTS_KEY])
        rows, list_cursor = catalog.list_frameworks(db.session, after=list_after, limit=PAGE_SIZE, counts=counts)
        context.update(
            frameworks=rows,
            next_url=list_cursor
            and url_for("frameworks.index", after_title=list_cursor[0], after_version=list_cursor[1]),
        )
    return render("frameworks/index.html", block="results", **context)


# --- a framework and its control tree --------------------------------------------------------------


def _framework_or_404(framework_id: uuid.UUID) -> Framework:
    framework = db.session.get(Framework, framework_id)
    if framework is None or framework.deleted_at is not None:
        abort(404)
    return framework


def _deleted_control(framework: Framework) -> Control | None:
    """The control named by ?deleted= when it is a deleted control of this framework (for Undo)."""
    control_id = _uuid_arg("deleted")
    if control_id is None:
        return None
    control = db.session.scalars(
        select(Control).where(Control.id == control_id).execution_options(include_deleted=True)
    ).one_or_none()
    if control is None or control.framework_id != framework.id or control.deleted_at is None:
        return None
    return control


@bp.get("/frameworks/<uuid:framework_id>")
@requires("frameworks", "read")
def framework(framework_id: uuid.UUID) -> Response:
    fw = _framework_or_404(framework_id)
    branch_id = f"controls-{fw.id}"

    def first_level(_now: datetime) -> str:
        nodes, cursor = catalog.branch(db.session, fw.id, None, limit=BRANCH_PAGE_SIZE)
        return render_template("frameworks/_branch.html", framework=fw, parent=None, nodes=nodes,
                               more_url=_more_url(fw.id, None, cursor), branch_id=branch_id)

    # The tree's first level is the page's costly part at 1,000+ controls (rendering, not SQL): kept
    # rendered in the shared cache with the control counts, both read in one statement.
    cached = _catalog_cached({COUNTS_KEY: _counts_loader, f"tree:{fw.id}": first_level})
    return render(
        "frameworks/framework.html",
        framework=fw,
        tree_html=Markup(cached[f"tree:{fw.id}"]),  # noqa: S704 (rendered by our own autoescaped template)
        control_count=json.loads(cached[COUNTS_KEY]).get(str(fw.id), 0),
        coverage=catalog.coverage(db.session, fw.id),
        deleted=_deleted_control(fw),
    )


def _more_url(framework_id: uuid.UUID, parent_id: uuid.UUID | None, cursor: tuple[int, str] | None) -> str | None:
    if cursor is None:
        return None
    return url_for("frameworks.children", framework_id=framework_id, parent=parent_id,
                   after_order=cursor[0], after_ref=cursor[1])


@bp.get("/frameworks/<uuid:framework_id>/controls")
@requires("frameworks", "read")
def children(framework_id: uuid.UUID) -> Response:
    """One branch of the tree: the top-level controls, or ?parent=<id>'s children. With an
    ?after_order=&after_ref= cursor, only the next page's items (appended in place of "Show more")."""
    fw = _framework_or_404(framework_id)
    parent: Control | None = None
    if request.args.get("parent"):
        parent_id = _uuid_arg("parent")
        parent = db.session.get(Control, parent_id) if parent_id else None
        if parent is None or parent.framework_id != fw.id or parent.deleted_at is not None:
            abort(404)
    after_order, after_ref = _int_arg("after_order"), request.args.get("after_ref")
    after = (after_order, after_ref) if after_order is not None and after_ref is not None else None
    nodes, cursor = catalog.branch(db.session, fw.id, parent.id if parent else None, after=after,
                                   limit=BRANCH_PAGE_SIZE)
    return render(
        "frameworks/branch.html",
        block="branch_items" if after else "branch",
        framework=fw,
        parent=parent,
        nodes=nodes,
        more_url=_more_url(fw.id, parent.id if parent else None, cursor),
        branch_id=f"branch-{parent.id}" if parent else f"controls-{fw.id}",
    )


# --- the control page, inline edit, delete and undo ------------------------------------------------


def _control_or_404(control_id: uuid.UUID, *, include_deleted: bool = False) -> Control:
    stmt = (
        select(Control)
        .where(Control.id == control_id)
        .options(joinedload(Control.framework))
        .execution_options(include_deleted=include_deleted)
    )
    control = db.session.scalars(stmt).one_or_none()
    if control is None or control.framework is None or control.framework.deleted_at is not None:
        abort(404)
    if not include_deleted and control.deleted_at is not None:
        abort(404)
    return control


def _form_for(control: Control) -> ControlForm:
    form = ControlForm(data={"title": control.title, "text": control.text or "",
                             "assessable": control.assessable, "weight": _weight_text(control)})
    return form


def _weight_text(control: Control) -> str:
    weight = control.weight
    return "" if weight is None else format(weight.normalize(), "f")


def _control_page(control: Control, *, form: ControlForm | None = None, status: int = 200,
                  notice: str | None = None) -> Response:
    """The control page; an htmx request gets only its fields block (view or edit form)."""
    context: dict[str, Any] = {"control": control, "form": form, "editing": form is not None,
                               "notice": notice, "weight_text": _weight_text(control)}
    if not wants_fragment():
        nodes, cursor = catalog.branch(db.session, control.framework_id, control.id, limit=BRANCH_PAGE_SIZE)
        context.update(
            framework=control.framework,
            ancestors=catalog.ancestors(db.session, control),
            nodes=nodes,
            more_url=_more_url(control.framework_id, control.id, cursor),
            branch_id=f"branch-{control.id}",
            mappings=catalog.mapped_controls(db.session, control),
        )
        context["evidence_rows"], context["evidence_count"] = evidence_queries.control_evidence(db.session, control.id)
        context["check_rows"], context["check_count"] = probe_service.control_checks(db.session, control.id)
    return render("frameworks/control.html", block="control_fields", status=status, **context)


@bp.get("/controls/<uuid:control_id>")
@requires("controls", "read")
def control(control_id: uuid.UUID) -> Response:
    return _control_page(_control_or_404(control_id))


@bp.get("/controls/<uuid:control_id>/edit")
@requires("controls", "update")
def edit_control(control_id: uuid.UUID) -> Response:
    item = _control_or_404(control_id)
    return _control_page(item, form=_form_for(item))


@bp.post("/controls/<uuid:control_id>")
@requires("controls", "update")
def update_control(control_id: uuid.UUID) -> Response:
    item = _control_or_404(control_id)
    form = ControlForm()
    if not form.validate_on_submit():
        return _control_page(item, form=form, status=422)
    try:
        changed = control_service.update_control(
            db.session, item, title=form.title.data, text=form.text.data,
            assessable=form.assessable.data, weight=form.weight.data,
        )
    except ControlError as exc:
        db.session.rollback()
        item = _control_or_404(control_id)
        field = getattr(form, exc.field or "", None)
        if field is not None:
            field.errors = [*field.errors, exc.message]
        else:
            form.form_errors.append(exc.message)
        return _control_page(item, form=form, status=422)
    db.session.commit()
    notice = "Saved." if changed else "Nothing changed."
    if wants_fragment():
        return _control_page(item, notice=notice)
    flash(notice, "success")
    return redirect(url_for("frameworks.control", control_id=item.id), code=303)


@bp.post("/controls/<uuid:control_id>/delete")
@requires("controls", "delete")
def delete_control(control_id: uuid.UUID) -> Response:
    item = _control_or_404(control_id)
    try:
        control_service.soft_delete_control(db.session, item)
    except ControlError as exc:  # e.g. under a legal hold
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("frameworks.control", control_id=item.id), code=303)
    db.session.commit()
    return redirect(url_for("frameworks.framework", framework_id=item.framework_id, deleted=item.id), code=303)


@bp.post("/controls/<uuid:control_id>/restore")
@requires("controls", "delete")
def restore_control(control_id: uuid.UUID) -> Response:
    item = _control_or_404(control_id, include_deleted=True)
    try:
        control_service.restore_control(db.session, item)
    except ControlError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        if item.deleted_at is not None:
            return redirect(url_for("frameworks.framework", framework_id=item.framework_id), code=303)
        return redirect(url_for("frameworks.control", control_id=item.id), code=303)
    db.session.commit()
    flash(f"Restored {item.ref_id} {item.title}.", "success")
    return redirect(url_for("frameworks.control", control_id=item.id), code=303)
