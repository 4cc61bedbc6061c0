"""Evidence pages: the filtered list, one piece of evidence (revisions, links and review history side
by side), downloads streamed through our origin, reviews, and links to controls, checks and tasks
from the evidence side and from the control side.

Views stay thin: reads in governance.services.evidence_queries, changes in
governance.services.evidence_review and evidence_links (validated and audited there); one commit
per request. Pages render from the database alone when the object store is down, and say so.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, abort, current_app, flash, make_response, redirect, request, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_blocks
from minio.error import S3Error
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.errors.routes import error_response
from blueprints.evidence.forms import ReviewForm, review_form
from blueprints.evidence_upload.forms import CATEGORY_LABELS
from blueprints.web import parse_uuid, render, wants_fragment
from extensions import db
from governance.models.enums import EvidenceStatus
from governance.models.evidence import Evidence, EvidenceLink, EvidenceRevision
from governance.models.frameworks import Control
from governance.services import evidence_links, evidence_review
from governance.services import evidence_queries as queries
from governance.services.evidence import EvidenceError, revision_by_number
from governance.services.evidence_freshness import last_valid_day
from governance.services.evidence_links import LinkError
from governance.storage import Storage, StorageError

bp = Blueprint("evidence", __name__)

PAGE_SIZE = 50
LINK_TYPES = ("control", "check", "task")
MAX_REVISION_NUMBER = 2**31 - 1
MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchObject", "NotFound"})
STORE_DOWN_TITLE = "Evidence store unavailable"
STORE_DOWN_MESSAGE = ("The evidence store could not be reached, so the file cannot be downloaded now. "
                      "Try again in a few minutes; the record itself is safe.")


# --- template helpers (the control page uses them too) ----------------------------------------------


@bp.app_template_filter("filesize")
def filesize(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


@bp.app_template_filter("utc")
def utc(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime(fmt) + " UTC"


@bp.app_template_filter("expiry_date")
def expiry_date(expires_at: datetime | None) -> str:
    """The last day evidence is valid on, as people entered it (the same words as its notices)."""
    return "" if expires_at is None else last_valid_day(expires_at.astimezone(UTC))


@bp.app_template_filter("freshness")
def freshness(evidence: Evidence) -> queries.Freshness:
    return queries.freshness(evidence)


@bp.app_template_filter("status_label")
def status_label(status: EvidenceStatus) -> str:
    return status.value.replace("_", " ").capitalize()


def _storage() -> Storage:
    store: Storage = current_app.extensions["storage"]
    return store


def _evidence_or_404(evidence_id: uuid.UUID) -> Evidence:
    evidence = queries.get_evidence(db.session, evidence_id)
    if evidence is None:
        abort(404)
    return evidence


def _revision_or_404(evidence: Evidence, number: int) -> EvidenceRevision:
    if number > MAX_REVISION_NUMBER:  # beyond PostgreSQL's integer: no such revision
        abort(404)
    revision = revision_by_number(db.session, evidence.id, number)
    if revision is None:
        abort(404)
    return revision


def _fragments(template: str, blocks: list[str], *, status: int = 200, **context: Any) -> Response:
    """For htmx: the first block swaps into its target, the others carry hx-swap-oob (context oob);
    otherwise the whole page."""
    if wants_fragment():
        response = make_response(render_blocks(template, blocks, oob=True, **context), status)
    else:
        response = render(template, status=status, **context)
    response.vary.add("HX-Request")
    return response


# --- the list -------------------------------------------------------------------------------------


def _list_filters() -> queries.ListFilters:
    status = request.args.get("status", "")
    return queries.ListFilters(
        status=EvidenceStatus(status) if status in {s.value for s in EvidenceStatus} else None,
        q=queries.clean_query(request.args.get("q")),
        expiring=request.args.get("expiring") == "1",
        control_id=parse_uuid(request.args.get("control")),
    )


def _list_cursor() -> tuple[datetime, uuid.UUID] | None:
    after_id = parse_uuid(request.args.get("after_id"))
    try:
        after_created = datetime.fromisoformat(request.args.get("after_created", ""))
    except ValueError:
        return None
    if after_id is None or after_created.tzinfo is None:
        return None
    return after_created, after_id


@bp.get("/evidence")
@requires("evidence", "read")
def index() -> Response:
    filters = _list_filters()
    rows, cursor = queries.list_evidence(db.session, filters, after=_list_cursor(), limit=PAGE_SIZE)
    control = queries.control_title(db.session, filters.control_id) if filters.control_id else None
    args = {"q": filters.q or None, "status": filters.status.value if filters.status else None,
            "expiring": "1" if filters.expiring else None, "control": filters.control_id}
    next_url = cursor and url_for("evidence.index", **args, after_created=cursor[0].isoformat(),
                                  after_id=cursor[1])
    return render("evidence/index.html", block="results", rows=rows, filters=filters, control=control,
                  statuses=list(EvidenceStatus), next_url=next_url, paged=_list_cursor() is not None,
                  expiring_days=queries.EXPIRING_SOON_DAYS)


# --- one piece of evidence ------------------------------------------------------------------------


def _detail_context(detail: queries.EvidenceDetail, **extra: Any) -> dict[str, Any]:
    forms: dict[int, ReviewForm] = extra.pop("review_forms", {})
    for revision in detail.revisions:
        if revision.status == EvidenceStatus.IN_REVIEW and revision.number not in forms:
            forms[revision.number] = review_form(revision.number, formdata=None)
    context: dict[str, Any] = {
        "detail": detail, "evidence": detail.evidence, "revisions": detail.revisions, "links": detail.links,
        "reviews": detail.reviews, "current": detail.current, "review_forms": forms,
        "store_available": _storage().available(), "link_types": LINK_TYPES, "user_id": current_user.id,
        "target_type": "control", "q": "", "targets": None, "category_labels": CATEGORY_LABELS,
    }
    context.update(extra)
    return context


def _detail_or_404(evidence_id: uuid.UUID) -> queries.EvidenceDetail:
    detail = queries.evidence_detail(db.session, evidence_id)
    if detail is None:
        abort(404)
    return detail


@bp.get("/evidence/<uuid:evidence_id>")
@requires("evidence", "read")
def detail(evidence_id: uuid.UUID) -> Response:
    return render("evidence/detail.html", **_detail_context(_detail_or_404(evidence_id)))


# --- download -------------------------------------------------------------------------------------


def content_disposition(filename: str) -> str:
    """attachment, always; an ASCII fallback name plus RFC 5987 filename* when the name is not
    plain ASCII (RFC 6266)."""
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    fallback = re.sub(r"[^A-Za-z0-9 !#$&'()+,\-.;=@\[\]^_`{}~]", "_", fallback).strip()
    stem, dot, ext = fallback.rpartition(".")
    if not re.search(r"[A-Za-z0-9]", stem if dot else fallback):
        fallback = f"evidence.{ext}" if dot and re.fullmatch(r"[A-Za-z0-9]{1,16}", ext) else "evidence"
    if fallback == filename:
        return f'attachment; filename="{fallback}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _download_failure(evidence: Evidence, revision: EvidenceRevision, exc: StorageError) -> Response:
    cause = exc.__cause__
    missing = isinstance(cause, S3Error) and cause.code in MISSING_OBJECT_CODES
    db.session.rollback()
    evidence_review.record_download(db.session, evidence, revision,
                                    error="object missing" if missing else "store unavailable")
    db.session.commit()
    if missing:
        return error_response(
            409, "File missing from the evidence store",
            f"The stored file of revision {revision.number} is no longer in the evidence store, although its "
            "record is. An administrator can check the store with “flask evidence verify”.")
    return error_response(503, STORE_DOWN_TITLE, STORE_DOWN_MESSAGE)


@bp.get("/evidence/<uuid:evidence_id>/revisions/<int:number>/download")
@requires("evidence", "read")
def download(evidence_id: uuid.UUID, number: int) -> Response:
    """The revision's bytes streamed through our origin, never inline. The object is requested
    before the response starts (so a missing object or an outage is a clear error page), and the
    audit entry is committed before the first byte goes out."""
    evidence = _evidence_or_404(evidence_id)
    revision = _revision_or_404(evidence, number)
    try:
        chunks = _storage().open_stream(revision.object_key, revision.version_id, bucket=revision.bucket)
    except StorageError as exc:
        return _download_failure(evidence, revision, exc)
    headers = {
        "Content-Disposition": content_disposition(revision.filename),
        "Content-Length": str(revision.size_bytes),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "no-store",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    content_type = revision.content_type
    if request.method == "HEAD":
        _close(chunks)
        return Response(status=200, headers=headers, content_type=content_type)
    try:
        evidence_review.record_download(db.session, evidence, revision)
        db.session.commit()
    except Exception:
        _close(chunks)
        raise
    return Response(chunks, status=200, headers=headers, content_type=content_type, direct_passthrough=True)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


# --- review and submit ----------------------------------------------------------------------------

REVIEW_BLOCKS = ["revisions_panel", "review_history", "evidence_status"]


@bp.post("/evidence/<uuid:evidence_id>/revisions/<int:number>/review")
@requires("evidence", "review")
def review(evidence_id: uuid.UUID, number: int) -> Response:
    evidence = _evidence_or_404(evidence_id)
    revision = _revision_or_404(evidence, number)
    form = review_form(number)
    if not form.validate_on_submit():
        return _review_invalid(evidence_id, number, form)
    settings = current_app.config["SETTINGS"]
    try:
        decided = evidence_review.review_revision(
            db.session, _storage(), evidence, revision, reviewer_id=current_user.id,
            decision=form.decision.data or "", comment=form.comment.data,
            lock_days=settings.evidence_lock_days, lock_mode=settings.evidence_lock_mode)
    except EvidenceError as exc:
        db.session.rollback()
        if exc.status == 422:
            target = getattr(form, exc.field or "", None)
            if target is not None and exc.field == "comment":
                target.errors = [*target.errors, exc.message]
            else:
                form.form_errors.append(exc.message)
            return _review_invalid(evidence_id, number, form)
        return error_response(exc.status, "Review not recorded", exc.message)
    db.session.commit()
    verdict = "approved" if decided.decision == EvidenceStatus.APPROVED else "rejected"
    notice = f"Revision {number} {verdict}."
    if decided.decision == EvidenceStatus.APPROVED:
        notice += (f" Its file is locked until {utc(revision.locked_until, '%Y-%m-%d')}." if revision.locked_until
                   else " The store does not support object lock; versioning keeps the file from being overwritten.")
    if wants_fragment():
        detail = _detail_or_404(evidence_id)
        return _fragments("evidence/detail.html", REVIEW_BLOCKS, **_detail_context(detail, notice=notice))
    flash(notice, "success")
    return redirect(url_for("evidence.detail", evidence_id=evidence_id), code=303)


def _review_invalid(evidence_id: uuid.UUID, number: int, form: ReviewForm) -> Response:
    detail = _detail_or_404(evidence_id)
    context = _detail_context(detail, review_forms={number: form})
    return render("evidence/detail.html", block="revisions_panel", status=422, **context)


@bp.post("/evidence/<uuid:evidence_id>/submit")
@requires("evidence", "upload")
def submit(evidence_id: uuid.UUID) -> Response:
    evidence = _evidence_or_404(evidence_id)
    revision = _revision_or_404(evidence, evidence.revision_number) if evidence.revision_number else None
    if revision is None:
        return error_response(409, "Nothing to submit", "This evidence has no uploaded revision yet.")
    try:
        evidence_review.submit_current(db.session, evidence, revision)
    except EvidenceError as exc:
        db.session.rollback()
        return error_response(exc.status, "Not submitted", exc.message)
    db.session.commit()
    flash(f"Revision {revision.number} submitted for review.", "success")
    return redirect(url_for("evidence.detail", evidence_id=evidence_id), code=303)


# --- links from the evidence side -----------------------------------------------------------------


def _target_type(raw: str | None) -> str:
    return raw if raw in LINK_TYPES else "control"


def _links_panel(evidence_id: uuid.UUID, *, status: int = 200, **extra: Any) -> Response:
    detail = _detail_or_404(evidence_id)
    return render("evidence/detail.html", block="links_panel", status=status, **_detail_context(detail, **extra))


def _links_done(evidence_id: uuid.UUID, notice: str) -> Response:
    if wants_fragment():
        return _links_panel(evidence_id, link_notice=notice)
    flash(notice, "success")
    return redirect(url_for("evidence.detail", evidence_id=evidence_id, _anchor="evidence-links"), code=303)


@bp.get("/evidence/<uuid:evidence_id>/link-targets")
@requires("evidence", "link")
def link_targets(evidence_id: uuid.UUID) -> Response:
    evidence = _evidence_or_404(evidence_id)
    target_type = _target_type(request.args.get("type"))
    q = queries.clean_query(request.args.get("q"))
    targets = queries.link_targets(db.session, evidence.id, target_type, q)
    return render("evidence/link_targets.html", block="link_targets", evidence=evidence, target_type=target_type,
                  q=q, targets=targets, link_types=LINK_TYPES, standalone=not wants_fragment())


@bp.post("/evidence/<uuid:evidence_id>/links")
@requires("evidence", "link")
def add_link(evidence_id: uuid.UUID) -> Response:
    evidence = _evidence_or_404(evidence_id)
    target_type = request.form.get("type", "")
    target_id = parse_uuid(request.form.get("target_id"))
    if target_type not in LINK_TYPES or target_id is None:
        return _links_panel(evidence_id, status=422, link_error="Choose a control, check or task to link.")
    try:
        row = evidence_links.link(db.session, evidence, target_type, target_id, linked_by_id=current_user.id)
    except LinkError as exc:
        db.session.rollback()
        return _links_panel(evidence_id, status=422, link_error=exc.message)
    db.session.commit()
    target = row.control or row.check or row.task
    label = evidence_links.describe(target_type, target) if target is not None else target_type
    return _links_done(evidence_id, f"Linked to {label}.")


@bp.post("/evidence/<uuid:evidence_id>/links/<uuid:link_id>/delete")
@requires("evidence", "link")
def remove_link(evidence_id: uuid.UUID, link_id: uuid.UUID) -> Response:
    evidence = _evidence_or_404(evidence_id)
    row = db.session.get(EvidenceLink, link_id)
    if row is None or row.evidence_id != evidence.id:
        abort(404)
    evidence_links.unlink(db.session, row)
    db.session.commit()
    return _links_done(evidence_id, "Link removed.")


# --- links from the control side ------------------------------------------------------------------


def _control_or_404(control_id: uuid.UUID) -> Control:
    control = queries.control_title(db.session, control_id)
    if control is None or control.framework is None:
        abort(404)
    return control


def control_section_context(control: Control) -> dict[str, Any]:
    """What the control page's evidence section shows (frameworks._control_page reads the same query)."""
    rows, count = queries.control_evidence(db.session, control.id)
    return {"evidence_rows": rows, "evidence_count": count}


def _control_section(control: Control, *, status: int = 200, **extra: Any) -> Response:
    context = {"control": control, **control_section_context(control), **extra}
    return render("frameworks/control.html", block="control_evidence", status=status, **context)


def _control_done(control: Control, notice: str) -> Response:
    if wants_fragment():
        return _control_section(control, evidence_notice=notice)
    flash(notice, "success")
    return redirect(url_for("frameworks.control", control_id=control.id, _anchor="control-evidence"), code=303)


@bp.get("/controls/<uuid:control_id>/evidence/candidates")
@requires("evidence", "link")
def control_candidates(control_id: uuid.UUID) -> Response:
    control = _control_or_404(control_id)
    q = queries.clean_query(request.args.get("q"))
    candidates = queries.control_candidates(db.session, control.id, q)
    return render("evidence/candidates.html", block="candidates", control=control, q=q, candidates=candidates,
                  standalone=not wants_fragment())


@bp.post("/controls/<uuid:control_id>/evidence")
@requires("evidence", "link")
def control_attach(control_id: uuid.UUID) -> Response:
    control = _control_or_404(control_id)
    evidence_id = parse_uuid(request.form.get("evidence_id"))
    evidence = queries.get_evidence(db.session, evidence_id) if evidence_id else None
    if evidence is None:
        return _control_section(control, status=422, evidence_error="Choose evidence to attach.")
    try:
        evidence_links.link(db.session, evidence, "control", control.id, linked_by_id=current_user.id)
    except LinkError as exc:
        db.session.rollback()
        return _control_section(control, status=422, evidence_error=exc.message)
    db.session.commit()
    return _control_done(control, f"Attached {evidence.name}.")


@bp.post("/controls/<uuid:control_id>/evidence/<uuid:evidence_id>/delete")
@requires("evidence", "link")
def control_detach(control_id: uuid.UUID, evidence_id: uuid.UUID) -> Response:
    control = _control_or_404(control_id)
    row = evidence_links.find(db.session, evidence_id, "control", control.id)
    if row is None:
        abort(404)
    name = row.evidence.name
    evidence_links.unlink(db.session, row)
    db.session.commit()
    return _control_done(control, f"Detached {name}.")
