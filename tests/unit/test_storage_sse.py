"""Server-side encryption of evidence objects (S3_SSE: s3 = SSE-S3, c = SSE-C with S3_SSE_C_KEY) and
TLS to the object store (S3_SECURE, S3_CA_BUNDLE), against the real SeaweedFS (docs/database-security.md)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

import config
import embedded
from app import create_app
from governance.models.evidence import Evidence
from governance.storage import Storage, StorageError
from tests.tls_certs import make_certs

KEY = base64.b64encode(os.urandom(32)).decode()
PDF = b"%PDF-1.4 encrypted evidence\n"


@pytest.fixture
def make_store(s3_server: embedded.S3State) -> Iterator[Callable[..., Storage]]:
    """make_store(sse="none", key=None, bucket=None): a Storage on the session's S3 server, on a new
    bucket (or the given one); new buckets are purged afterwards."""
    buckets: list[Storage] = []

    def make(sse: str = "none", key: str | None = None, bucket: str | None = None) -> Storage:
        store = Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key,
                        bucket=bucket or "sse-" + uuid.uuid4().hex[:12], sse=sse, sse_c_key=key)
        if bucket is None:
            store.ensure_bucket()
            buckets.append(store)
        return store

    yield make
    for store in buckets:
        store.purge_bucket()


def _read(store: Storage, key: str, version_id: str | None = None) -> bytes:
    return b"".join(store.open_stream(key, version_id))


def test_sse_s3_objects_report_their_encryption(make_store: Callable[..., Storage]) -> None:
    encrypted = make_store(sse="s3")
    stored = encrypted.put("a/report.pdf", PDF, content_type="application/pdf")
    info = encrypted.stat("a/report.pdf", stored.version_id)
    assert info is not None and info.encryption == "AES256" and info.size == len(PDF)
    assert _read(encrypted, "a/report.pdf") == PDF
    # The same store without SSE writes plain objects: the header is the setting's doing.
    plain = make_store(bucket=encrypted.bucket)
    plain.put("a/plain.pdf", PDF)
    assert plain.stat("a/plain.pdf").encryption is None  # type: ignore[union-attr]


def test_sse_c_objects_need_the_key_on_every_read(make_store: Callable[..., Storage]) -> None:
    encrypted = make_store(sse="c", key=KEY)
    data = PDF + os.urandom(11 * 1024 * 1024)  # a multipart upload (8 MiB parts), every part under the key
    stored = encrypted.put("e/1", data)
    streamed = encrypted.put("e/2", _Chunks(data), -1, part_size=5 * 1024 * 1024)
    for key, version in (("e/1", stored.version_id), ("e/2", streamed.version_id)):
        assert hashlib.sha256(_read(encrypted, key, version)).digest() == hashlib.sha256(data).digest()
        assert encrypted.read_range(key, 5, 10, version) == data[5:15]
        info = encrypted.stat(key, version)
        assert info is not None and info.encryption == "SSE-C" and info.size == len(data)

    without_key = make_store(bucket=encrypted.bucket)
    with pytest.raises(StorageError):
        _read(without_key, "e/1")
    with pytest.raises(StorageError):
        without_key.stat("e/1")
    wrong_key = make_store(sse="c", key=base64.b64encode(os.urandom(32)).decode(), bucket=encrypted.bucket)
    with pytest.raises(StorageError, match="AccessDenied"):
        _read(wrong_key, "e/1")
    # Objects written before SSE-C was turned on stay readable with the key configured.
    without_key.put("e/plain", PDF)
    assert _read(encrypted, "e/plain") == PDF


def test_a_server_side_copy_keeps_sse_c(make_store: Callable[..., Storage]) -> None:
    source = make_store(sse="c", key=KEY)
    target = make_store(sse="c", key=KEY)
    stored = source.put("x/1", PDF, content_type="application/pdf")
    copied = source.copy("x/1", stored.version_id, src_bucket=source.bucket, dest_bucket=target.bucket,
                         dest_key="cold/x/1")
    assert copied.bucket == target.bucket and copied.key == "cold/x/1"
    assert _read(target, "cold/x/1") == PDF
    info = target.stat("cold/x/1")
    assert info is not None and info.encryption == "SSE-C" and info.content_type == "application/pdf"
    with pytest.raises(StorageError):
        _read(make_store(bucket=target.bucket), "cold/x/1")


def test_a_server_side_copy_applies_sse_s3(make_store: Callable[..., Storage]) -> None:
    plain = make_store()
    encrypting = make_store(sse="s3")
    stored = plain.put("y/1", PDF, content_type="application/pdf")
    encrypting.copy("y/1", stored.version_id, src_bucket=plain.bucket, dest_bucket=encrypting.bucket)
    info = encrypting.stat("y/1")
    assert info is not None and info.encryption == "AES256" and info.content_type == "application/pdf"
    assert plain.stat("y/1").encryption is None  # type: ignore[union-attr]


def test_the_settings_choose_the_encryption(test_settings: config.Settings) -> None:
    settings = dataclasses.replace(test_settings, s3_sse="c", s3_sse_c_key=KEY)
    store = create_app({"TESTING": True}, settings=settings).extensions["storage"]
    assert store.sse_mode == "c"
    with pytest.raises(config.ConfigError, match="S3_SSE_C_KEY"):
        config.load_settings({"APP_ENV": "test", "S3_SSE": "c"})
    with pytest.raises(ValueError, match="32 bytes"):
        Storage.from_settings(dataclasses.replace(test_settings, s3_sse="c",
                                                  s3_sse_c_key=base64.b64encode(b"short").decode()))


@pytest.mark.parametrize("mode", ["s3", "c"])
def test_an_evidence_upload_through_the_app_is_stored_encrypted(
        mode: str, app: Flask, client: Any, login_as: Any, db_session: Any, csrf_token: Any,
        test_settings: config.Settings, make_store: Callable[..., Storage]) -> None:
    bucket = make_store().bucket  # a fresh bucket, purged afterwards
    store = Storage.from_settings(dataclasses.replace(test_settings, s3_sse=mode, s3_sse_c_key=KEY,
                                                      s3_evidence_bucket=bucket))
    original = app.extensions["storage"]
    app.extensions["storage"] = store
    try:
        login_as("engineer")
        page = client.get("/evidence/new")
        token = csrf_token(page.get_data(as_text=True))
        values: MultiDict[str, Any] = MultiDict()
        values.add("csrf_token", token)
        values.add("name", "Encrypted review")
        for field in ("description", "category", "period_start", "period_end", "expires_on"):
            values.add(field, "")
        values.add("file", FileStorage(io.BytesIO(PDF), filename="r.pdf"))
        boundary, body = encode_multipart(values)
        response = client.post("/evidence/new", data=body, content_type=f"multipart/form-data; boundary={boundary}")
        assert response.status_code == 303, response.get_data(as_text=True)
        evidence = db_session.scalars(select(Evidence).where(Evidence.name == "Encrypted review")).one()
        [revision] = evidence.revisions
        info = store.stat(revision.object_key, revision.version_id)
        assert info is not None and info.encryption == ("AES256" if mode == "s3" else "SSE-C")
        assert _read(store, revision.object_key, revision.version_id) == PDF
        # The app's download streams it back (with the key, for SSE-C).
        download = client.get(f"/evidence/{evidence.id}/revisions/1/download")
        assert download.status_code == 200 and download.get_data() == PDF
        if mode == "c":
            with pytest.raises(StorageError):
                make_store(bucket=bucket).stat(revision.object_key, revision.version_id)
    finally:
        app.extensions["storage"] = original


class _Chunks:
    """A file-like object of unknown length (forces a streamed multipart upload)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk, self._pos = self._data[self._pos:end], min(end, len(self._data))
        return chunk


# --- TLS to the store --------------------------------------------------------------------------------

@dataclasses.dataclass
class TlsS3:
    endpoint: str  # localhost:<https port>
    plain_endpoint: str
    ca: Path
    other_ca: Path
    access_key: str
    secret_key: str


@pytest.fixture(scope="module")
def tls_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsS3]:
    """A second `weed mini` whose S3 API also listens with TLS (-s3.port.https) under our certificate."""
    root = tmp_path_factory.mktemp("tls-s3")
    files = make_certs(root / "certs")  # names localhost only
    other = make_certs(root / "other")
    ports = {name: embedded.free_port() for name in embedded.S3_PORT_NAMES}
    https = embedded.free_port()
    (root / "data").mkdir()
    access, secret = "tls" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    args = [embedded.weed_binary(), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.cert.file={files.cert}", f"-s3.key.file={files.key}", f"-s3.port.https={https}",
            *[f"-{name}={port}" for name, port in ports.items()]]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
    with open(root / "weed.log", "ab") as log:
        process = subprocess.Popen(args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    state = TlsS3(f"localhost:{https}", f"127.0.0.1:{ports['s3.port']}", files.ca, other.ca, access, secret)
    try:
        probe = Storage(state.endpoint, access, secret, bucket="tls", secure=True, ca_bundle=str(files.ca))
        for _ in range(300):  # ready when it answers over TLS
            if process.poll() is not None:
                raise RuntimeError((root / "weed.log").read_text(errors="replace")[-2000:])
            try:
                probe.client.list_buckets()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        else:
            raise RuntimeError("the TLS S3 server did not answer over TLS within 60 s")
        yield state
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_store_over_tls_with_the_ca_bundle(tls_s3: TlsS3) -> None:
    store = Storage(tls_s3.endpoint, tls_s3.access_key, tls_s3.secret_key, bucket="tls-" + uuid.uuid4().hex[:8],
                    secure=True, ca_bundle=str(tls_s3.ca), sse="c", sse_c_key=KEY)
    store.ensure_bucket()
    try:
        stored = store.put("t/1", PDF)
        assert _read(store, "t/1", stored.version_id) == PDF
        assert store.stat("t/1").encryption == "SSE-C"  # type: ignore[union-attr]
        store.ping()
    finally:
        store.purge_bucket()


def test_tls_to_the_store_verifies_the_certificate(tls_s3: TlsS3) -> None:
    # A CA that did not sign the server's certificate: refused.
    wrong_ca = Storage(tls_s3.endpoint, tls_s3.access_key, tls_s3.secret_key, bucket="tls", secure=True,
                       ca_bundle=str(tls_s3.other_ca))
    with pytest.raises(StorageError, match="unreachable"):
        wrong_ca.ping()
    # The right CA but another host name than the certificate's (localhost): refused.
    port = tls_s3.endpoint.rsplit(":", 1)[1]
    wrong_host = Storage(f"127.0.0.1:{port}", tls_s3.access_key, tls_s3.secret_key, bucket="tls", secure=True,
                         ca_bundle=str(tls_s3.ca))
    with pytest.raises(StorageError, match="unreachable"):
        wrong_host.ping()
    right = Storage(tls_s3.endpoint, tls_s3.access_key, tls_s3.secret_key, bucket="tls", secure=True,
                    ca_bundle=str(tls_s3.ca))
    right.ping()
