"""Evidence records: metadata, numbered revisions, review. Each function validates, flushes (never
commits) and writes its audit entry in the caller's transaction.

The object itself is stored first (governance.services.evidence_upload streams it into the S3
store); these functions record what was stored. If the caller's transaction then fails, the caller
deletes the object version it stored, so no object is left without its row.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance.models.enums import EvidenceCategory, EvidenceStatus
from governance.models.evidence import Evidence, EvidenceRevision
from governance.models.frameworks import Control
from governance.services import audit

NAME_MAX = 500
DESCRIPTION_MAX = 10_000
FILENAME_MAX = 255


class EvidenceError(ValueError):
    """A refused change or upload; `field` names the form field the message belongs beside (or
    None); `status` is the HTTP status the web layer answers with."""

    def __init__(self, field: str | None, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class EvidenceMeta:
    """The validated metadata a person gives with the first upload."""

    name: str
    description: str | None
    period_start: date | None
    period_end: date | None
    expires_at: datetime | None
    category: EvidenceCategory = EvidenceCategory.GENERAL


@dataclass(frozen=True)
class StoredUpload:
    """What the upload pipeline stored: one object version, hashed while it streamed."""

    bucket: str
    key: str
    version_id: str | None
    size: int
    sha256: str
    content_type: str
    filename: str


def object_key(evidence_id: uuid.UUID) -> str:
    """A server-made key for a new revision's object: never derived from the user's file name."""
    return f"evidence/{evidence_id}/{uuid.uuid4()}"


def clean_filename(raw: str | None) -> str:
    """The uploader's file name for display and as the download's name: base name only, no control
    or path characters, at most FILENAME_MAX characters (extension kept)."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip(" .")
    if not name:
        return "evidence"
    if len(name) > FILENAME_MAX:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: FILENAME_MAX - len(ext) - 1] + dot + ext) if dot and len(ext) < 16 else name[:FILENAME_MAX]
    return name


def extension(filename: str) -> str:
    """The lower-case extension without the dot ('' when there is none)."""
    stem, dot, ext = filename.rpartition(".")
    return ext.lower() if dot and stem else ""


def _date(raw: str | None, field: str, label: str) -> date | None:
    value = (raw or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise EvidenceError(field, f"Enter the {label} as a date (YYYY-MM-DD).") from None


def validate_meta(form: Mapping[str, str | None]) -> EvidenceMeta:
    """Validate the metadata fields of an upload form (name, description, category, period_start,
    period_end, expires_on); raise EvidenceError beside the first bad field."""
    name = (form.get("name") or "").strip()
    if not name:
        raise EvidenceError("name", "Enter a name for the evidence.")
    if len(name) > NAME_MAX:
        raise EvidenceError("name", f"Keep the name to {NAME_MAX} characters.")
    description = (form.get("description") or "").strip() or None
    if description and len(description) > DESCRIPTION_MAX:
        raise EvidenceError("description", f"Keep the description to {DESCRIPTION_MAX:,} characters.")
    raw_category = (form.get("category") or "").strip() or EvidenceCategory.GENERAL.value
    try:
        category = EvidenceCategory(raw_category)
    except ValueError:
        raise EvidenceError("category", "Choose one of the listed kinds of evidence.") from None
    start = _date(form.get("period_start"), "period_start", "start of the period")
    end = _date(form.get("period_end"), "period_end", "end of the period")
    if start and end and end < start:
        raise EvidenceError("period_end", "The period cannot end before it starts.")
    expires_on = _date(form.get("expires_on"), "expires_on", "expiry date")
    if expires_on and start and expires_on < start:
        raise EvidenceError("expires_on", "The expiry date cannot be before the period starts.")
    # Evidence expires at the end of its expiry day (UTC).
    expires_at = datetime.combine(expires_on + timedelta(days=1), time.min, UTC) if expires_on else None
    return EvidenceMeta(name, description, start, end, expires_at, category)


def snapshot(evidence: Evidence) -> dict[str, Any]:
    return {
        "name": evidence.name, "description": evidence.description, "status": evidence.status,
        "category": evidence.category,
        "period_start": evidence.period_start, "period_end": evidence.period_end,
        "expires_at": evidence.expires_at, "revision": evidence.revision_number,
        "sha256": evidence.sha256, "size_bytes": evidence.size_bytes,
    }


def _mirror(evidence: Evidence, revision: EvidenceRevision) -> None:
    """The evidence row describes its current (newest) revision."""
    evidence.revision_number = revision.number
    evidence.bucket = revision.bucket
    evidence.object_key = revision.object_key
    evidence.size_bytes = revision.size_bytes
    evidence.content_type = revision.content_type
    evidence.sha256 = revision.sha256
    evidence.uploaded_by_id = revision.uploaded_by_id
    evidence.status = revision.status


def create_evidence(
    session: Session, *, evidence_id: uuid.UUID, meta: EvidenceMeta, upload: StoredUpload,
    uploaded_by_id: uuid.UUID | None, control_id: uuid.UUID | None = None, submit: bool = True,
) -> Evidence:
    """A new piece of evidence with `upload` as revision 1 (in review, or a draft when not
    submitted). With control_id it is collected for that control and linked to it."""
    from governance.services import evidence_links

    control = None
    if control_id is not None:
        control = session.get(Control, control_id)
        if control is None or control.deleted_at is not None:
            raise EvidenceError("control", "That control does not exist (any more).", status=404)
    evidence = Evidence(
        id=evidence_id, name=meta.name, description=meta.description, category=meta.category,
        period_start=meta.period_start,
        period_end=meta.period_end, expires_at=meta.expires_at, control_id=control_id,
        owner_id=uploaded_by_id, bucket=upload.bucket, object_key=upload.key, size_bytes=upload.size,
        content_type=upload.content_type, sha256=upload.sha256, uploaded_by_id=uploaded_by_id,
    )
    session.add(evidence)
    session.flush()
    revision = _new_revision(session, evidence, upload, uploaded_by_id=uploaded_by_id, number=1, submit=submit)
    audit.record(session, "evidence.create", object_type="evidence", object_id=evidence.id,
                 after=snapshot(evidence), details=_revision_details(revision, control))
    if control is not None:
        evidence_links.link(session, evidence, "control", control.id, linked_by_id=uploaded_by_id)
    return evidence


def add_revision(
    session: Session, evidence: Evidence, upload: StoredUpload, *, uploaded_by_id: uuid.UUID | None,
    submit: bool = True,
) -> EvidenceRevision:
    """Record `upload` as the next numbered revision of `evidence`; it becomes the current one and
    goes to review (in_review), also when the previous revision was approved. Earlier revisions and
    their reviews stay as they are."""
    # Lock the evidence row so two uploads at once get consecutive numbers, not the same one, and
    # re-read it so a review committed meanwhile is not overwritten with a stale status.
    session.refresh(evidence, with_for_update=True)
    number = (session.scalar(
        select(func.max(EvidenceRevision.number)).where(EvidenceRevision.evidence_id == evidence.id)
    ) or 0) + 1
    before = snapshot(evidence)
    revision = _new_revision(session, evidence, upload, uploaded_by_id=uploaded_by_id, number=number,
                             submit=submit)
    audit.record(session, "evidence.upload", object_type="evidence", object_id=evidence.id,
                 before=before, after=snapshot(evidence), details=_revision_details(revision, None))
    return revision


def _new_revision(session: Session, evidence: Evidence, upload: StoredUpload, *,
                  uploaded_by_id: uuid.UUID | None, number: int, submit: bool) -> EvidenceRevision:
    revision = EvidenceRevision(
        evidence_id=evidence.id, number=number, bucket=upload.bucket, object_key=upload.key,
        version_id=upload.version_id, size_bytes=upload.size, content_type=upload.content_type,
        sha256=upload.sha256, filename=clean_filename(upload.filename), uploaded_by_id=uploaded_by_id,
        status=EvidenceStatus.IN_REVIEW if submit else EvidenceStatus.DRAFT,
    )
    session.add(revision)
    session.flush()
    _mirror(evidence, revision)
    session.flush()
    return revision


def _revision_details(revision: EvidenceRevision, control: Control | None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "revision": revision.number, "revision_id": revision.id, "sha256": revision.sha256,
        "size_bytes": revision.size_bytes, "content_type": revision.content_type,
        "filename": revision.filename, "bucket": revision.bucket, "object_key": revision.object_key,
        "version_id": revision.version_id,
    }
    if control is not None:
        details["control_id"] = control.id
        details["control_ref"] = control.ref_id
    return details


def revision_by_number(session: Session, evidence_id: uuid.UUID, number: int) -> EvidenceRevision | None:
    return session.scalars(
        select(EvidenceRevision).where(EvidenceRevision.evidence_id == evidence_id,
                                       EvidenceRevision.number == number)
    ).one_or_none()
