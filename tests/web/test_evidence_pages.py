"""Evidence pages against real PostgreSQL and SeaweedFS: the filtered list with keyset pages; the
evidence page with revisions, hashes, links and reviews side by side; downloads streamed through
our origin (attachment only, older revisions too, audited before streaming, a clear error when the
object is gone or the store is down); review with comment, object lock and its refusals; links
added and removed from the evidence side and from the control side; bounded statement counts."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

import embedded
from blueprints.evidence import routes as evidence_routes
from extensions import db
from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome, EvidenceStatus, Severity, TaskStatus
from governance.models.evidence import Evidence, EvidenceLink, EvidenceReview, EvidenceRevision
from governance.models.probes import Check, Probe
from governance.models.tasks import Task
from governance.services import evidence as evidence_service
from governance.services import evidence_links
from governance.storage import Storage, StorageError
from tests.conftest import count_statements

HX = {"HX-Request": "true"}


def _is_full_page(html: str) -> bool:
    return "<html" in html and "</html>" in html


def _audit(action: str, object_id: Any) -> list[AuditLog]:
    return list(db.session.scalars(
        select(AuditLog).where(AuditLog.action == action, AuditLog.object_id == str(object_id))
        .order_by(AuditLog.seq)
    ))


def _new_revision(storage: Storage, evidence: Evidence, uploader: Any, data: bytes, *,
                  filename: str = "report-v2.pdf", content_type: str = "application/pdf") -> EvidenceRevision:
    db.session.refresh(evidence)  # requests run in sessions of their own: see what they committed
    key = evidence_service.object_key(evidence.id)
    stored = storage.put(key, data, content_type=content_type)
    upload = evidence_service.StoredUpload(storage.bucket, key, stored.version_id, len(data),
                                           hashlib.sha256(data).hexdigest(), content_type, filename)
    revision = evidence_service.add_revision(db.session(), evidence, upload, uploaded_by_id=uploader.id)
    db.session.commit()
    return revision


def _revision(evidence: Evidence, number: int) -> EvidenceRevision:
    db.session.expire_all()
    return db.session.scalars(select(EvidenceRevision).where(
        EvidenceRevision.evidence_id == evidence.id, EvidenceRevision.number == number)).one()


def _token(client: FlaskClient, csrf_token: Callable[[str], str], url: str = "/evidence") -> str:
    return csrf_token(client.get(url).get_data(as_text=True))


def _review(client: FlaskClient, token: str, evidence: Evidence, number: int, decision: str, comment: str = "",
            **kwargs: Any) -> Any:
    return client.post(f"/evidence/{evidence.id}/revisions/{number}/review",
                       data={"csrf_token": token, "decision": decision, "comment": comment}, **kwargs)


def _closed_store(storage: Storage) -> Storage:
    """A store client pointed at a port nothing listens on (the store is down)."""
    return Storage(f"127.0.0.1:{embedded.free_port()}", "nobody", "nothing", bucket=storage.bucket)


# --- the list ----------------------------------------------------------------------------------------


def test_list_filters_by_status_text_expiry_and_control(client, login_as, make_user, make_control,
                                                        make_evidence) -> None:
    login_as("auditor")
    engineer = make_user("engineer")
    control = make_control("GV-7", "Model documentation")
    soon = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    later = (datetime.now(UTC) + timedelta(days=200)).date().isoformat()
    access = make_evidence(engineer, b"access review", name="Quarterly access review", expires_on=soon,
                           period_start="2026-07-01", period_end="2026-09-30")
    pentest = make_evidence(engineer, b"pentest", name="Penetration test report", submit=False)
    card = make_evidence(engineer, b"card", name="Model card", control=control, expires_on=later,
                         description="Describes the scoring model")

    html = client.get("/evidence").get_data(as_text=True)
    for e in (access, pentest, card):
        assert f'id="evidence-{e.id}"' in html
    # the short hash shows, the full one is in its title; owner, size, period and freshness show too
    assert f'title="{access.sha256}">{access.sha256[:12]}…</code>' in html
    assert "Engineer" in html and "13 bytes" in html and "2026-07-01 \u2013 2026-09-30" in html
    assert "Expires in 10 days" in html and soon in html  # valid through its expiry day
    assert "No expiry date" in html and "Fresh" in html

    def ids(query: dict[str, str]) -> set[str]:
        body = client.get("/evidence", query_string=query, headers=HX).get_data(as_text=True)
        assert body.strip().startswith('<div id="evidence-results"') and not _is_full_page(body)
        return set(re.findall(r'id="evidence-([0-9a-f-]{36})"', body))

    assert ids({"status": "draft"}) == {str(pentest.id)}
    assert ids({"status": "in_review"}) == {str(access.id), str(card.id)}
    assert ids({"q": "access"}) == {str(access.id)}
    assert ids({"q": "scoring"}) == {str(card.id)}  # the description is searched too
    assert ids({"q": "report -penetration"}) == set()  # websearch syntax
    assert ids({"expiring": "1"}) == {str(access.id)}
    assert ids({"control": str(control.id)}) == {str(card.id)}
    assert ids({"status": "nonsense", "q": '"unbalanced & | ! (', "control": "not-a-uuid"}) == set()
    filtered = client.get(f"/evidence?control={control.id}").get_data(as_text=True)
    assert "GV-7" in filtered and "Show evidence of every control" in filtered


def test_list_pages_by_keyset(client, login_as, make_user, make_evidence, monkeypatch) -> None:
    login_as("compliance_officer")
    engineer = make_user("engineer")
    made = {str(make_evidence(engineer, f"item {i}".encode(), name=f"Keyset item {i}").id) for i in range(5)}
    monkeypatch.setattr(evidence_routes, "PAGE_SIZE", 2)
    seen: list[str] = []
    url: str | None = "/evidence"
    with count_statements() as statements:
        while url:
            html = client.get(url, headers=HX if seen else {}).get_data(as_text=True)
            page = re.findall(r'id="evidence-([0-9a-f-]{36})"', html)
            assert 1 <= len(page) <= 2
            seen += page
            link = re.search(r'<a href="([^"]+)" rel="next"', html)
            url = link.group(1).replace("&amp;", "&") if link else None
    assert len(seen) == 5 and set(seen) == made
    assert not any("OFFSET" in s.upper() for s in statements)
    # A malformed cursor is ignored, never a failure.
    assert client.get("/evidence?after_created=yesterday&after_id=x").status_code == 200


# --- the evidence page -----------------------------------------------------------------------------------


def test_detail_shows_revisions_hashes_links_and_reviews_side_by_side(
    client, login_as, make_user, make_control, make_evidence, storage, csrf_token,
) -> None:
    auditor = login_as("auditor")
    engineer = make_user("engineer")
    control = make_control("AC-2", "Account management")
    evidence = make_evidence(engineer, b"first version", control=control, filename="access-q3.pdf",
                             description="Who had access, and who approved it.", expires_on="2099-12-31")
    second = _new_revision(storage, evidence, engineer, b"second version", filename="access-q3-v2.csv",
                           content_type="text/csv")
    first = _revision(evidence, 1)
    url = f"/evidence/{evidence.id}"
    token = _token(client, csrf_token, url)

    # A decision on the older revision leaves the evidence's status (its current revision's) alone.
    assert _review(client, token, evidence, 1, "approve", "Matches the IdP export").status_code == 303
    db.session.expire_all()
    assert evidence.status == EvidenceStatus.IN_REVIEW
    assert _review(client, token, evidence, 2, "reject", "Missing the contractors' accounts").status_code == 303
    db.session.expire_all()
    assert evidence.status == EvidenceStatus.REJECTED

    html = client.get(url).get_data(as_text=True)
    panels = re.search(r'<div class="evidence-panels">(.*)</div>\s*</main>', html, re.S)
    assert panels is not None
    body = panels.group(1)
    for revision in (first, second):
        assert revision.sha256 in body and revision.version_id in body
        assert f'href="/evidence/{evidence.id}/revisions/{revision.number}/download"' in body
    assert "access-q3.pdf" in body and "access-q3-v2.csv" in body and "text/csv" in body
    assert "Revision 2 <span class=\"muted\">(current)</span>" in body
    # links and the review history sit beside the revisions
    assert body.index('id="revisions-panel"') < body.index('id="evidence-links"') < body.index('id="review-history"')
    assert f'href="/controls/{control.id}"' in body and "AC-2" in body
    history = body[body.index('id="review-history"'):]
    assert history.index("Missing the contractors") < history.index("Matches the IdP export")  # newest first
    assert auditor.name in history
    assert "Who had access, and who approved it." in html and "Fresh" in html
    assert " style=" not in html and "<style" not in html and re.search(r"<script\b(?![^>]*src=)", html) is None
    # the auditor may review (no revision is left in review now) but not link or upload
    assert "link-targets" not in html and "Upload new revision" not in html
    assert client.get(f"/evidence/{uuid.uuid4()}").status_code == 404


def test_deleted_evidence_is_not_found(client, login_as, make_user, make_evidence) -> None:
    login_as("auditor")
    evidence = make_evidence(make_user("engineer"))
    evidence.deleted_at = datetime.now(UTC)
    db.session.commit()
    assert client.get(f"/evidence/{evidence.id}").status_code == 404
    assert client.get(f"/evidence/{evidence.id}/revisions/1/download").status_code == 404


def test_engineer_sees_link_and_upload_controls_but_no_review_form(client, login_as, make_user, make_evidence,
                                                                    storage) -> None:
    login_as("engineer")
    evidence = make_evidence(make_user("engineer"))
    html = client.get(f"/evidence/{evidence.id}").get_data(as_text=True)
    assert f'action="/evidence/{evidence.id}/link-targets"' in html
    assert 'id="upload-revision"' in html
    assert "review-form" not in html


def test_page_statement_counts_do_not_grow_with_rows_revisions_or_links(
    client, login_as, make_user, make_control, make_evidence, storage,
) -> None:
    login_as("auditor")
    engineer, reviewer = make_user("engineer"), make_user("auditor")
    few = make_evidence(engineer, b"few", name="Few parts", control=make_control("F-1"))
    many = make_evidence(engineer, b"many", name="Many parts", control=make_control("M-1"))
    for i in range(5):
        _new_revision(storage, many, engineer, f"revision {i}".encode())
        evidence_links.link(db.session(), many, "control", make_control(f"M-{i + 2}").id, linked_by_id=engineer.id)
    from governance.services import evidence_review

    for number in (1, 2, 3):
        evidence_review.review_revision(db.session(), storage, many, _revision(many, number), reviewer_id=reviewer.id,
                                        decision="reject", comment=f"no {number}", lock_days=1, lock_mode="GOVERNANCE")
    db.session.commit()

    def statements(url: str) -> int:
        with count_statements() as seen:
            assert client.get(url).status_code == 200
        return len(seen)

    client.get("/evidence")  # the first request after signing in also loads the access rules
    detail_few, detail_many = statements(f"/evidence/{few.id}"), statements(f"/evidence/{many.id}")
    list_few = statements("/evidence?q=parts")
    for i in range(25):
        make_evidence(engineer, f"bulk {i}".encode(), name=f"Bulk parts {i}")
    list_many = statements("/evidence?q=parts")
    assert detail_few == detail_many and list_few == list_many, (detail_few, detail_many, list_few, list_many)
    assert detail_many <= 10 and list_many <= 8


def test_control_page_statement_count_does_not_grow_with_its_evidence(
    client, login_as, make_user, make_control, make_evidence,
) -> None:
    login_as("auditor")
    engineer = make_user("engineer")
    lonely, busy = make_control("L-1", "Lonely"), make_control("B-1", "Busy")
    make_evidence(engineer, b"one", name="Only one", control=lonely)
    for i in range(12):
        make_evidence(engineer, f"busy {i}".encode(), name=f"Busy evidence {i}", control=busy)

    urls = [f"/controls/{lonely.id}", f"/controls/{busy.id}"]
    client.get(urls[0])  # the first request after signing in also loads the access rules
    counts = []
    for url, expected in zip(urls, ("Only one", "Busy evidence 11"), strict=True):
        with count_statements() as seen:
            html = client.get(url).get_data(as_text=True)
        counts.append(len(seen))
        assert expected in html
    assert counts[0] == counts[1], counts


# --- download --------------------------------------------------------------------------------------------


def test_download_streams_an_older_revision_as_an_attachment_audited_first(
    client, login_as, make_user, make_evidence, storage,
) -> None:
    auditor = login_as("auditor")
    engineer = make_user("engineer")
    evidence = make_evidence(engineer, b"<html><script>alert(1)</script></html>", filename="page.html",
                             content_type="text/html")
    second = _new_revision(storage, evidence, engineer, b"second bytes", filename="Prüfbericht 2026 \"final\".pdf")
    first = _revision(evidence, 1)

    response = client.get(f"/evidence/{evidence.id}/revisions/1/download", buffered=False)
    assert response.status_code == 200
    # The audit entry is in before a byte of the body is read.
    [entry] = _audit("evidence.download", evidence.id)
    assert entry.actor_id == auditor.id and entry.outcome == AuditOutcome.SUCCESS
    assert entry.details["revision"] == 1 and entry.details["sha256"] == first.sha256
    assert entry.details["version_id"] == first.version_id
    body = b"".join(response.response)
    response.close()
    assert body == b"<html><script>alert(1)</script></html>"
    assert hashlib.sha256(body).hexdigest() == first.sha256
    assert response.headers["Content-Disposition"] == 'attachment; filename="page.html"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["Content-Length"] == str(len(body))
    assert response.headers["Cache-Control"] == "no-store"

    latest = client.get(f"/evidence/{evidence.id}/revisions/2/download")
    assert latest.data == b"second bytes" and hashlib.sha256(latest.data).hexdigest() == second.sha256
    assert latest.headers["Content-Disposition"] == (
        "attachment; filename=\"Prufbericht 2026 _final_.pdf\"; "
        "filename*=UTF-8''Pr%C3%BCfbericht%202026%20%22final%22.pdf")
    assert sorted(e.details["revision"] for e in _audit("evidence.download", evidence.id)) == [1, 2]
    assert client.get(f"/evidence/{evidence.id}/revisions/3/download").status_code == 404
    assert client.get(f"/evidence/{evidence.id}/revisions/{2**40}/download").status_code == 404
    # HEAD answers the headers without streaming (or auditing) a download.
    head = client.head(f"/evidence/{evidence.id}/revisions/1/download")
    assert head.status_code == 200 and head.data == b"" and head.headers["Content-Length"] == str(len(body))
    assert head.headers["Content-Disposition"] == 'attachment; filename="page.html"'
    assert len(_audit("evidence.download", evidence.id)) == 2


def test_a_delete_marker_does_not_hide_a_revision_but_a_deleted_version_is_a_clear_409(
    client, login_as, make_user, make_evidence, storage,
) -> None:
    login_as("auditor")
    evidence = make_evidence(make_user("engineer"), b"kept")
    revision = _revision(evidence, 1)
    url = f"/evidence/{evidence.id}/revisions/1/download"
    storage.delete(revision.object_key)  # a plain delete: only a marker on a versioned bucket
    assert client.get(url).data == b"kept"

    storage.delete(revision.object_key, revision.version_id)  # the version itself, behind our back
    response = client.get(url)
    assert response.status_code == 409
    assert "no longer in the evidence store" in response.get_data(as_text=True)
    failed = [e for e in _audit("evidence.download", evidence.id) if e.outcome == AuditOutcome.ERROR]
    assert [e.details["error"] for e in failed] == ["object missing"]
    htmx = client.get(url, headers=HX)
    assert htmx.status_code == 409 and htmx.headers["HX-Retarget"] == "#flash"


def test_when_the_store_is_down_the_page_renders_and_downloads_and_approvals_are_503(
    app, client, login_as, make_user, make_evidence, storage, csrf_token, monkeypatch,
) -> None:
    login_as("auditor")
    evidence = make_evidence(make_user("engineer"), b"safe in the database")
    url = f"/evidence/{evidence.id}"
    token = _token(client, csrf_token, url)
    monkeypatch.setitem(app.extensions, "storage", _closed_store(storage))

    page = client.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="store-down"' in html and "downloads and uploads are unavailable" in html
    assert evidence.sha256 in html and "/download" not in html

    download = client.get(f"{url}/revisions/1/download")
    assert download.status_code == 503
    assert "The evidence store could not be reached" in download.get_data(as_text=True)

    refused = _review(client, token, evidence, 1, "approve", "Looks right")
    assert refused.status_code == 503 and "could not be reached" in refused.get_data(as_text=True)
    revision = _revision(evidence, 1)
    assert revision.status == EvidenceStatus.IN_REVIEW and revision.reviewed_at is None
    assert db.session.scalars(select(EvidenceReview)).all() == [] and _audit("evidence.review", evidence.id) == []
    # A rejection needs no lock: it still works.
    assert _review(client, token, evidence, 1, "reject", "Wrong quarter").status_code == 303
    assert _revision(evidence, 1).status == EvidenceStatus.REJECTED


# --- review --------------------------------------------------------------------------------------------


def test_approval_records_the_decision_locks_the_version_and_is_audited(
    app, client, login_as, make_user, make_evidence, storage, csrf_token,
) -> None:
    auditor = login_as("auditor")
    evidence = make_evidence(make_user("engineer"), b"approve me")
    token = _token(client, csrf_token, f"/evidence/{evidence.id}")
    before = datetime.now(UTC)
    response = _review(client, token, evidence, 1, "approve", "Checked against the source system")
    assert response.status_code == 303 and response.headers["Location"] == f"/evidence/{evidence.id}"

    revision = _revision(evidence, 1)
    assert revision.status == EvidenceStatus.APPROVED and evidence.status == EvidenceStatus.APPROVED
    assert revision.reviewed_by_id == auditor.id and revision.reviewed_at >= before - timedelta(seconds=5)
    assert revision.review_comment == "Checked against the source system"
    lock_days = app.config["SETTINGS"].evidence_lock_days
    assert revision.locked_until is not None
    assert abs(revision.locked_until - (revision.reviewed_at + timedelta(days=lock_days))) < timedelta(seconds=1)
    [review] = db.session.scalars(select(EvidenceReview)).all()
    assert (review.revision_id, review.reviewer_id, review.decision, review.comment) == (
        revision.id, auditor.id, EvidenceStatus.APPROVED, "Checked against the source system")
    [entry] = _audit("evidence.review", evidence.id)
    assert entry.actor_id == auditor.id
    assert entry.details["before"]["revision_status"] == "in_review"
    assert entry.details["after"]["revision_status"] == "approved"
    assert entry.details["after"]["evidence_status"] == "approved"
    assert entry.details["version_id"] == revision.version_id
    # The store itself refuses to delete the approved version.
    with pytest.raises(StorageError):
        storage.delete(revision.object_key, revision.version_id)
    page = client.get(f"/evidence/{evidence.id}").get_data(as_text=True)
    assert "approved." in page and "locked until" in page.lower()


def test_a_rejection_needs_a_comment_beside_the_field(client, login_as, make_user, make_evidence,
                                                      csrf_token) -> None:
    login_as("auditor")
    evidence = make_evidence(make_user("engineer"))
    token = _token(client, csrf_token, f"/evidence/{evidence.id}")
    for headers in ({}, HX):
        response = _review(client, token, evidence, 1, "reject", "   ", headers=headers)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        error = re.search(r'<p class="field-error" id="comment-r1-error">([^<]+)</p>', html)
        assert error is not None and "Say why" in error.group(1)
        assert 'aria-invalid="true"' in html
    assert html.strip().startswith('<section id="revisions-panel"')  # the htmx one: the panel alone
    assert _revision(evidence, 1).status == EvidenceStatus.IN_REVIEW
    assert _audit("evidence.review", evidence.id) == []
    bad = _review(client, token, evidence, 1, "maybe", "hmm")
    assert bad.status_code == 422 and "Choose Approve or Reject" in bad.get_data(as_text=True)

    assert _review(client, token, evidence, 1, "reject", "Wrong period").status_code == 303
    revision = _revision(evidence, 1)
    assert revision.status == EvidenceStatus.REJECTED and revision.review_comment == "Wrong period"
    assert evidence.status == EvidenceStatus.REJECTED


def test_htmx_review_swaps_the_panel_and_updates_history_and_status_out_of_band(
    client, login_as, make_user, make_evidence, csrf_token,
) -> None:
    login_as("auditor")
    evidence = make_evidence(make_user("engineer"))
    token = _token(client, csrf_token, f"/evidence/{evidence.id}")
    response = _review(client, token, evidence, 1, "approve", "", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and not _is_full_page(html)
    assert html.strip().startswith('<section id="revisions-panel"')
    assert re.search(r'<section id="review-history"[^>]*hx-swap-oob="true"', html)
    assert re.search(r'<dl id="evidence-facts"[^>]*hx-swap-oob="true"', html)
    assert "Revision 1 approved." in html
    [review] = db.session.scalars(select(EvidenceReview)).all()
    assert review.comment == ""  # an approval may go without a comment


def test_reviewing_your_own_upload_is_refused(client, login_as, make_evidence, csrf_token) -> None:
    admin = login_as("admin")
    evidence = make_evidence(admin, b"mine")
    page = client.get(f"/evidence/{evidence.id}").get_data(as_text=True)
    assert "another reviewer decides on it" in page and "review-form" not in page
    response = _review(client, csrf_token(page), evidence, 1, "approve", "Self-approved")
    assert response.status_code == 409
    assert "You uploaded revision 1, so you cannot review it" in response.get_data(as_text=True)
    assert _revision(evidence, 1).status == EvidenceStatus.IN_REVIEW


def test_deciding_twice_or_deciding_a_draft_is_409_and_submit_sends_a_draft_to_review(
    client, login_as, make_user, make_evidence, csrf_token, app,
) -> None:
    from tests.conftest import IsolatedClient

    login_as("auditor")
    engineer = make_user("engineer")
    evidence = make_evidence(engineer, submit=False)
    token = _token(client, csrf_token, f"/evidence/{evidence.id}")
    draft = _review(client, token, evidence, 1, "approve")
    assert draft.status_code == 409 and "is a draft" in draft.get_data(as_text=True)

    # The engineer submits it (audited) ...
    other = IsolatedClient(app, app.response_class, use_cookies=True)
    login_page = other.get("/login").get_data(as_text=True)
    from tests.conftest import TEST_PASSWORD

    assert other.post("/login", data={"email": engineer.email, "password": TEST_PASSWORD,
                                      "csrf_token": csrf_token(login_page)}).status_code == 303
    engineer_token = _token(other, csrf_token, f"/evidence/{evidence.id}")
    assert other.post(f"/evidence/{evidence.id}/submit", data={"csrf_token": engineer_token}).status_code == 303
    assert _revision(evidence, 1).status == EvidenceStatus.IN_REVIEW and evidence.status == EvidenceStatus.IN_REVIEW
    [submitted] = _audit("evidence.submit", evidence.id)
    assert submitted.actor_id == engineer.id and submitted.details["after"]["revision_status"] == "in_review"
    again = other.post(f"/evidence/{evidence.id}/submit", data={"csrf_token": engineer_token})
    assert again.status_code == 409 and "not a draft" in again.get_data(as_text=True)

    # ... the auditor decides once; a second decision is refused.
    assert _review(client, token, evidence, 1, "approve").status_code == 303
    twice = _review(client, token, evidence, 1, "reject", "Changed my mind")
    assert twice.status_code == 409 and "already been approved" in twice.get_data(as_text=True)
    assert _revision(evidence, 1).status == EvidenceStatus.APPROVED
    assert len(_audit("evidence.review", evidence.id)) == 1


def test_a_new_revision_after_approval_goes_back_to_review_and_the_approved_one_stays(
    client, login_as, make_user, make_evidence, storage, csrf_token,
) -> None:
    login_as("auditor")
    engineer = make_user("engineer")
    evidence = make_evidence(engineer, b"version one")
    token = _token(client, csrf_token, f"/evidence/{evidence.id}")
    assert _review(client, token, evidence, 1, "approve", "Good").status_code == 303
    _new_revision(storage, evidence, engineer, b"version two")
    db.session.expire_all()
    assert evidence.status == EvidenceStatus.IN_REVIEW and evidence.revision_number == 2
    first = _revision(evidence, 1)
    assert first.status == EvidenceStatus.APPROVED and first.locked_until is not None
    html = client.get(f"/evidence/{evidence.id}").get_data(as_text=True)
    assert f'action="/evidence/{evidence.id}/revisions/2/review"' in html
    assert f'action="/evidence/{evidence.id}/revisions/1/review"' not in html
    assert client.get(f"/evidence/{evidence.id}/revisions/1/download").data == b"version one"


# --- links ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", ["_", "__init__", "the", "a:* & !!", '"unbalanced & | ! (', "\x00nul", "ñandú 1.2",
                               "x" * 5000, "%", "'; DROP TABLE evidence; --"])
def test_malformed_searches_never_fail(client, login_as, make_user, make_control, make_evidence, q) -> None:
    login_as("admin")
    control = make_control()
    evidence = make_evidence(make_user("engineer"), name="Search target")
    urls = ["/evidence", f"/evidence/{evidence.id}/link-targets", f"/controls/{control.id}/evidence/candidates"]
    for url in urls:
        for target_type in ("control", "check", "task", "planet"):
            response = client.get(url, query_string={"q": q, "type": target_type}, headers=HX)
            assert response.status_code == 200, (url, target_type, q)


def _check_and_task(control: Any) -> tuple[Check, Task]:
    probe = Probe(name=f"probe-{uuid.uuid4().hex[:6]}", kind="http")
    db.session.add(probe)
    db.session.flush()
    check = Check(probe_id=probe.id, control_id=control.id, name="TLS certificate not expiring", severity=Severity.HIGH)
    task = Task(title="Renew the vendor SOC 2 report", status=TaskStatus.OPEN)
    db.session.add_all([check, task])
    db.session.commit()
    return check, task


def test_links_are_added_and_removed_from_the_evidence_side(
    client, login_as, make_user, make_control, make_evidence, csrf_token,
) -> None:
    engineer = login_as("engineer")
    evidence = make_evidence(make_user("engineer"), name="Certificate inventory")
    target = make_control("SC-8", "Transmission confidentiality")
    make_control("SC-9", "Unrelated control")
    check, task = _check_and_task(target)
    url = f"/evidence/{evidence.id}"
    token = _token(client, csrf_token, url)

    options = client.get(f"{url}/link-targets", query_string={"type": "control", "q": "transmiss"}, headers=HX)
    html = options.get_data(as_text=True)
    assert options.status_code == 200 and html.strip().startswith('<div id="link-targets"')
    assert f'value="{target.id}"' in html and "SC-9" not in html
    assert "SC-8" in client.get(f"{url}/link-targets?type=control&q=SC-8", headers=HX).get_data(as_text=True)
    assert "TLS certificate" in client.get(f"{url}/link-targets?type=check&q=tls", headers=HX).get_data(as_text=True)
    assert "Renew the vendor" in client.get(f"{url}/link-targets?type=task&q=soc 2",
                                            headers=HX).get_data(as_text=True)
    # Without JS the search is a page of its own whose forms post and redirect.
    standalone = client.get(f"{url}/link-targets?type=control&q=transmiss").get_data(as_text=True)
    assert _is_full_page(standalone) and "hx-post" not in standalone.split('id="link-targets"')[1]

    added = client.post(f"{url}/links", data={"csrf_token": token, "type": "control", "target_id": str(target.id)},
                        headers=HX)
    panel = added.get_data(as_text=True)
    assert added.status_code == 200 and panel.strip().startswith('<section id="evidence-links"')
    assert f'href="/controls/{target.id}"' in panel and "Linked to SC-8" in panel
    assert client.post(f"{url}/links", data={"csrf_token": token, "type": "check",
                                             "target_id": str(check.id)}).status_code == 303
    assert client.post(f"{url}/links", data={"csrf_token": token, "type": "task",
                                             "target_id": str(task.id)}).status_code == 303
    page = client.get(url).get_data(as_text=True)
    assert "TLS certificate not expiring" in page and "Renew the vendor SOC 2 report" in page
    # an already linked target is no longer offered
    assert f'value="{target.id}"' not in client.get(f"{url}/link-targets?type=control&q=SC-8",
                                                    headers=HX).get_data(as_text=True)
    links = db.session.scalars(select(EvidenceLink).where(EvidenceLink.evidence_id == evidence.id)).all()
    assert len(links) == 3 and all(link.linked_by_id == engineer.id for link in links)
    targets = sorted(e.details["target_type"] for e in _audit("evidence.link", evidence.id))
    assert targets == ["check", "control", "task"]

    bad = client.post(f"{url}/links", data={"csrf_token": token, "type": "control", "target_id": str(uuid.uuid4())},
                      headers=HX)
    assert bad.status_code == 422 and "does not exist" in bad.get_data(as_text=True)
    junk = client.post(f"{url}/links", data={"csrf_token": token, "type": "planet", "target_id": "x"})
    assert junk.status_code == 422 and "Choose a control, check or task" in junk.get_data(as_text=True)

    control_link = next(link for link in links if link.control_id == target.id)
    removed = client.post(f"{url}/links/{control_link.id}/delete", data={"csrf_token": token}, headers=HX)
    assert removed.status_code == 200 and f'href="/controls/{target.id}"' not in removed.get_data(as_text=True)
    [unlinked] = _audit("evidence.unlink", evidence.id)
    assert unlinked.details["target_id"] == str(target.id) and unlinked.actor_id == engineer.id
    assert client.post(f"{url}/links/{control_link.id}/delete", data={"csrf_token": token}).status_code == 404


def test_evidence_is_attached_and_detached_from_the_control_side(
    client, login_as, make_user, make_control, make_evidence, csrf_token,
) -> None:
    engineer = login_as("engineer")
    control = make_control("GV-3", "Roles are documented")
    own = make_evidence(make_user("engineer"), name="RACI matrix", control=control, expires_on="2020-01-01")
    other = make_evidence(make_user("engineer"), name="Organisation chart")
    page_url = f"/controls/{control.id}"
    page = client.get(page_url).get_data(as_text=True)
    section = page[page.index('id="control-evidence"'):]
    assert f'href="/evidence/{own.id}"' in section and "In review" in section and "Expired" in section
    assert "Upload evidence" in section  # the engineer may upload
    assert "Organisation chart" not in section
    token = csrf_token(page)

    found = client.get(f"{page_url}/evidence/candidates?q=organ", headers=HX).get_data(as_text=True)
    assert found.strip().startswith('<div id="evidence-candidates"')
    assert f'value="{other.id}"' in found and "RACI" not in found

    attached = client.post(f"{page_url}/evidence", data={"csrf_token": token, "evidence_id": str(other.id)},
                           headers=HX)
    html = attached.get_data(as_text=True)
    assert attached.status_code == 200 and html.strip().startswith('<section aria-labelledby="evidence-heading"')
    assert f'href="/evidence/{other.id}"' in html and "Attached Organisation chart" in html
    [linked] = _audit("evidence.link", other.id)
    assert linked.actor_id == engineer.id and linked.details["target_id"] == str(control.id)

    detached = client.post(f"{page_url}/evidence/{own.id}/delete", data={"csrf_token": token})
    assert detached.status_code == 303 and detached.headers["Location"].startswith(page_url)
    after = client.get(page_url).get_data(as_text=True)
    assert f'href="/evidence/{own.id}"' not in after and f'href="/evidence/{other.id}"' in after
    assert [e.details["target_id"] for e in _audit("evidence.unlink", own.id)] == [str(control.id)]
    assert client.post(f"{page_url}/evidence/{own.id}/delete", data={"csrf_token": token}).status_code == 404
    missing = client.post(f"{page_url}/evidence", data={"csrf_token": token, "evidence_id": "nope"}, headers=HX)
    assert missing.status_code == 422 and "Choose evidence" in missing.get_data(as_text=True)


def test_an_auditor_sees_the_control_evidence_without_link_controls(client, login_as, make_user, make_control,
                                                                     make_evidence) -> None:
    login_as("auditor")
    control = make_control("MAP-1", "Context is established")
    evidence = make_evidence(make_user("engineer"), name="Context memo", control=control)
    html = client.get(f"/controls/{control.id}").get_data(as_text=True)
    section = html[html.index('id="control-evidence"'):]
    assert f'href="/evidence/{evidence.id}"' in section
    assert "candidates" not in section and "Detach" not in section and "Upload evidence" not in section
