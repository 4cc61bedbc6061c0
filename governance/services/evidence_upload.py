"""Streaming evidence uploads: a multipart/form-data body read from a stream, its file part piped
through a checking reader straight into an S3 multipart upload, nothing held whole in memory and
nothing written to disk.

    body = MultipartBody(stream, boundary, max_body=limits.max_body)
    fields, part = body.read_fields()           # the fields before the file (metadata, CSRF token)
    upload = receive_file(storage, body, part, evidence_id=..., limits=limits)
    body.drain()                                # whatever follows the file is read and discarded

`receive_file` computes SHA-256 and the size while streaming, checks the type on the fly
(governance.services.evidence_types), enforces the size limit mid-stream, inspects zip-based files
once stored, and raises EvidenceError (with the HTTP status to answer) for every refusal, having
left nothing behind: the SDK aborts the multipart upload when the reader raises, and an object that
was stored but refused afterwards is deleted by version. The caller records the upload
(governance.services.evidence) and, if its transaction fails, calls `discard`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

import urllib3
from minio.error import MinioException
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder

from governance.models.enums import AuditOutcome
from governance.services import audit
from governance.services.evidence import EvidenceError, StoredUpload, clean_filename, object_key
from governance.services.evidence_types import (
    ZIP,
    ContentCheck,
    FileType,
    ZipLimits,
    content_check,
    file_type,
    inspect_zip,
)
from governance.storage import Storage, StorageError

log = logging.getLogger(__name__)

# S3 multipart part size for evidence: the SDK holds a few parts in memory (DESIGN.md: ~30 MB +
# 4-6 x part_size), so 5 MiB parts (S3's minimum) keep a worker's growth under 64 MiB.
EVIDENCE_PART_SIZE = 5 * 1024 * 1024
PART_SIZE = EVIDENCE_PART_SIZE  # the name bench/evidence_upload.py compares with
# What a body may carry besides the file: the form fields, part headers and boundaries.
ENVELOPE_ALLOWANCE = 256 * 1024
# How much of the request body is read at a time.
READ_SIZE = 256 * 1024
# A form field's value is kept up to this many bytes (the longest allowed description fits);
# the rest of a longer one is discarded, and validation then says it is too long.
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 32

STORE_DOWN = "The evidence store could not be reached; nothing was saved. Try again."
NOT_RECORDED = "The evidence could not be recorded; nothing was saved. Try again."
INTERRUPTED = "The upload was interrupted before the whole file arrived; nothing was saved. Try again."
MALFORMED = "The upload could not be read (it is not a complete multipart form); nothing was saved."
NO_FILE = "Choose a file to upload."


def size_text(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:,.0f} {unit}" if value == int(value) else f"{value:,.1f} {unit}"
    return f"{n:,} bytes"


def too_large(max_bytes: int) -> EvidenceError:
    return EvidenceError("file", f"The file is larger than the limit of {size_text(max_bytes)}; nothing was saved.",
                         status=413)


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    zip: ZipLimits
    part_size: int = EVIDENCE_PART_SIZE

    @property
    def max_body(self) -> int:
        """The largest request body accepted: the file at its limit plus the envelope."""
        return self.max_bytes + ENVELOPE_ALLOWANCE

    @classmethod
    def from_settings(cls, settings: Any) -> UploadLimits:
        return cls(settings.evidence_max_bytes, ZipLimits(
            settings.evidence_zip_max_entries, settings.evidence_zip_max_uncompressed_bytes,
            settings.evidence_zip_max_ratio))


@dataclass(frozen=True)
class FilePart:
    name: str
    filename: str  # as the client sent it (cleaned before use)


class MultipartBody:
    """A multipart/form-data body, decoded from `stream` as it is read (Werkzeug's sans-IO
    MultipartDecoder): fields first, then the file's bytes, then the rest discarded. At most
    `max_body` bytes are read; more is refused with 413 (a body without Content-Length)."""

    def __init__(self, stream: IO[bytes], boundary: bytes, *, max_body: int | None,
                 read_size: int = READ_SIZE) -> None:
        self._stream = stream
        self._decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
        self._max_body = max_body
        self._read_size = read_size
        self.bytes_read = 0
        self.truncated_fields: set[str] = set()
        self._events = self._decode()
        self._in_file = False

    def _decode(self) -> Iterator[Any]:
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError:  # the body ended early, or is not multipart/form-data
                raise EvidenceError(None, MALFORMED, status=400) from None
            except RequestEntityTooLarge:
                raise EvidenceError(None, f"The form has more than {MAX_PARTS} parts.", status=413) from None
            if event is NEED_DATA:
                try:
                    chunk = self._stream.read(self._read_size)
                except RequestEntityTooLarge:  # Werkzeug's cut at request.max_content_length
                    if self._max_body is not None:
                        raise too_large(self._max_body - ENVELOPE_ALLOWANCE) from None
                    raise EvidenceError("file", "The upload is larger than this server accepts; nothing was saved.",
                                        status=413) from None
                self.bytes_read += len(chunk)
                if self._max_body is not None and self.bytes_read > self._max_body:
                    raise too_large(self._max_body - ENVELOPE_ALLOWANCE)
                self._decoder.receive_data(chunk or None)
                continue
            if isinstance(event, Epilogue):
                return
            yield event

    def _next(self) -> Any:
        """The next event, or None at the end of the body."""
        return next(self._events, None)

    def read_fields(self) -> tuple[dict[str, str], FilePart | None]:
        """The fields up to the first file part (whose bytes file_chunks() then yields), and that
        part; None when the body has no file part, or only an empty file input."""
        fields: dict[str, str] = {}
        while True:
            event = self._next()
            if event is None:
                return fields, None
            if isinstance(event, Field):
                value = self._field_value(event.name)
                fields.setdefault(event.name, value)
            elif isinstance(event, File):
                if not event.filename:  # a file input left empty
                    for _ in self._part_data():
                        pass
                    continue
                self._in_file = True
                return fields, FilePart(event.name, event.filename)

    def _part_data(self) -> Iterator[bytes]:
        while True:
            event = self._next()
            if not isinstance(event, Data):
                raise EvidenceError(None, MALFORMED, status=400)
            if event.data:
                yield event.data
            if not event.more_data:
                return

    def _field_value(self, name: str) -> str:
        value = bytearray()
        for data in self._part_data():
            if len(value) < MAX_FIELD_BYTES:
                value += data[:MAX_FIELD_BYTES - len(value)]
            if len(value) >= MAX_FIELD_BYTES:
                self.truncated_fields.add(name)
        return value.decode("utf-8", "ignore")

    def file_chunks(self) -> Iterator[bytes]:
        """The current file part's bytes, as they arrive."""
        if not self._in_file:
            return
        try:
            yield from self._part_data()
        finally:
            self._in_file = False

    def drain(self) -> bool:
        """Read and discard the rest of the body (at most max_body in all), so that the client,
        which may still be sending, receives the answer. False when it could not be read to its
        end (too large, malformed, or the client went away)."""
        try:
            for _ in self._events:
                pass
        except (EvidenceError, HTTPException, OSError):  # too large, malformed, the client went away
            return False
        return True


class StreamingReader:
    """A read-only file over the file part's chunks, for Storage.put: SHA-256 and size computed as
    it is read, the content check fed, the size limit enforced. When it refuses (EvidenceError) or
    its source fails, it raises, so the SDK aborts the multipart upload; `refusal` and `failure`
    say why afterwards."""

    def __init__(self, chunks: Iterable[bytes], *, max_bytes: int, check: ContentCheck | None = None) -> None:
        self._chunks = iter(chunks)
        self._max_bytes = max_bytes
        self._check = check
        self._sha = hashlib.sha256()
        self._pending = memoryview(b"")
        self._eof = False
        self.size = 0
        self.refusal: EvidenceError | None = None
        self.failure: BaseException | None = None

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def readable(self) -> bool:
        return True

    def _pull(self) -> bytes:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._eof = True
            if self._check is not None:
                self._guard(self._check.finish)
            return b""
        except EvidenceError as exc:
            self.refusal = exc
            raise
        except Exception as exc:
            self.failure = exc
            raise
        self.size += len(chunk)
        if self.size > self._max_bytes:
            self.refusal = too_large(self._max_bytes)
            raise self.refusal
        self._sha.update(chunk)
        if self._check is not None:
            self._guard(self._check.feed, chunk)
        return chunk

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except EvidenceError as exc:
            self.refusal = exc
            raise

    def read(self, size: int = -1) -> bytes:
        # One allocation of the result (a join), not a growing buffer and a copy of it: the SDK
        # asks for a whole part (5 MiB) at a time.
        pieces: list[bytes | memoryview] = []
        have = 0
        while size < 0 or have < size:
            if not self._pending:
                if self._eof:
                    break
                self._pending = memoryview(self._pull())
                continue
            take = self._pending if size < 0 else self._pending[:size - have]
            pieces.append(take)
            have += len(take)
            self._pending = self._pending[len(take):]
        return b"".join(pieces)


def _abort_leftovers(storage: Storage, key: str) -> None:
    """Best effort after a failed put: abort a multipart upload of `key` the SDK could not abort
    itself (it tries first). When the store stays unreachable the upload remains listed by
    Storage.incomplete_uploads() (and `flask evidence verify`)."""
    try:
        for upload in storage.incomplete_uploads(prefix=key):
            if upload["key"] == key:
                storage.abort_upload(key, upload["upload_id"])
    except Exception:
        log.warning("could not check for an incomplete upload of %s", key, exc_info=True)


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, (StorageError, MinioException, urllib3.exceptions.HTTPError, OSError))


def store_stream(storage: Storage, key: str, reader: StreamingReader, *, content_type: str,
                 part_size: int = EVIDENCE_PART_SIZE) -> Any:
    """Storage.put of the reader (multipart, or one PUT when small); refusals and failures come
    out as EvidenceError with nothing left in the store (when it can be reached)."""
    try:
        return storage.put(key, cast(BinaryIO, reader), -1, content_type=content_type, part_size=part_size)
    except Exception as exc:
        _abort_leftovers(storage, key)
        if reader.refusal is not None:
            raise reader.refusal from None
        if reader.failure is not None:
            log.info("upload of %s interrupted: %r", key, reader.failure)
            raise EvidenceError("file", INTERRUPTED, status=400) from None
        if _unreachable(exc):
            log.warning("evidence store failed during the upload of %s: %r", key, exc)
            raise EvidenceError("file", STORE_DOWN, status=503) from None
        raise


def discard(storage: Storage, upload: StoredUpload) -> None:
    """Delete the object version an upload stored (its row could not be recorded, or it was
    refused after storing). Logged, not raised, when the store refuses."""
    try:
        storage.delete(upload.key, upload.version_id)
    except Exception:
        log.error("could not delete %s version %s after a failed upload", upload.key, upload.version_id,
                  exc_info=True)


def receive_file(storage: Storage, body: MultipartBody, part: FilePart, *, evidence_id: uuid.UUID,
                 limits: UploadLimits) -> StoredUpload:
    """Stream the file part into the store under a new server-made key for `evidence_id`, checked
    on the way; return what was stored, or raise EvidenceError having stored nothing."""
    filename = clean_filename(part.filename)
    ftype: FileType = file_type(filename)
    key = object_key(evidence_id)
    reader = StreamingReader(body.file_chunks(), max_bytes=limits.max_bytes, check=content_check(ftype))
    stored = store_stream(storage, key, reader, content_type=ftype.content_type, part_size=limits.part_size)
    upload = StoredUpload(bucket=stored.bucket, key=key, version_id=stored.version_id, size=reader.size,
                          sha256=reader.sha256, content_type=ftype.content_type, filename=filename)
    if ftype.kind == ZIP:
        try:
            inspect_zip(lambda offset, length: storage.read_range(key, offset, length, upload.version_id),
                        reader.size, limits.zip)
        except EvidenceError:
            discard(storage, upload)
            raise
        except Exception as exc:
            discard(storage, upload)
            if _unreachable(exc):
                raise EvidenceError("file", STORE_DOWN, status=503) from None
            raise
    return upload


def record_refusal(session: Session, action: str, evidence_id: uuid.UUID | None, error: EvidenceError,
                   details: Mapping[str, Any] | None = None) -> None:
    """Audit a refused upload (outcome error) in the caller's fresh transaction, so failed
    attempts stay visible though nothing of them was kept."""
    audit.record(session, action, object_type="evidence", object_id=evidence_id, outcome=AuditOutcome.ERROR,
                 details={"reason": error.message, "status": error.status, "field": error.field,
                          **(details or {})})
