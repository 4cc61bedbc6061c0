"""Review of evidence revisions (governance.services.evidence_review) against real PostgreSQL and
SeaweedFS: the rules a decision must meet, the object lock (and a store without one), submitting a
draft; freshness labels and the download's Content-Disposition."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

import embedded
from blueprints.evidence.routes import content_disposition
from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome, EvidenceStatus
from governance.models.evidence import Evidence, EvidenceReview, EvidenceRevision
from governance.services import evidence as evidence_service
from governance.services import evidence_queries, evidence_review
from governance.services.evidence import EvidenceError
from governance.storage import Storage

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _current(db_session, evidence: Evidence) -> EvidenceRevision:
    return db_session.scalars(select(EvidenceRevision).where(
        EvidenceRevision.evidence_id == evidence.id, EvidenceRevision.number == evidence.revision_number)).one()


def _decide(db_session, storage, evidence, reviewer, decision="approve", comment="ok", **kwargs):
    return evidence_review.review_revision(
        db_session(), storage, evidence, _current(db_session, evidence), reviewer_id=reviewer.id,
        decision=decision, comment=comment, lock_days=kwargs.pop("lock_days", 30),
        lock_mode=kwargs.pop("lock_mode", "GOVERNANCE"), **kwargs)


@pytest.mark.parametrize(("decision", "comment", "field"), [
    ("", "fine", "decision"),
    ("approve-ish", "fine", "decision"),
    ("reject", "", "comment"),
    ("reject", " \n ", "comment"),
    ("approve", "x" * (evidence_review.COMMENT_MAX + 1), "comment"),
])
def test_bad_decisions_are_422_beside_their_field(db_session, make_user, make_evidence, storage, decision, comment,
                                                  field) -> None:
    evidence = make_evidence(make_user("engineer"))
    with pytest.raises(EvidenceError) as refused:
        _decide(db_session, storage, evidence, make_user("auditor"), decision, comment)
    assert (refused.value.status, refused.value.field) == (422, field)
    assert _current(db_session, evidence).status == EvidenceStatus.IN_REVIEW


def test_only_a_revision_in_review_by_someone_else_can_be_decided(db_session, make_user, make_evidence,
                                                                  storage) -> None:
    engineer, auditor = make_user("engineer"), make_user("auditor")
    draft = make_evidence(engineer, b"draft", submit=False)
    with pytest.raises(EvidenceError, match="is a draft") as refused:
        _decide(db_session, storage, draft, auditor)
    assert refused.value.status == 409

    evidence = make_evidence(engineer, b"in review")
    with pytest.raises(EvidenceError, match="You uploaded revision 1") as own:
        _decide(db_session, storage, evidence, engineer)
    assert own.value.status == 409

    review = _decide(db_session, storage, evidence, auditor, "reject", "  Wrong scope  ", now=NOW)
    assert (review.decision, review.comment, review.created_at) == (EvidenceStatus.REJECTED, "Wrong scope", NOW)
    revision = _current(db_session, evidence)
    assert (revision.reviewed_by_id, revision.reviewed_at, revision.locked_until) == (auditor.id, NOW, None)
    with pytest.raises(EvidenceError, match="already been rejected") as twice:
        _decide(db_session, storage, evidence, make_user("admin"))
    assert twice.value.status == 409


def test_approval_locks_for_the_configured_days(db_session, make_user, make_evidence, storage) -> None:
    evidence = make_evidence(make_user("engineer"), b"locked")
    now = datetime.now(UTC)
    _decide(db_session, storage, evidence, make_user("auditor"), lock_days=7, now=now)
    revision = _current(db_session, evidence)
    assert revision.locked_until == now + timedelta(days=7)
    retention = storage.client.get_object_retention(storage.bucket, revision.object_key, version_id=revision.version_id)
    assert retention.mode == "GOVERNANCE"
    assert abs(retention.retain_until_date - (now + timedelta(days=7))) < timedelta(seconds=1)


@pytest.mark.parametrize("versioned", [True, False])
def test_a_bucket_without_object_lock_approves_with_no_lock_date(db_session, make_user, s3_server,
                                                                  versioned) -> None:
    store = Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key,
                    bucket="nolock-" + uuid.uuid4().hex[:10])
    if versioned:  # SeaweedFS would take a retention here, and not enforce it
        store.ensure_bucket(object_lock=False)
    else:
        store.client.make_bucket(store.bucket)
    try:
        engineer = make_user("engineer")
        evidence_id = uuid.uuid4()
        key = evidence_service.object_key(evidence_id)
        stored = store.put(key, b"plain bucket")
        upload = evidence_service.StoredUpload(store.bucket, key, stored.version_id, 12,
                                               hashlib.sha256(b"plain bucket").hexdigest(), "text/plain", "a.txt")
        evidence = evidence_service.create_evidence(
            db_session(), evidence_id=evidence_id, meta=evidence_service.validate_meta({"name": "Plain"}),
            upload=upload, uploaded_by_id=engineer.id)
        _decide(db_session, store, evidence, make_user("auditor"))
        revision = _current(db_session, evidence)
        assert revision.status == EvidenceStatus.APPROVED and revision.locked_until is None
        assert evidence.status == EvidenceStatus.APPROVED
    finally:
        store.purge_bucket()


def test_an_unreachable_store_refuses_the_approval_and_changes_nothing(db_session, make_user, make_evidence,
                                                                       storage) -> None:
    evidence = make_evidence(make_user("engineer"))
    down = Storage(f"127.0.0.1:{embedded.free_port()}", "x", "y", bucket=storage.bucket)
    with pytest.raises(EvidenceError) as refused:
        _decide(db_session, down, evidence, make_user("auditor"))
    assert refused.value.status == 503 and "could not be reached" in refused.value.message
    db_session.rollback()
    assert _current(db_session, evidence).status == EvidenceStatus.IN_REVIEW
    assert db_session.scalars(select(EvidenceReview)).all() == []


def test_submit_sends_only_a_current_draft_to_review(db_session, make_user, make_evidence, storage) -> None:
    engineer = make_user("engineer")
    evidence = make_evidence(engineer, b"draft one", submit=False)
    first = _current(db_session, evidence)
    key = evidence_service.object_key(evidence.id)
    stored = storage.put(key, b"draft two")
    upload = evidence_service.StoredUpload(storage.bucket, key, stored.version_id, 9,
                                           hashlib.sha256(b"draft two").hexdigest(), "text/plain", "b.txt")
    evidence_service.add_revision(db_session(), evidence, upload, uploaded_by_id=engineer.id, submit=False)
    with pytest.raises(EvidenceError, match="Only the current revision") as old:
        evidence_review.submit_current(db_session(), evidence, first)
    assert old.value.status == 409
    evidence_review.submit_current(db_session(), evidence, _current(db_session, evidence))
    assert evidence.status == EvidenceStatus.IN_REVIEW and _current(db_session, evidence).number == 2
    assert first.status == EvidenceStatus.DRAFT


def test_a_failed_download_is_audited_as_an_error(db_session, make_user, make_evidence) -> None:
    evidence = make_evidence(make_user("engineer"))
    evidence_review.record_download(db_session(), evidence, _current(db_session, evidence), error="store unavailable")
    [entry] = db_session.scalars(select(AuditLog).where(AuditLog.action == "evidence.download")).all()
    assert entry.outcome == AuditOutcome.ERROR and entry.details["error"] == "store unavailable"
    assert entry.details["sha256"] == evidence.sha256


# --- pure helpers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expires_at", "status", "state", "label"), [
    (None, EvidenceStatus.APPROVED, "none", "No expiry date"),
    (NOW + timedelta(days=90), EvidenceStatus.APPROVED, "fresh", "Fresh"),
    (NOW + timedelta(days=12, hours=2), EvidenceStatus.APPROVED, "expiring", "Expires in 12 days"),
    (NOW + timedelta(days=1, hours=1), EvidenceStatus.IN_REVIEW, "expiring", "Expires in 1 day"),
    (NOW + timedelta(hours=3), EvidenceStatus.APPROVED, "expiring", "Expires today"),
    (NOW - timedelta(seconds=1), EvidenceStatus.APPROVED, "expired", "Expired"),
    (NOW + timedelta(days=90), EvidenceStatus.EXPIRED, "expired", "Expired"),  # the daily job said so
])
def test_freshness(expires_at, status, state, label) -> None:
    evidence = Evidence(expires_at=expires_at, status=status)
    fresh = evidence_queries.freshness(evidence, NOW)
    assert (fresh.state, fresh.label) == (state, label)


@pytest.mark.parametrize(("filename", "header"), [
    ("report.pdf", 'attachment; filename="report.pdf"'),
    ("Prüfbericht.pdf", "attachment; filename=\"Prufbericht.pdf\"; filename*=UTF-8''Pr%C3%BCfbericht.pdf"),
    ("Отчёт.pdf", "attachment; filename=\"evidence.pdf\"; filename*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82.pdf"),
    ('a"b\\c;.txt', "attachment; filename=\"a_b_c;.txt\"; filename*=UTF-8''a%22b%5Cc%3B.txt"),
    ("数据", "attachment; filename=\"evidence\"; filename*=UTF-8''%E6%95%B0%E6%8D%AE"),
])
def test_content_disposition_is_always_an_attachment(filename, header) -> None:
    assert content_disposition(filename) == header
