"""GDPR erasure requests (/admin/erasure): see governance.services.erasure and docs/erasure.md.

erasure:read (admins, compliance officers) sees the list, each request and its receipt;
erasure:request (the same) files a request; erasure:approve (admins) approves or rejects it, and
executes it once approved. The service enforces the two-person rule (the decider is an admin other
than the requester and the person). Forms work without JavaScript (303 + flash); htmx swaps the
request's block in place, and a refusal comes back as 422 with the message beside its field.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, abort, current_app, make_response, request, url_for
from flask_login import current_user

from blueprints.access import requires
from blueprints.erasure.forms import DecisionForm, ExecuteForm, RequestForm
from blueprints.web import done, render
from extensions import db
from governance.models.lifecycle import ErasureRequest
from governance.services import erasure as service

bp = Blueprint("erasure", __name__, url_prefix="/admin/erasure")


@bp.get("")
@requires("erasure", "read")
def index() -> Response:
    found = service.list_requests(db.session)
    return render("erasure/index.html", requests=found, people=service.people(db.session, found))


def _request_page(form: RequestForm, status: int = 200) -> Response:
    return render("erasure/new.html", block="request_form", form=form, status=status)


@bp.route("/new", methods=["GET", "POST"])
@requires("erasure", "request")
def new() -> Response:
    form = RequestForm()
    if not form.is_submitted():
        return _request_page(form)
    if not form.validate():
        return _request_page(form, 422)
    subject = service.find_subject(db.session, form.email.data or "")
    try:
        if subject is None:
            raise service.ErasureError("email", "No user has this e-mail address.")
        created = service.request(db.session, subject.id, form.reason.data or "", current_user.id)
    except service.ErasureError as exc:
        db.session.rollback()
        target = getattr(form, exc.field, None) or form.email
        target.errors = [*target.errors, exc.message]
        return _request_page(form, 422)
    db.session.commit()
    return done(url_for("erasure.detail", request_id=created.id),
                "Erasure requested: another administrator decides it.")


def _found(request_id: uuid.UUID) -> ErasureRequest:
    found = service.get(db.session, request_id)
    if found is None:
        abort(404)
    return found


def _detail(found: ErasureRequest, *, status: int = 200, decision: DecisionForm | None = None,
            errors: dict[str, str] | None = None) -> Response:
    return render("erasure/detail.html", block="erasure_request", status=status, r=found,
                  people=service.people(db.session, [found]), decision=decision or DecisionForm(),
                  execute_form=ExecuteForm(), errors=errors or {},
                  retention_days=current_app.config["SETTINGS"].backup_retention_days)


@bp.get("/<uuid:request_id>")
@requires("erasure", "read")
def detail(request_id: uuid.UUID) -> Response:
    return _detail(_found(request_id))


def _refused(request_id: uuid.UUID, exc: service.ErasureError, decision: DecisionForm | None = None) -> Response:
    db.session.rollback()
    return _detail(_found(request_id), status=422, decision=decision, errors={exc.field: exc.message})


@bp.post("/<uuid:request_id>/decide")
@requires("erasure", "approve")
def decide(request_id: uuid.UUID) -> Response:
    _found(request_id)
    form = DecisionForm()
    action = request.form.get("action", "")
    if not form.validate_on_submit():
        return _detail(_found(request_id), status=422, decision=form,
                       errors={"comment": " ".join(str(e) for e in form.comment.errors) or "Check the comment."})
    if action not in ("approve", "reject"):
        return _detail(_found(request_id), status=422, decision=form, errors={"decision": "Approve or reject."})
    decide_with: Any = service.approve if action == "approve" else service.reject
    try:
        decide_with(db.session, request_id, current_user.id, form.comment.data)
    except service.ErasureError as exc:
        return _refused(request_id, exc, form)
    db.session.commit()
    return done(url_for("erasure.detail", request_id=request_id),
                "Approved: an administrator can now execute it." if action == "approve" else "Rejected.")


@bp.post("/<uuid:request_id>/execute")
@requires("erasure", "approve")
def execute(request_id: uuid.UUID) -> Response:
    _found(request_id)
    form = ExecuteForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        service.execute(db.session, request_id, current_user.id, settings=current_app.config["SETTINGS"])
    except service.ErasureError as exc:
        return _refused(request_id, exc)
    db.session.commit()
    return done(url_for("erasure.receipt", request_id=request_id), "Erased. The receipt lists what was done.")


@bp.get("/<uuid:request_id>/receipt")
@requires("erasure", "read")
def receipt(request_id: uuid.UUID) -> Response:
    found = _found(request_id)
    if found.receipt is None:
        abort(404)
    return render("erasure/receipt.html", r=found, receipt=found.receipt, people=service.people(db.session, [found]))


@bp.get("/<uuid:request_id>/receipt.json")
@requires("erasure", "read")
def receipt_json(request_id: uuid.UUID) -> Response:
    """The receipt's canonical JSON: its SHA-256 is the one shown on the page."""
    found = _found(request_id)
    if found.receipt is None:
        abort(404)
    response = make_response(service.receipt_bytes(found.receipt))
    response.mimetype = "application/json"
    response.headers["Content-Disposition"] = f'attachment; filename="erasure-receipt-{found.id}.json"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
