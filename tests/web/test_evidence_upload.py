"""Streaming evidence uploads through the app (Flask test client, real multipart bodies) into the
real S3 server: the forms, multi-part uploads with their SHA-256, revisions, size limits before and
during the body, CSRF, type checks, zip bombs, a failed commit and a store outage. Every refusal
leaves no row, no object version and no incomplete multipart upload."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
import threading
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome, EvidenceCategory, EvidenceStatus
from governance.models.evidence import Evidence, EvidenceLink, EvidenceRevision
from governance.services import evidence as evidence_service
from governance.services import evidence_upload as uploads
from governance.storage import Storage

MIB = 1024 * 1024
PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 20 + b"%%EOF\n"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200 + b"This program cannot be run"


# --- helpers ------------------------------------------------------------------------------------------


def _body(token: str | None, data: bytes, filename: str = "report.pdf", *, name: str = "Access review Q3",
          review: bool = True, revision: bool = False, **meta: str) -> tuple[str, bytes]:
    """A multipart body in the browser's order: token, metadata, checkbox, then the file."""
    values: MultiDict[str, Any] = MultiDict()
    if token is not None:
        values.add("csrf_token", token)
    if not revision:
        values.add("name", name)
        for key in ("description", "category", "period_start", "period_end", "expires_on"):
            values.add(key, meta.get(key, ""))
    if review:
        values.add("send_for_review", "y")
    values.add("file", FileStorage(io.BytesIO(data), filename=filename, content_type="application/octet-stream"))
    boundary, body = encode_multipart(values)
    return f"multipart/form-data; boundary={boundary}", body


class RecordingStream(io.RawIOBase):
    """A request body that records how much of it was read; `size` is what it claims to be."""

    def __init__(self, data: bytes = b"", size: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._size = len(data) if size is None else size
        self.bytes_read = 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._size if whence == 2 else offset  # only for the test client's length probe
        if whence != 2:
            self._data.seek(offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        self.bytes_read += len(chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)


class ChunkedBody(io.RawIOBase):
    """A body without Content-Length (as a chunked request arrives), produced as it is read."""

    def __init__(self, head: bytes, file_bytes: int, tail: bytes) -> None:
        self._parts: Iterator[bytes] = iter(self._produce(head, file_bytes, tail))
        self._buffer = b""
        self.bytes_read = 0

    @staticmethod
    def _produce(head: bytes, file_bytes: int, tail: bytes) -> Iterator[bytes]:
        yield head
        block = PDF + b"\x00" * (MIB - len(PDF))
        sent = 0
        while sent < file_bytes:
            piece = block[: min(MIB, file_bytes - sent)]
            sent += len(piece)
            yield piece
            block = b"\x01" * MIB
        yield tail

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        while len(self._buffer) < size:
            more = next(self._parts, b"")
            if not more:
                break
            self._buffer += more
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        self.bytes_read += len(chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def _token(client: Any, csrf_token: Any, url: str = "/evidence/new") -> str:
    page = client.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)
    token: str = csrf_token(page.get_data(as_text=True))
    return token


def _post(client: Any, token: str | None, data: bytes, filename: str = "report.pdf", *,
          url: str = "/evidence/new", headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    content_type, body = _body(token, data, filename, **kwargs)
    return client.post(url, data=body, content_type=content_type, headers=headers or {})


def _nothing_left(storage: Storage, db_session: Any) -> None:
    assert list(storage.list_objects(versions=True)) == []
    assert storage.incomplete_uploads() == []
    assert db_session.scalar(select(func.count()).select_from(Evidence)) == 0
    assert db_session.scalar(select(func.count()).select_from(EvidenceRevision)) == 0


def _refusals(db_session: Any) -> list[AuditLog]:
    return list(db_session.scalars(select(AuditLog).where(
        AuditLog.object_type == "evidence", AuditLog.outcome == AuditOutcome.ERROR).order_by(AuditLog.seq)))


def _field_error(html: str, field: str) -> str:
    match = re.search(rf'id="{field}-error">(.*?)</p>', html, re.S)
    assert match, f"no error beside {field}"
    return match.group(1)


@pytest.fixture
def engineer(login_as: Any) -> Any:
    return login_as("engineer")


# --- the forms ----------------------------------------------------------------------------------------


def test_the_form_has_its_fields_in_order_and_a_progress_bar(client, engineer, storage) -> None:
    response = client.get("/evidence/new")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    order = [html.index(f'name="{name}"') for name in
             ("name", "description", "category", "period_start", "period_end", "expires_on", "send_for_review",
              "file")]
    assert order == sorted(order)
    assert re.search(r'<input[^>]*checked[^>]*name="send_for_review"|<input[^>]*name="send_for_review"[^>]*checked',
                     html)
    assert 'hx-encoding="multipart/form-data"' in html and 'enctype="multipart/form-data"' in html
    assert "<progress" in html and 'aria-live="polite"' in html and "data-upload-progress-text" in html
    assert 'type="file"' in html and 'accept=".csv,.docx' in html
    assert "<script>" not in html and " onclick=" not in html
    assert "uploads are" not in html  # the store is up


def test_a_control_is_named_on_the_form_and_an_unknown_one_is_404(client, engineer, make_control, storage) -> None:
    control = make_control("MAP-1.1", "Context is established")
    html = client.get(f"/evidence/new?control={control.id}").get_data(as_text=True)
    assert "For control" in html and "MAP-1.1" in html and "Context is established" in html
    assert f'action="/evidence/new?control={control.id}"' in html
    assert client.get(f"/evidence/new?control={uuid.uuid4()}").status_code == 404
    assert client.get("/evidence/new?control=not-a-uuid").status_code == 404


def test_the_forms_render_and_say_so_when_the_store_is_down(app, client, engineer, make_evidence, storage) -> None:
    evidence = make_evidence(engineer)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    app.extensions["storage"] = Storage(f"127.0.0.1:{dead_port}", "x", "y", bucket=storage.bucket)
    for url in ("/evidence/new", f"/evidence/{evidence.id}/revisions/new"):
        response = client.get(url)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "uploads are" in html and "unavailable" in html
        assert re.search(r'<button type="submit" class="button" disabled>', html)


def test_the_revision_form_has_only_the_file_and_the_review_box(client, engineer, make_evidence, storage) -> None:
    evidence = make_evidence(engineer, name="Model card")
    html = client.get(f"/evidence/{evidence.id}/revisions/new").get_data(as_text=True)
    assert "New revision of Model card" in html
    assert 'name="file"' in html and 'name="send_for_review"' in html
    assert 'name="name"' not in html and 'name="period_start"' not in html
    assert client.get(f"/evidence/{uuid.uuid4()}/revisions/new").status_code == 404


# --- successful uploads -------------------------------------------------------------------------------


def test_a_multi_part_upload_is_stored_whole_with_its_sha256(client, engineer, storage, db_session,
                                                             csrf_token, make_control) -> None:
    control = make_control()
    data = PDF + os.urandom(12 * MIB)  # more than two 5 MiB parts
    url = f"/evidence/new?control={control.id}"
    token = _token(client, csrf_token, url)
    response = _post(client, token, data, "../../Q3 access review.pdf", url=url,
                     description="Quarterly review", period_start="2026-07-01", period_end="2026-09-30",
                     expires_on="2027-09-30", category="evaluation_report")
    assert response.status_code == 303, response.get_data(as_text=True)
    evidence = db_session.scalars(select(Evidence)).one()
    assert response.headers["Location"] == f"/evidence/{evidence.id}"
    assert evidence.sha256 == hashlib.sha256(data).hexdigest() and evidence.size_bytes == len(data)
    assert evidence.content_type == "application/pdf" and evidence.status == EvidenceStatus.IN_REVIEW
    assert evidence.object_key.startswith(f"evidence/{evidence.id}/") and "review" not in evidence.object_key
    assert evidence.description == "Quarterly review" and str(evidence.period_start) == "2026-07-01"
    assert evidence.category == EvidenceCategory.EVALUATION_REPORT
    [revision] = evidence.revisions
    assert revision.number == 1 and revision.filename == "Q3 access review.pdf" and revision.version_id
    stored = hashlib.sha256()
    for chunk in storage.open(revision.object_key, revision.version_id):
        stored.update(chunk)
    assert stored.hexdigest() == evidence.sha256
    assert storage.stat(revision.object_key).content_type == "application/pdf"  # type: ignore[union-attr]
    assert storage.incomplete_uploads() == []
    link = db_session.scalars(select(EvidenceLink).where(EvidenceLink.evidence_id == evidence.id)).one()
    assert link.control_id == control.id and evidence.control_id == control.id
    audit = db_session.scalars(select(AuditLog).where(AuditLog.action == "evidence.create")).one()
    assert audit.outcome == AuditOutcome.SUCCESS and audit.details["sha256"] == evidence.sha256
    assert audit.details["after"]["category"] == "evaluation_report"
    page = client.get(f"/evidence/{evidence.id}").get_data(as_text=True)
    assert "<dt>Kind</dt><dd>Evaluation report</dd>" in page


def test_unticking_review_keeps_a_draft_and_htmx_gets_hx_location(client, engineer, storage, db_session,
                                                                  csrf_token) -> None:
    _token(client, csrf_token)
    token = csrf_token(client.get("/").get_data(as_text=True))
    response = _post(client, None, b"observed,value\nlatency,12\n", "metrics.csv", review=False,
                     headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 204, response.get_data(as_text=True)
    evidence = db_session.scalars(select(Evidence)).one()
    assert response.headers["HX-Location"] == f"/evidence/{evidence.id}"
    assert evidence.status == EvidenceStatus.DRAFT and evidence.content_type == "text/csv"


def test_a_new_revision_is_numbered_two_and_the_first_stays(client, engineer, storage, db_session, csrf_token,
                                                            make_evidence) -> None:
    evidence = make_evidence(engineer, b"%PDF-1.4 first\n")
    url = f"/evidence/{evidence.id}/revisions/new"
    token = _token(client, csrf_token, url)
    data = PDF + b"second revision\n"
    response = _post(client, token, data, "v2.pdf", url=url, revision=True)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == f"/evidence/{evidence.id}"
    db_session.expire_all()
    revisions = db_session.scalars(select(EvidenceRevision).where(EvidenceRevision.evidence_id == evidence.id)
                                   .order_by(EvidenceRevision.number)).all()
    assert [r.number for r in revisions] == [1, 2]
    assert revisions[1].sha256 == hashlib.sha256(data).hexdigest() and revisions[1].filename == "v2.pdf"
    assert b"".join(storage.open(revisions[0].object_key, revisions[0].version_id)) == b"%PDF-1.4 first\n"
    current = db_session.get(Evidence, evidence.id)
    assert current.revision_number == 2 and current.sha256 == revisions[1].sha256


def test_the_upload_never_parses_the_body_as_a_form(client, engineer, storage, db_session, csrf_token,
                                                   monkeypatch) -> None:
    """request.form / request.files / get_data would spool the file to disk or hold it in memory."""
    from flask import Request

    token = _token(client, csrf_token)

    def forbidden(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the upload view parsed the body as a form")

    monkeypatch.setattr(Request, "_load_form_data", forbidden)
    monkeypatch.setattr(Request, "get_data", forbidden)
    response = _post(client, token, PDF + os.urandom(MIB))
    assert response.status_code == 303, response.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Evidence)) == 1


def test_a_revision_of_unknown_evidence_is_404_before_the_body_is_read(client, engineer, storage, csrf_token,
                                                                       db_session) -> None:
    token = _token(client, csrf_token)
    content_type, body = _body(token, PDF, revision=True)
    stream = RecordingStream(body)
    response = client.post(f"/evidence/{uuid.uuid4()}/revisions/new", input_stream=stream,
                           content_type=content_type)
    assert response.status_code == 404
    assert stream.bytes_read == 0
    _nothing_left(storage, db_session)


# --- size limits ----------------------------------------------------------------------------------------


def test_a_body_too_large_by_content_length_is_413_with_nothing_read(client, engineer, storage, db_session,
                                                                     csrf_token, override_settings) -> None:
    override_settings(evidence_max_bytes=MIB)
    token = _token(client, csrf_token)
    content_type, body = _body(token, PDF)
    stream = RecordingStream(body, size=MIB + uploads.ENVELOPE_ALLOWANCE + 1)
    response = client.post("/evidence/new", input_stream=stream, content_type=content_type,
                           headers={"X-CSRFToken": token})
    assert response.status_code == 413
    assert stream.bytes_read == 0
    html = response.get_data(as_text=True)
    assert "larger than the limit of 1 MiB" in _field_error(html, "file")
    assert re.search(r'<input[^>]*checked[^>]*name="send_for_review"', html)  # the form as it first was
    _nothing_left(storage, db_session)
    [refusal] = _refusals(db_session)
    assert refusal.action == "evidence.create" and "larger than the limit" in refusal.details["reason"]
    # For htmx the form comes back as a fragment that static/js/app.js swaps in (HX-Retarget).
    response = client.post("/evidence/new", input_stream=RecordingStream(body, size=2 * MIB),
                           content_type=content_type, headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert response.status_code == 413
    assert response.headers["HX-Retarget"] == "#evidence-upload" and response.headers["HX-Reswap"] == "outerHTML"
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="evidence-upload"') and "<html" not in html


def test_the_default_limit_leaves_room_for_2_gib_and_flask_sets_none(app) -> None:
    assert app.config["SETTINGS"].evidence_max_bytes == 2 * 1024**3
    assert app.config.get("MAX_CONTENT_LENGTH") is None


def test_a_chunked_body_over_the_limit_is_413_mid_stream_and_aborted(client, engineer, storage, db_session,
                                                                    csrf_token, override_settings) -> None:
    override_settings(evidence_max_bytes=7 * MIB)  # past the first 5 MiB part: a multipart upload is begun
    token = _token(client, csrf_token)
    content_type, envelope = _body(token, b"@@FILE@@")
    head, tail = envelope.split(b"@@FILE@@")
    stream = ChunkedBody(head, 20 * MIB, tail)
    response = client.post("/evidence/new", input_stream=stream, content_type=content_type,
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert "larger than the limit of 7 MiB" in _field_error(response.get_data(as_text=True), "file")
    assert stream.bytes_read < 20 * MIB  # refused mid-stream, not after the whole body
    _nothing_left(storage, db_session)
    assert _refusals(db_session)[0].details["status"] == 413


# --- CSRF -------------------------------------------------------------------------------------------------


def test_a_bad_csrf_token_is_400_and_nothing_is_stored(client, engineer, storage, db_session, csrf_token) -> None:
    _token(client, csrf_token)
    response = _post(client, "not-the-token", PDF)
    assert response.status_code == 400
    response = _post(client, None, PDF, headers={"X-CSRFToken": "forged"})
    assert response.status_code == 400
    response = _post(client, None, PDF)  # no token at all
    assert response.status_code == 400
    _nothing_left(storage, db_session)
    assert [r.details["status"] for r in _refusals(db_session)] == [400, 400, 400]


def test_a_token_after_the_file_does_not_count(client, engineer, storage, db_session, csrf_token) -> None:
    token = _token(client, csrf_token)
    values: MultiDict[str, Any] = MultiDict([("name", "Late token"),
                                             ("file", FileStorage(io.BytesIO(PDF), filename="a.pdf")),
                                             ("csrf_token", token)])
    boundary, body = encode_multipart(values)
    response = client.post("/evidence/new", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400
    _nothing_left(storage, db_session)


# --- refused content ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "data", "message"), [
    ("scan.pdf", PNG, "named .pdf but its content is a PNG image"),
    ("invoice.pdf", EXE, "named .pdf but its content is a .exe file"),
    ("tool.exe", EXE, "Files ending in .exe are not accepted"),
    ("notes.txt", PNG, "not text"),
    ("ragged.csv", b"system,owner,risk\nchatbot,ana,high\nscorer,li\n", "Line 3 of the CSV file has 2 fields"),
    ("broken.json", b'{"model": "gpt", "evals": [1, 2,, 3]}', "not valid JSON"),
    ("trailing.json", b'{"model": "gpt"} {"second": true}', "trailing garbage"),
    ("empty.pdf", b"", "The file is empty"),
])
def test_a_file_that_is_not_what_its_name_says_is_422(client, engineer, storage, db_session, csrf_token,
                                                      filename, data, message) -> None:
    token = _token(client, csrf_token)
    response = _post(client, token, data, filename, name="Kept name", description="Kept description")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in _field_error(html, "file")
    assert 'value="Kept name"' in html and "Kept description" in html  # entered values kept
    _nothing_left(storage, db_session)
    [refusal] = _refusals(db_session)
    assert message in refusal.details["reason"] and refusal.details["filename"] == filename


def test_htmx_gets_the_form_fragment_back_on_422(client, engineer, storage, db_session, csrf_token) -> None:
    _token(client, csrf_token)
    token = csrf_token(client.get("/").get_data(as_text=True))
    response = _post(client, None, PNG, "scan.pdf", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="evidence-upload"') and "<html" not in html
    assert "HX-Retarget" not in response.headers  # htmx swaps a 422 into the form's place by itself
    assert "content is a PNG image" in _field_error(html, "file")
    _nothing_left(storage, db_session)


def test_a_metadata_error_is_422_beside_its_field_before_anything_is_stored(client, engineer, storage, db_session,
                                                                           csrf_token) -> None:
    token = _token(client, csrf_token)
    response = _post(client, token, PDF + os.urandom(6 * MIB), name="Period", period_start="2026-09-30",
                     period_end="2026-07-01")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "cannot end before it starts" in _field_error(html, "period_end")
    assert 'value="2026-09-30"' in html and 'value="Period"' in html
    _nothing_left(storage, db_session)
    response = _post(client, token, PDF, name="")
    assert "Enter a name" in _field_error(response.get_data(as_text=True), "name")


def test_a_form_without_a_file_is_422_choose_a_file(client, engineer, storage, db_session, csrf_token) -> None:
    token = _token(client, csrf_token)
    response = client.post("/evidence/new", data={"csrf_token": token, "name": "No file"})
    assert response.status_code == 422
    assert "Choose a file" in _field_error(response.get_data(as_text=True), "file")
    response = _post(client, token, b"", "")  # a file input left empty
    assert response.status_code == 422
    assert "Choose a file" in _field_error(response.get_data(as_text=True), "file")
    _nothing_left(storage, db_session)


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("zeros.bin", "w") as entry:
        block = b"\x00" * MIB
        for _ in range(200):
            entry.write(block)
    return buffer.getvalue()


def _many_entries(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"f{i}", b"")
    return buffer.getvalue()


@pytest.mark.parametrize(("make", "filename", "message"), [
    (_zip_bomb, "bomb.zip", "expands"),
    (lambda: _many_entries(20_000), "many.zip", "20,000 entries; at most 10,000"),
    (_zip_bomb, "bomb.docx", "expands"),
])
def test_a_zip_bomb_is_refused_and_its_stored_version_deleted(client, engineer, storage, db_session, csrf_token,
                                                              make, filename, message) -> None:
    data = make()
    assert len(data) < 3 * MIB
    token = _token(client, csrf_token)
    response = _post(client, token, data, filename)
    assert response.status_code == 422
    assert message in _field_error(response.get_data(as_text=True), "file")
    _nothing_left(storage, db_session)


def test_a_good_zip_and_docx_are_accepted(client, engineer, storage, db_session, csrf_token) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document>" + "evidence text " * 500 + "</w:document>")
        archive.writestr("attachments/inner.zip", _many_entries(3))  # nested: fine, not expanded
    token = _token(client, csrf_token)
    for filename in ("policy.docx", "bundle.zip"):
        response = _post(client, token, buffer.getvalue(), filename, name=filename)
        assert response.status_code == 303, response.get_data(as_text=True)
    types = set(db_session.scalars(select(Evidence.content_type)))
    assert types == {"application/zip",
                     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


# --- failures after storing, and a store outage ---------------------------------------------------------


def test_a_failed_commit_deletes_the_stored_version(client, engineer, storage, db_session, csrf_token,
                                                    monkeypatch) -> None:
    stored: list[Any] = []
    real = evidence_service.create_evidence

    def failing(session: Any, **kwargs: Any) -> Any:
        stored.append(kwargs["upload"])
        real(session, **kwargs)
        raise RuntimeError("injected: the database refused the flush")

    monkeypatch.setattr(evidence_service, "create_evidence", failing)
    token = _token(client, csrf_token)
    response = _post(client, token, PDF + os.urandom(MIB))
    assert response.status_code == 503
    assert uploads.NOT_RECORDED in response.get_data(as_text=True)
    assert stored and storage.stat(stored[0].key, stored[0].version_id) is None
    _nothing_left(storage, db_session)
    assert _refusals(db_session)[0].details["status"] == 503


class CuttingProxy:
    """A TCP proxy in front of the S3 server. mode "large": any connection that carries more than
    `limit` bytes to the store is cut (the store stays reachable for small requests, e.g. the
    abort); mode "down": after `limit` bytes in all, every connection is cut until restore()."""

    def __init__(self, upstream: str, limit: int, mode: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.limit, self.mode = limit, mode
        self.total = 0
        self.down = False
        self.cuts = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, to_store: bool) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if to_store:
                    sent += len(data)
                    with self._lock:
                        self.total += len(data)
                        cut = (self.mode == "large" and sent > self.limit) or self.down or (
                            self.mode == "down" and self.total > self.limit)
                        if cut:
                            self.down = self.down or self.mode == "down"
                            self.cuts += 1
                    if cut:
                        break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@pytest.fixture
def proxy_store(app, storage, s3_server) -> Iterator[Any]:
    proxies: list[CuttingProxy] = []

    def make(limit: int, mode: str) -> CuttingProxy:
        proxy = CuttingProxy(s3_server.endpoint, limit, mode)
        proxies.append(proxy)
        app.extensions["storage"] = Storage(proxy.endpoint, s3_server.access_key, s3_server.secret_key,
                                            bucket=storage.bucket)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def test_a_store_outage_mid_upload_is_503_and_leaves_nothing(client, engineer, storage, db_session, csrf_token,
                                                             proxy_store) -> None:
    token = _token(client, csrf_token)
    proxy = proxy_store(MIB, "large")  # part uploads are cut; the abort gets through
    response = _post(client, token, PDF + os.urandom(12 * MIB))
    assert response.status_code == 503
    html = response.get_data(as_text=True)
    assert "The evidence store could not be reached; nothing was saved. Try again." in html
    assert 'value="Access review Q3"' in html
    assert proxy.cuts >= 1
    _nothing_left(storage, db_session)
    assert _refusals(db_session)[0].details["status"] == 503


def test_a_total_outage_leaves_only_an_incomplete_upload_that_is_listed(client, engineer, storage, db_session,
                                                                        csrf_token, proxy_store) -> None:
    """When the store is gone before the SDK can abort, the begun multipart upload cannot be
    removed: no row, no object, and the upload is listed (for `flask evidence verify`) once the
    store is back."""
    token = _token(client, csrf_token)
    proxy = proxy_store(2 * MIB, "down")
    response = _post(client, token, PDF + os.urandom(12 * MIB))
    assert response.status_code == 503
    assert uploads.STORE_DOWN in response.get_data(as_text=True)
    proxy.restore()
    assert list(storage.list_objects(versions=True)) == []
    assert db_session.scalar(select(func.count()).select_from(Evidence)) == 0
    [leftover] = storage.incomplete_uploads()
    assert leftover["key"].startswith("evidence/")
    storage.abort_upload(leftover["key"], leftover["upload_id"])  # what an operator does after verify
    _nothing_left(storage, db_session)
