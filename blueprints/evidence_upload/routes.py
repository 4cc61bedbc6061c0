"""Evidence uploads: the new-evidence form and the new-revision form, streamed into the store.

The POST views read the body themselves (governance.services.evidence_upload): request.form,
request.files and get_data would spool the file to disk or hold it in memory. So CSRFProtect,
which reads request.form, is told to skip them, and the token is checked here: from the
X-CSRFToken header (htmx sends it) before anything is read, or else from the csrf_token field,
which comes before the file in the form. A body that Content-Length says is too large is refused
before it is read; every other refusal reads (and discards) the rest of the body so the browser,
still sending, gets the answer; all are audited with outcome error.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, current_app, flash, g, make_response, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError, same_origin, validate_csrf
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from wtforms import ValidationError

from blueprints.access import requires
from blueprints.evidence_upload.forms import EvidenceForm, RevisionForm
from blueprints.web import is_htmx, render, wants_fragment
from extensions import csrf, db
from governance.models.evidence import Evidence
from governance.models.frameworks import Control
from governance.services import evidence as evidence_service
from governance.services import evidence_upload as uploads
from governance.services.evidence import EvidenceError, StoredUpload
from governance.services.evidence_types import ACCEPT, ALLOWED_LIST
from governance.storage import Storage

bp = Blueprint("evidence_upload", __name__)

log = logging.getLogger(__name__)

TEMPLATE = "evidence/upload.html"
BLOCK = "upload_form"
FORM_TARGET = "#evidence-upload"
UPLOAD_ENDPOINTS = frozenset({"evidence_upload.create", "evidence_upload.upload_revision"})
DRAFT_HINT = " It is kept as a draft until you send it for review."


def _limits() -> uploads.UploadLimits:
    return uploads.UploadLimits.from_settings(current_app.config["SETTINGS"])


def _storage() -> Storage:
    store: Storage = current_app.extensions["storage"]
    return store


@bp.url_value_preprocessor
def _evidence_body_limit(endpoint: str | None, values: dict[str, Any] | None) -> None:
    # Runs before every before_request hook. The body limit is this route's own (the evidence
    # limit plus the form's envelope), whatever MAX_CONTENT_LENGTH says for the rest of the app;
    # a body larger than Content-Length claims is cut there by Werkzeug, one without
    # Content-Length at this limit.
    if endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = _limits().max_body


def _control_from_query() -> Control | None:
    raw = request.args.get("control")
    if not raw:
        return None
    try:
        control_id = uuid.UUID(raw)
    except ValueError:
        abort(404)
    control = db.session.get(Control, control_id)
    if control is None or control.deleted_at is not None:
        abort(404)
    return control


def _evidence_or_404(evidence_id: uuid.UUID) -> Evidence:
    evidence = db.session.get(Evidence, evidence_id)
    if evidence is None or evidence.deleted_at is not None:
        abort(404)
    return evidence


def _action_url(mode: str, control: Control | None, evidence: Evidence | None) -> str:
    if mode == "revision":
        assert evidence is not None
        return url_for("evidence_upload.upload_revision", evidence_id=evidence.id)
    return url_for("evidence_upload.create", control=control.id if control is not None else None)


def _page(form: Any, *, mode: str, control: Control | None = None, evidence: Evidence | None = None,
          status: int = 200, store_available: bool = True) -> Response:
    limits = _limits()
    response = render(TEMPLATE, block=BLOCK, status=status, form=form, mode=mode, control=control,
                      evidence=evidence, action=_action_url(mode, control, evidence), accept=ACCEPT,
                      allowed=ALLOWED_LIST, max_bytes=limits.max_bytes,
                      max_size=uploads.size_text(limits.max_bytes), store_available=store_available)
    if status >= 400 and status != 422 and wants_fragment():
        # htmx swaps only 2xx and 422 by itself; static/js/app.js swaps a retargeted error too.
        response.headers["HX-Retarget"] = FORM_TARGET
        response.headers["HX-Reswap"] = "outerHTML"
    return response


@bp.get("/evidence/new")
@requires("evidence", "upload")
def new() -> Response:
    control = _control_from_query()
    return _page(EvidenceForm(formdata=None), mode="new", control=control,
                 store_available=_storage().available())


@bp.get("/evidence/<uuid:evidence_id>/revisions/new")
@requires("evidence", "upload")
def new_revision(evidence_id: uuid.UUID) -> Response:
    evidence = _evidence_or_404(evidence_id)
    return _page(RevisionForm(formdata=None), mode="revision", evidence=evidence,
                 store_available=_storage().available())


@bp.post("/evidence/new")
@requires("evidence", "upload")
@csrf.exempt
def create() -> Response:
    control = _control_from_query()  # an unknown control is a 404 before the body is read
    return Upload("new", uuid.uuid4(), control=control).run()


@bp.post("/evidence/<uuid:evidence_id>/revisions/new")
@requires("evidence", "upload")
@csrf.exempt
def upload_revision(evidence_id: uuid.UUID) -> Response:
    evidence = _evidence_or_404(evidence_id)  # before the body is read
    return Upload("revision", evidence.id, evidence=evidence).run()


class Refused(Exception):
    def __init__(self, error: EvidenceError, *, drain: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.drain = drain


class Upload:
    """One upload request, from the checks before the body to the redirect or the refusal."""

    def __init__(self, mode: str, evidence_id: uuid.UUID, *, control: Control | None = None,
                 evidence: Evidence | None = None) -> None:
        self.mode = mode
        self.evidence_id = evidence_id
        self.control = control
        self.evidence = evidence
        self.limits = _limits()
        self.fields: Mapping[str, str] = {}
        self.body: uploads.MultipartBody | None = None
        self.filename: str | None = None
        self.action = "evidence.create" if mode == "new" else "evidence.upload"

    # --- the flow ---------------------------------------------------------------------------------

    def run(self) -> Response:
        try:
            return self._run()
        except Refused as refused:
            return self._refusal(refused)

    def _run(self) -> Response:
        length = request.content_length
        if length is not None and length > self.limits.max_body:
            raise Refused(uploads.too_large(self.limits.max_bytes), drain=False)
        header_token = _header_token()
        if header_token is not None:
            self._check_csrf(header_token)
        if request.mimetype != "multipart/form-data":
            return self._small_form(header_token)
        boundary = request.mimetype_params.get("boundary", "")
        if not boundary:
            raise Refused(EvidenceError(None, uploads.MALFORMED, status=400))
        user_id = current_user.id
        control_id = self.control.id if self.control is not None else None
        # The upload may take minutes: give the database connection back to the pool meanwhile.
        db.session.rollback()
        self.body = uploads.MultipartBody(request.stream, boundary.encode("latin-1"),
                                          max_body=self.limits.max_body)
        fields, part = self._step(self.body.read_fields)
        self.fields = fields
        if header_token is None:
            self._check_csrf(fields.get("csrf_token"))
        meta = self._step(evidence_service.validate_meta, fields) if self.mode == "new" else None
        if part is None:
            raise Refused(EvidenceError("file", uploads.NO_FILE))
        self.filename = evidence_service.clean_filename(part.filename)
        upload = self._step(uploads.receive_file, _storage(), self.body, part, evidence_id=self.evidence_id,
                            limits=self.limits)
        self.body.drain()
        submit = bool(self._form().send_for_review.data)
        self._record(upload, meta, user_id=user_id, control_id=control_id, submit=submit)
        return self._done(upload, submit)

    def _step(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EvidenceError as exc:
            raise Refused(exc) from None

    def _small_form(self, header_token: str | None) -> Response:
        """A body without a file part encoding (a urlencoded post): read normally, it is small;
        it can only be refused (the file is missing)."""
        self.fields = request.form.to_dict()
        if header_token is None:
            self._check_csrf(self.fields.get("csrf_token"))
        if self.mode == "new":
            self._step(evidence_service.validate_meta, self.fields)
        raise Refused(EvidenceError("file", uploads.NO_FILE), drain=False)

    def _check_csrf(self, token: str | None) -> None:
        if not current_app.config.get("WTF_CSRF_ENABLED", True):
            return
        try:
            validate_csrf(token)
        except ValidationError as exc:
            self._csrf_refused(str(exc.args[0]) if exc.args else "The CSRF token is invalid.")
        if request.is_secure and current_app.config.get("WTF_CSRF_SSL_STRICT", True):
            if not request.referrer:
                self._csrf_refused("The referrer header is missing.")
            if not same_origin(request.referrer, f"https://{request.host}/"):
                self._csrf_refused("The referrer does not match the host.")
        g.csrf_valid = True

    def _csrf_refused(self, reason: str) -> None:
        log.info("CSRF refused on an evidence upload: %s", reason)
        self._discard_body()
        self._audit(EvidenceError(None, f"CSRF: {reason}", status=400))
        raise CSRFError(reason)  # the app's 400 page (into #flash for htmx)

    def _record(self, upload: StoredUpload, meta: Any, *, user_id: uuid.UUID, control_id: uuid.UUID | None,
                submit: bool) -> None:
        """Record the stored upload in one transaction; on any failure delete the stored version."""
        try:
            if self.mode == "new":
                evidence_service.create_evidence(
                    db.session, evidence_id=self.evidence_id, meta=meta, upload=upload, uploaded_by_id=user_id,
                    control_id=control_id, submit=submit)
            else:
                evidence = db.session.get(Evidence, self.evidence_id)
                if evidence is None or evidence.deleted_at is not None:
                    raise EvidenceError(None, "This evidence was deleted while the file was uploading.", status=404)
                evidence_service.add_revision(db.session, evidence, upload, uploaded_by_id=user_id, submit=submit)
            db.session.commit()
        except EvidenceError as exc:
            db.session.rollback()
            uploads.discard(_storage(), upload)
            raise Refused(exc, drain=False) from None
        except Exception:
            log.exception("recording evidence %s failed; deleting its stored object", self.evidence_id)
            db.session.rollback()
            uploads.discard(_storage(), upload)
            raise Refused(EvidenceError(None, uploads.NOT_RECORDED, status=503), drain=False) from None

    def _done(self, upload: StoredUpload, submit: bool) -> Response:
        evidence = db.session.get(Evidence, self.evidence_id)
        number = evidence.revision_number if evidence is not None else 1
        what = f"{upload.filename} ({uploads.size_text(upload.size)})"
        if self.mode == "new":
            message = f"Uploaded {what} as new evidence."
        else:
            message = f"Uploaded {what} as revision {number}."
        flash(message + ("" if submit else DRAFT_HINT), "success")
        location = url_for("evidence.detail", evidence_id=self.evidence_id)
        if is_htmx():
            response = make_response("", 204)
            response.headers["HX-Location"] = location
            return response
        return redirect(location, code=303)

    # --- refusals ---------------------------------------------------------------------------------

    def _form(self) -> Any:
        form_class = EvidenceForm if self.mode == "new" else RevisionForm
        # Nothing read (refused by Content-Length): the form as it first was, review box ticked.
        return form_class(formdata=MultiDict(self.fields) if self.fields else None)

    def _discard_body(self) -> None:
        if self.body is not None:
            self.body.drain()
            return
        length = request.content_length
        if length is not None and length > self.limits.max_body:
            return
        stream = request.stream
        read = 0
        while read <= self.limits.max_body:
            try:
                chunk = stream.read(uploads.READ_SIZE)
            except (HTTPException, OSError):  # the client went away, or sent more than the limit
                return
            if not chunk:
                return
            read += len(chunk)

    def _audit(self, error: EvidenceError) -> None:
        details: dict[str, Any] = {"mode": self.mode}
        if self.filename:
            details["filename"] = self.filename
        if self.body is not None:
            details["bytes_read"] = self.body.bytes_read
        if request.content_length is not None:
            details["content_length"] = request.content_length
        if self.control is not None:
            details["control_id"] = str(self.control.id)
        db.session.rollback()
        try:
            uploads.record_refusal(db.session, self.action, self.evidence_id, error, details)
            db.session.commit()
        except Exception:
            log.exception("could not audit a refused evidence upload")
            db.session.rollback()

    def _refusal(self, refused: Refused) -> Response:
        error = refused.error
        if refused.drain:
            self._discard_body()
        self._audit(error)
        if error.status == 404:
            abort(404)
        form = self._form()
        field = getattr(form, error.field, None) if error.field else None
        if field is not None:
            field.errors = [error.message]
        else:
            form.form_errors.append(error.message)
        control = db.session.get(Control, self.control.id) if self.control is not None else None
        evidence = db.session.get(Evidence, self.evidence_id) if self.mode == "revision" else None
        return _page(form, mode=self.mode, control=control, evidence=evidence, status=error.status)


def _header_token() -> str | None:
    for name in current_app.config.get("WTF_CSRF_HEADERS", ["X-CSRFToken", "X-CSRF-Token"]):
        token = request.headers.get(name)
        if token:
            return token
    return None
