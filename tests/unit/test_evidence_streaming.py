"""The streaming pieces of an evidence upload: the multipart walk over a stream, the checking reader
(hash, size, limit, refusals), and receive_file against the real S3 server: one PUT or a multipart
upload, aborted on a refusal, a zip refused after storing deleted by version; and memory stays
bounded while a large body streams through."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from governance.services import evidence_upload as uploads
from governance.services.evidence import EvidenceError
from governance.services.evidence_types import ZipLimits, content_check, file_type
from governance.storage import Storage

MIB = 1024 * 1024
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n"
LIMITS = uploads.UploadLimits(max_bytes=64 * MIB, zip=ZipLimits(100, 64 * MIB, 50))


def _multipart(fields: list[tuple[str, str]], file_data: bytes | None, filename: str = "a.pdf") -> tuple[bytes, bytes]:
    values: MultiDict[str, Any] = MultiDict(fields)
    if file_data is not None:
        values.add("file", FileStorage(io.BytesIO(file_data), filename=filename))
    boundary, body = encode_multipart(values)
    return boundary.encode(), body


def _body(fields: list[tuple[str, str]], file_data: bytes | None, *, max_body: int | None = None,
          read_size: int = 1000, filename: str = "a.pdf") -> uploads.MultipartBody:
    boundary, body = _multipart(fields, file_data, filename)
    return uploads.MultipartBody(io.BytesIO(body), boundary, max_body=max_body, read_size=read_size)


# --- the multipart walk -------------------------------------------------------------------------------


def test_fields_come_before_the_file_and_its_bytes_stream_after() -> None:
    data = os.urandom(50_000)
    body = _body([("csrf_token", "tok"), ("name", "Évaluation"), ("description", "")], data)
    fields, part = body.read_fields()
    assert fields == {"csrf_token": "tok", "name": "Évaluation", "description": ""}
    assert part is not None and part.filename == "a.pdf" and part.name == "file"
    chunks = list(body.file_chunks())
    assert len(chunks) > 10 and b"".join(chunks) == data  # in pieces, never whole
    assert body.drain()


def test_a_body_without_a_file_or_with_an_empty_file_input_has_no_part() -> None:
    assert _body([("name", "x")], None).read_fields() == ({"name": "x"}, None)
    assert _body([("name", "x")], b"", filename="").read_fields() == ({"name": "x"}, None)


def test_an_overlong_field_is_cut_to_the_field_limit_and_noted() -> None:
    body = _body([("description", "d" * (uploads.MAX_FIELD_BYTES + 5000))], PDF)
    fields, _ = body.read_fields()
    assert len(fields["description"]) == uploads.MAX_FIELD_BYTES
    assert body.truncated_fields == {"description"}


def test_a_body_past_max_body_is_413_and_a_broken_one_400() -> None:
    body = _body([("name", "x")], os.urandom(20_000), max_body=10_000)
    body.read_fields()
    with pytest.raises(EvidenceError) as caught:
        list(body.file_chunks())
    assert caught.value.status == 413
    boundary, data = _multipart([("name", "x")], os.urandom(5000))
    truncated = uploads.MultipartBody(io.BytesIO(data[:3000]), boundary, max_body=None)
    truncated.read_fields()
    with pytest.raises(EvidenceError) as caught:
        list(truncated.file_chunks())
    assert caught.value.status == 400
    garbage = uploads.MultipartBody(io.BytesIO(b"not multipart at all"), b"xyz", max_body=None)
    with pytest.raises(EvidenceError) as caught:
        garbage.read_fields()
    assert caught.value.status == 400


def test_drain_reads_the_rest_after_a_refusal_mid_file() -> None:
    boundary, data = _multipart([("name", "x")], os.urandom(100_000))
    stream = io.BytesIO(data)
    body = uploads.MultipartBody(stream, boundary, max_body=None, read_size=4096)
    body.read_fields()
    next(body.file_chunks())
    assert body.drain()
    assert stream.tell() == len(data)


# --- the checking reader --------------------------------------------------------------------------------


def test_the_reader_hashes_and_counts_and_fills_each_read() -> None:
    data = os.urandom(3 * MIB + 17)
    chunks = [data[i:i + 1000] for i in range(0, len(data), 1000)]
    reader = uploads.StreamingReader(chunks, max_bytes=len(data))
    parts = []
    while part := reader.read(MIB + 1):
        parts.append(part)
    assert [len(p) for p in parts] == [MIB + 1, MIB + 1, MIB + 1, len(data) - 3 * (MIB + 1)]
    assert b"".join(parts) == data
    assert reader.size == len(data) and reader.sha256 == hashlib.sha256(data).hexdigest()


def test_the_reader_refuses_one_byte_past_the_limit() -> None:
    reader = uploads.StreamingReader([b"x" * 600, b"y" * 401], max_bytes=1000)
    with pytest.raises(EvidenceError) as caught:
        reader.read(5000)
    assert caught.value.status == 413 and "larger than the limit of 1,000 bytes" in caught.value.message
    assert reader.refusal is caught.value
    exact = uploads.StreamingReader([b"x" * 600, b"y" * 400], max_bytes=1000)
    assert len(exact.read(5000)) == 1000


def test_the_reader_runs_the_type_check_and_its_end_check() -> None:
    bad = uploads.StreamingReader([b"a,b\n1,2\n", b"3\n"], max_bytes=100, check=content_check(file_type("x.csv")))
    with pytest.raises(EvidenceError, match="Line 3 of the CSV file has 1 field"):
        bad.read(100)
    assert bad.refusal is not None
    good = uploads.StreamingReader([b"a,b\n", b"1,2\n"], max_bytes=100, check=content_check(file_type("x.csv")))
    assert good.read(100) == b"a,b\n1,2\n" and good.refusal is None


def test_a_failing_source_is_a_failure_not_a_refusal() -> None:
    def source() -> Iterator[bytes]:
        yield b"x" * 10
        raise ConnectionResetError("client went away")

    reader = uploads.StreamingReader(source(), max_bytes=100)
    with pytest.raises(ConnectionResetError):
        reader.read(100)
    assert reader.refusal is None and isinstance(reader.failure, ConnectionResetError)


# --- receive_file into the store -------------------------------------------------------------------------


def _receive(storage: Storage, data: bytes, filename: str = "a.pdf", limits: uploads.UploadLimits = LIMITS) -> Any:
    body = _body([("name", "x")], data, filename=filename, read_size=64 * 1024)
    _, part = body.read_fields()
    assert part is not None
    return uploads.receive_file(storage, body, part, evidence_id=uuid.uuid4(), limits=limits)


def _nothing_stored(storage: Storage) -> None:
    assert list(storage.list_objects(versions=True)) == []
    assert storage.incomplete_uploads() == []


def test_a_small_file_is_one_put_with_our_content_type_and_key(storage: Storage) -> None:
    upload = _receive(storage, PDF, "../../Board minutes.pdf")
    assert upload.filename == "Board minutes.pdf" and upload.content_type == "application/pdf"
    assert upload.key.startswith("evidence/") and "minutes" not in upload.key
    assert upload.sha256 == hashlib.sha256(PDF).hexdigest() and upload.size == len(PDF)
    assert b"".join(storage.open(upload.key, upload.version_id)) == PDF
    assert storage.stat(upload.key).content_type == "application/pdf"  # type: ignore[union-attr]


def test_a_large_file_goes_up_in_5_mib_parts(storage: Storage) -> None:
    data = PDF + os.urandom(11 * MIB)
    upload = _receive(storage, data)
    assert upload.size == len(data) and upload.sha256 == hashlib.sha256(data).hexdigest()
    etag = storage.client.stat_object(storage.bucket, upload.key).etag
    assert etag.endswith("-3")  # a multipart upload of three parts
    assert storage.incomplete_uploads() == []


def test_a_refusal_in_the_last_part_aborts_the_multipart_upload(storage: Storage) -> None:
    data = b"a,b\n" + b"1,2\n" * (3 * MIB) + b"ragged\n"  # 12 MiB: parts 1 and 2 are sent first
    with pytest.raises(EvidenceError, match="has 1 field"):
        _receive(storage, data, "x.csv")
    _nothing_stored(storage)


def test_a_file_over_the_limit_mid_stream_leaves_nothing(storage: Storage) -> None:
    limits = uploads.UploadLimits(max_bytes=6 * MIB, zip=LIMITS.zip)
    with pytest.raises(EvidenceError) as caught:
        _receive(storage, PDF + os.urandom(8 * MIB), limits=limits)
    assert caught.value.status == 413
    _nothing_stored(storage)


def test_a_refused_zip_is_deleted_by_version_after_storing(storage: Storage) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros", b"\x00" * (8 * MIB))
    with pytest.raises(EvidenceError, match="expands"):
        _receive(storage, buffer.getvalue(), "bomb.zip")
    _nothing_stored(storage)


def test_discard_removes_just_that_version(storage: Storage) -> None:
    upload = _receive(storage, PDF)
    uploads.discard(storage, upload)
    _nothing_stored(storage)
    uploads.discard(storage, upload)  # already gone: logged, not raised


def test_an_unreachable_store_is_a_503_with_the_outage_message(storage: Storage) -> None:
    dead = Storage("127.0.0.1:9", "x", "y", bucket=storage.bucket)  # the discard port: nothing listens
    with pytest.raises(EvidenceError) as caught:
        _receive(dead, PDF)
    assert caught.value.status == 503 and caught.value.message == uploads.STORE_DOWN


# --- memory ----------------------------------------------------------------------------------------------


class _GeneratedBody(io.RawIOBase):
    """A multipart body of `size` file bytes produced as it is read (never whole in memory)."""

    def __init__(self, boundary: bytes, size: int) -> None:
        self._head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
                      b"Content-Type: text/plain\r\n\r\n")
        self._tail = b"\r\n--" + boundary + b"--\r\n"
        self._left = size
        self._line = b"evidence line of text, repeated to make a large upload\n" * 1000

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        if self._left > 0:
            piece = self._line[: min(size, self._left, len(self._line))]
            self._left -= len(piece)
            return piece
        out, self._tail = self._tail, b""
        return out


def test_memory_stays_bounded_while_a_large_body_streams_through() -> None:
    """64 MiB through the multipart walk, the text check and the reader, read as the SDK reads
    (part_size + 1 at a time): the peak is a few parts, not the body."""
    size = 64 * MIB
    body = uploads.MultipartBody(_GeneratedBody(b"b0undary", size), b"b0undary", max_body=None)
    _, part = body.read_fields()
    assert part is not None
    reader = uploads.StreamingReader(body.file_chunks(), max_bytes=size, check=content_check(file_type("big.txt")))
    tracemalloc.start()
    try:
        total = 0
        while chunk := reader.read(uploads.EVIDENCE_PART_SIZE + 1):
            total += len(chunk)
            del chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size == reader.size
    assert peak < 4 * uploads.EVIDENCE_PART_SIZE, f"peak {peak / MIB:.1f} MiB"


def test_werkzeugs_own_cut_of_a_chunked_body_is_a_413() -> None:
    from werkzeug.wsgi import LimitedStream

    boundary, data = _multipart([("name", "x")], os.urandom(50_000))
    stream = LimitedStream(io.BytesIO(data), 20_000, is_max=True)  # as request.stream for a chunked body
    body = uploads.MultipartBody(stream, boundary, max_body=20_000 + uploads.ENVELOPE_ALLOWANCE, read_size=4096)
    body.read_fields()
    reader = uploads.StreamingReader(body.file_chunks(), max_bytes=10**9)
    with pytest.raises(EvidenceError) as caught:
        reader.read(10**6)
    assert caught.value.status == 413 and reader.refusal is caught.value
