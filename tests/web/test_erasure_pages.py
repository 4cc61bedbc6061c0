"""The erasure pages (/admin/erasure): who may see and do what, the request form's 422s, the two-person
rule on the page, execution and its receipt (readable and JSON), and the audit page before and after:
a user's action shows their name there although the row holds none, then "erased person"."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import select, text

from extensions import db
from governance import context
from governance.models.audit import AuditLog
from governance.models.enums import ErasureStatus
from governance.models.lifecycle import ErasureRequest
from governance.services import audit, erasure, identity
from tests.conftest import TEST_PASSWORD, IsolatedClient, count_statements

HX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def ledger_bucket(app: Any, override_settings: Any, s3_server: Any) -> Any:
    """A backup bucket of this test's own for the erasure ledger, removed afterwards."""
    from governance.storage import Storage

    settings = override_settings(backup_bucket="erasure-web-" + uuid.uuid4().hex[:10])
    yield settings
    store = Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket=settings.backup_bucket)
    if store.client.bucket_exists(settings.backup_bucket):
        store.purge_bucket()


def _form(client: Any, url: str, csrf_token: Any) -> str:
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    return str(csrf_token(page.get_data(as_text=True)))


def _second_client(app: Any, csrf_token: Any, user: Any) -> Any:
    """Another browser, signed in as `user`."""
    other = IsolatedClient(app, app.response_class, use_cookies=True)
    token = _form(other, "/login", csrf_token)
    response = other.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token})
    assert response.status_code == 303
    return other


@pytest.fixture
def subject(make_user: Any) -> Any:
    return make_user("engineer", email=f"ivo.pagewright-{uuid.uuid4().hex[:6]}@example.test")


def _request(client: Any, csrf_token: Any, email: str, reason: str = "Asked by letter of 2026-11-01",
             **kwargs: Any) -> Any:
    token = _form(client, "/admin/erasure/new", csrf_token)
    return client.post("/admin/erasure/new", data={"email": email, "reason": reason, "csrf_token": token}, **kwargs)


# --- who may see and do what ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["auditor", "engineer"])
def test_auditors_and_engineers_are_refused(client: Any, login_as: Any, role: str) -> None:
    login_as(role)
    for url in ("/admin/erasure", "/admin/erasure/new", f"/admin/erasure/{uuid.uuid4()}"):
        assert client.get(url).status_code == 403, url


def test_a_compliance_officer_requests_but_cannot_decide(client: Any, login_as: Any, csrf_token: Any,
                                                        subject: Any) -> None:
    login_as("compliance_officer")
    index = client.get("/admin/erasure")
    assert index.status_code == 200 and "Request erasure" in index.get_data(as_text=True)
    assert 'href="/admin/erasure" aria-current="page"' in index.get_data(as_text=True)  # the ops subnav
    response = _request(client, csrf_token, subject.email.upper())
    assert response.status_code == 303
    request_id = response.headers["Location"].rsplit("/", 1)[-1]
    page = client.get(f"/admin/erasure/{request_id}").get_data(as_text=True)
    assert "Requested" in page and subject.email in page and "Approve" not in page
    assert "Waiting for an administrator" in page
    token = csrf_token(page)
    assert client.post(f"/admin/erasure/{request_id}/decide",
                       data={"action": "approve", "csrf_token": token}).status_code == 403
    assert client.post(f"/admin/erasure/{request_id}/execute", data={"csrf_token": token}).status_code == 403
    assert client.get("/admin/erasure").get_data(as_text=True).count(subject.email) == 1


def test_the_request_form_answers_422_beside_the_field_and_keeps_the_input(client: Any, login_as: Any,
                                                                           csrf_token: Any, subject: Any) -> None:
    officer = login_as("compliance_officer")
    unknown = _request(client, csrf_token, "nobody-at-all@example.test", "My reason stays")
    html = unknown.get_data(as_text=True)
    assert unknown.status_code == 422
    assert re.search(r'id="email-error">No user has this e-mail address\.', html)
    assert 'value="nobody-at-all@example.test"' in html and "My reason stays" in html
    empty = _request(client, csrf_token, subject.email, "")
    assert empty.status_code == 422 and 'id="reason-error"' in empty.get_data(as_text=True)
    yourself = _request(client, csrf_token, officer.email)
    assert yourself.status_code == 422 and "your own erasure" in yourself.get_data(as_text=True)
    assert _request(client, csrf_token, subject.email).status_code == 303
    again = _request(client, csrf_token, subject.email, headers=HX)
    fragment = again.get_data(as_text=True)
    assert again.status_code == 422 and "<html" not in fragment and "already open" in fragment
    assert fragment.lstrip().startswith('<form id="erasure-request-form"')


def test_posts_without_csrf_are_refused(client: Any, login_as: Any, subject: Any) -> None:
    login_as("admin")
    assert client.post("/admin/erasure/new", data={"email": subject.email, "reason": "x"}).status_code == 400
    assert db.session.scalars(select(ErasureRequest)).all() == []


# --- the whole journey, and the audit page before and after ----------------------------------------------------------


def test_request_approve_execute_and_the_receipt(app: Any, client: Any, login_as: Any, make_user: Any,
                                                  csrf_token: Any, subject: Any) -> None:
    requester = login_as("admin")
    email = subject.email
    # The subject acts once, from a browser of their own: the entry holds no plaintext.
    theirs = _second_client(app, csrf_token, subject)
    assert theirs.get("/admin/users").status_code == 403
    denied = db.session.scalars(select(AuditLog).where(AuditLog.actor_id == subject.id,
                                                       AuditLog.action == "access.denied")).one()
    raw = db.session.execute(text("SELECT actor_name, ip, user_agent, details::text FROM audit_logs WHERE id = :id"),
                             {"id": denied.id}).one()
    assert raw[0] == f"user:{subject.id.hex[:8]}" and raw[1] is None and raw[2] is None
    assert email not in raw[3] and "127.0.0.1" not in raw[3]

    decider = make_user("admin")
    auditor = make_user("auditor")
    audit_view = _second_client(app, csrf_token, auditor)
    entry_url = f"/audit/{denied.id}"
    before = audit_view.get("/audit", query_string={"action": "access.denied"}).get_data(as_text=True)
    assert f"<td>{email}</td>" in before and "<td>127.0.0.1</td>" in before
    assert email in audit_view.get(entry_url).get_data(as_text=True)

    created = _request(client, csrf_token, email)
    request_id = created.headers["Location"].rsplit("/", 1)[-1]
    # The requester may not approve their own request: 422 with the reason on the page.
    page = client.get(f"/admin/erasure/{request_id}").get_data(as_text=True)
    mine = client.post(f"/admin/erasure/{request_id}/decide",
                       data={"action": "approve", "csrf_token": csrf_token(page)})
    assert mine.status_code == 422 and "another administrator decides it" in mine.get_data(as_text=True)
    assert requester.id != decider.id

    second = _second_client(app, csrf_token, decider)
    page = second.get(f"/admin/erasure/{request_id}").get_data(as_text=True)
    token = csrf_token(page)
    no_comment = second.post(f"/admin/erasure/{request_id}/decide", data={"action": "reject", "csrf_token": token},
                             headers=HX)
    assert no_comment.status_code == 422 and 'id="erasure-comment-error"' in no_comment.get_data(as_text=True)
    assert "<html" not in no_comment.get_data(as_text=True)
    approved = second.post(f"/admin/erasure/{request_id}/decide",
                           data={"action": "approve", "comment": "Identity checked", "csrf_token": token}, headers=HX)
    assert approved.status_code == 204 and approved.headers["HX-Location"] == f"/admin/erasure/{request_id}"
    page = second.get(f"/admin/erasure/{request_id}").get_data(as_text=True)
    assert "Execute the erasure" in page
    executed = second.post(f"/admin/erasure/{request_id}/execute", data={"csrf_token": csrf_token(page)})
    assert executed.status_code == 303 and executed.headers["Location"] == f"/admin/erasure/{request_id}/receipt"
    again = second.post(f"/admin/erasure/{request_id}/execute", data={"csrf_token": csrf_token(page)})
    assert again.status_code == 422 and "already executed" in again.get_data(as_text=True)

    receipt_page = second.get(f"/admin/erasure/{request_id}/receipt").get_data(as_text=True)
    found = db.session.get(ErasureRequest, uuid.UUID(request_id))
    assert found is not None and found.status == ErasureStatus.EXECUTED
    for table in ("users", "user_sessions", "login_attempts", "notifications", "person_keys", "audit_logs"):
        assert f"<code>{table}" in receipt_page, table
    assert "backups" in receipt_page and found.receipt_sha256 in receipt_page
    assert email not in receipt_page
    download = second.get(f"/admin/erasure/{request_id}/receipt.json")
    assert download.mimetype == "application/json" and "attachment" in download.headers["Content-Disposition"]
    assert hashlib.sha256(download.get_data()).hexdigest() == found.receipt_sha256
    assert json.loads(download.get_data())["subject_id"] == str(subject.id)
    listing = second.get("/admin/erasure").get_data(as_text=True)
    assert "Erased user" in listing and email not in listing

    # The audit page: the entry is still there, its actor now an erased person.
    after = audit_view.get("/audit", query_string={"action": "access.denied"}).get_data(as_text=True)
    assert email not in after and "erased person" in after
    detail = audit_view.get(entry_url).get_data(as_text=True)
    assert email not in detail and "key destroyed" in detail
    assert theirs.get("/").status_code in (302, 401)  # signed out: the session is gone


def test_the_audit_page_reads_sealed_rows_with_one_statement_more_at_any_count(app: Any, client: Any,
                                                                             login_as: Any, make_user: Any) -> None:
    login_as("auditor")
    people = [make_user("engineer") for _ in range(12)]

    def write(n: int) -> None:
        for person in people[:n]:
            with context.acting_as(context.ActionContext(actor_id=person.id, actor_name=person.email, ip="192.0.2.9")):
                audit.record(db.session, "bulk.sealed", object_type="task")
        db.session.commit()

    def statements() -> tuple[int, str]:
        with count_statements() as seen:
            response = client.get("/audit", query_string={"action": "bulk.sealed"})
        assert response.status_code == 200
        return len(seen), response.get_data(as_text=True)

    client.get("/audit")  # the first request after signing in also loads the access rules
    write(2)
    few, html = statements()
    assert all(p.email in html for p in people[:2])
    write(12)
    many, html = statements()
    assert all(p.email in html for p in people) and many == few
    with count_statements() as plain:
        assert client.get("/audit", query_string={"action": "no.such.action"}).status_code == 200
    assert few == len(plain) + 1  # the keys of the page, in one statement


def test_the_cli_lists_requests_and_prints_a_receipt(app: Any, db_session: Any, make_user: Any,
                                                     ledger_bucket: Any) -> None:
    subject = make_user("engineer")
    email = subject.email
    officer, admin, admin2 = make_user("compliance_officer"), make_user("admin"), make_user("admin")
    found = erasure.request(db_session, subject.id, "Asked", officer.id)
    erasure.approve(db_session, found.id, admin.id)
    runner = app.test_cli_runner()
    early = runner.invoke(args=["erasure", "receipt", str(found.id)])
    assert early.exit_code != 0 and "no receipt yet" in early.output
    erasure.execute(db_session, found.id, admin2.id, settings=ledger_bucket)
    listed = runner.invoke(args=["erasure", "list"])
    assert listed.exit_code == 0 and str(found.id) in listed.output and "executed" in listed.output
    assert email not in listed.output
    printed = runner.invoke(args=["erasure", "receipt", str(found.id)])
    assert printed.exit_code == 0, printed.output
    body = printed.stdout.strip().splitlines()[0]
    assert hashlib.sha256(body.encode()).hexdigest() == found.receipt_sha256
    assert runner.invoke(args=["erasure", "receipt", "not-a-uuid"]).exit_code == 2
    assert identity.find_user_by_email(db_session, email) is None
