"""Decisions on evidence revisions: submitting a draft for review, approving or rejecting a revision
(an approved revision's object version is put under object lock), and the audit record of a
download. Each function validates, flushes (never commits) and writes its audit entry in the
caller's transaction; refusals raise EvidenceError with the HTTP status the web layer answers with.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.models.enums import AuditOutcome, EvidenceStatus
from governance.models.evidence import Evidence, EvidenceLink, EvidenceReview, EvidenceRevision
from governance.services import alerts, audit, probe_runs
from governance.services.evidence import EvidenceError
from governance.storage import Storage, StorageError

COMMENT_MAX = 10_000
DECISIONS = {"approve": EvidenceStatus.APPROVED, "reject": EvidenceStatus.REJECTED}

STORE_DOWN = ("The evidence store could not be reached, so the approved file could not be locked. "
              "Nothing was changed; try again when the store is back.")


def _label(status: EvidenceStatus) -> str:
    return status.value.replace("_", " ")


def _locked_revision(session: Session, revision: EvidenceRevision) -> EvidenceRevision:
    """The revision re-read under a row lock, so two reviewers deciding at once cannot both win."""
    return session.scalars(
        select(EvidenceRevision).where(EvidenceRevision.id == revision.id)
        .with_for_update().execution_options(populate_existing=True)
    ).one()


def _state(evidence: Evidence, revision: EvidenceRevision) -> dict[str, Any]:
    return {"evidence_status": evidence.status, "revision": revision.number, "revision_status": revision.status,
            "reviewed_by_id": revision.reviewed_by_id, "reviewed_at": revision.reviewed_at,
            "review_comment": revision.review_comment, "locked_until": revision.locked_until}


def review_revision(
    session: Session, storage: Storage, evidence: Evidence, revision: EvidenceRevision, *,
    reviewer_id: uuid.UUID, decision: str, comment: str | None, lock_days: int, lock_mode: str,
    now: datetime | None = None,
) -> EvidenceReview:
    """Approve or reject `revision` (which must be in review, and not uploaded by the reviewer).

    The decision, reviewer, time and comment are kept on the revision and appended to the review
    history; the evidence takes the revision's status when it is the current revision. Approval
    locks the object version until now + lock_days (locked_until stays NULL on a store without
    object lock); when the store cannot be reached the approval is refused and nothing changes.
    """
    status = DECISIONS.get((decision or "").strip().lower())
    if status is None:
        raise EvidenceError("decision", "Choose Approve or Reject.")
    text = (comment or "").strip()
    if len(text) > COMMENT_MAX:
        raise EvidenceError("comment", f"Keep the comment to {COMMENT_MAX:,} characters.")
    if status == EvidenceStatus.REJECTED and not text:
        raise EvidenceError("comment", "Say why the revision is rejected, so the uploader can fix it.")
    revision = _locked_revision(session, revision)
    if revision.evidence_id != evidence.id:
        raise EvidenceError(None, "That revision belongs to other evidence.", status=404)
    if revision.status == EvidenceStatus.DRAFT:
        raise EvidenceError(None, f"Revision {revision.number} is a draft: it must be submitted for review "
                                  "before it can be decided.", status=409)
    if revision.status != EvidenceStatus.IN_REVIEW:
        raise EvidenceError(None, f"Revision {revision.number} has already been {_label(revision.status)}; "
                                  "upload a new revision to have it reviewed again.", status=409)
    if revision.uploaded_by_id is not None and revision.uploaded_by_id == reviewer_id:
        raise EvidenceError(None, f"You uploaded revision {revision.number}, so you cannot review it: "
                                  "another reviewer has to decide on it.", status=409)

    now = now or datetime.now(UTC)
    before = _state(evidence, revision)
    locked_until = None
    if status == EvidenceStatus.APPROVED:
        # Lock first: if the store refuses, nothing below has happened yet.
        until = now + timedelta(days=lock_days)
        try:
            # SeaweedFS accepts a retention on a bucket made without object lock but never enforces
            # it: ask the bucket first, so locked_until never claims a lock that does not hold.
            locked = storage.supports_object_lock() and storage.lock(
                revision.object_key, revision.version_id, until, lock_mode)
        except (StorageError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise EvidenceError(None, STORE_DOWN, status=503) from exc
        locked_until = until if locked else None

    revision.status = status
    revision.reviewed_by_id = reviewer_id
    revision.reviewed_at = now
    revision.review_comment = text or None
    revision.locked_until = locked_until
    # created_at is the decision's own time (the same as reviewed_at), not the transaction's start.
    review = EvidenceReview(evidence_id=evidence.id, revision_id=revision.id, reviewer_id=reviewer_id,
                            decision=status, comment=text, created_at=now)
    session.add(review)
    if revision.number == evidence.revision_number:
        evidence.status = status
    session.flush()
    audit.record(session, "evidence.review", object_type="evidence", object_id=evidence.id,
                 before=before, after=_state(evidence, revision),
                 details={"decision": status, "revision_id": revision.id, "review_id": review.id,
                          "sha256": revision.sha256, "version_id": revision.version_id,
                          "comment": text or None})
    # A current, approved, unexpired revision renews the evidence: its expiry alert clears.
    if evidence.status == EvidenceStatus.APPROVED and (evidence.expires_at is None or evidence.expires_at > now):
        alerts.clear(session, rule=alerts.EVIDENCE_EXPIRED, subject_id=evidence.id,
                     reason=f"revision {revision.number} was approved")
    # The decision changes what evidence_freshness checks see on the linked controls: re-run them
    # (their jobs are queued in this transaction, so they run only if the decision commits).
    control_ids = session.scalars(
        select(EvidenceLink.control_id).where(EvidenceLink.evidence_id == evidence.id,
                                              EvidenceLink.control_id.is_not(None))
    ).all()
    probe_runs.request_runs_for_controls(session, [c for c in control_ids if c is not None],
                                         kind="evidence_freshness")
    return review


def submit_current(session: Session, evidence: Evidence, revision: EvidenceRevision) -> EvidenceRevision:
    """Send the evidence's current revision, a draft, to review."""
    revision = _locked_revision(session, revision)
    if revision.number != evidence.revision_number:
        raise EvidenceError(None, "Only the current revision can be submitted for review.", status=409)
    if revision.status != EvidenceStatus.DRAFT:
        raise EvidenceError(None, f"Revision {revision.number} is not a draft (it is {_label(revision.status)}).",
                            status=409)
    before = _state(evidence, revision)
    revision.status = EvidenceStatus.IN_REVIEW
    evidence.status = EvidenceStatus.IN_REVIEW
    session.flush()
    audit.record(session, "evidence.submit", object_type="evidence", object_id=evidence.id,
                 before=before, after=_state(evidence, revision), details={"revision_id": revision.id})
    return revision


def record_download(session: Session, evidence: Evidence, revision: EvidenceRevision, *,
                    error: str | None = None) -> None:
    """The audit entry of a download (or of a failed one, with outcome error and the reason)."""
    details: dict[str, Any] = {"revision": revision.number, "revision_id": revision.id, "sha256": revision.sha256,
                               "version_id": revision.version_id, "size_bytes": revision.size_bytes,
                               "filename": revision.filename}
    if error is not None:
        details["error"] = error
    audit.record(session, "evidence.download", object_type="evidence", object_id=evidence.id,
                 outcome=AuditOutcome.SUCCESS if error is None else AuditOutcome.ERROR, details=details)
