"""The object store (S3 protocol: MinIO in production, SeaweedFS in development and tests).

A small interface over the `minio` SDK, so the rest of the code never builds S3 requests itself.
Evidence buckets are versioned (an overwrite keeps the earlier version) and made with object lock
where the store supports it, so an approved revision's object version can be locked against
deletion and overwrite (docs/evidence.md).

Encryption (docs/database-security.md): TLS to the store when `secure` (a private CA through
`ca_bundle`), and server-side encryption of what this Storage writes: `sse="s3"` (SSE-S3, the
store's keys) or `sse="c"` (SSE-C, our 32-byte key, which the store never keeps: every GET, HEAD
and copy of such an object must send it again, so this class sends it on every read).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, GOVERNANCE, REPLACE, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.retention import Retention
from minio.sse import Sse, SseCustomerKey, SseS3
from minio.versioningconfig import VersioningConfig

# minio streams multipart uploads with memory ~ 4-6 x part_size (DESIGN.md); 8 MiB parts.
PART_SIZE = 8 * 1024 * 1024

# Fail fast when the store is down (pages must still render and say so), retry a little when it
# is briefly unwell. minio's default would retry for many seconds per request.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 120.0


# Health probes (a page asking "is the store up?") get one short try and no retry.
PROBE_TIMEOUT_S = 1.0


SSE_MODES = ("none", "s3", "c")

# What a store answers when an SSE-C key is sent for an object not written with one (AWS and MinIO
# refuse such a read; SeaweedFS ignores the key): the read is then retried without the key.
_SSEC_NOT_APPLICABLE = frozenset({"InvalidRequest", "InvalidArgument", "BadRequest",
                                  "InvalidEncryptionAlgorithmError"})
_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchObject", "NotFound", "ResourceNotFound"})


def _tls(ca_bundle: str | None) -> dict[str, Any]:
    # Certificates are always verified; a private CA comes in through ca_bundle (else the system's).
    return {"cert_reqs": "CERT_REQUIRED", **({"ca_certs": ca_bundle} if ca_bundle else {})}


def _http_client(ca_bundle: str | None = None) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        maxsize=10,
        retries=urllib3.Retry(total=2, connect=1, backoff_factor=0.2,
                              status_forcelist=(500, 502, 503, 504)),
        **_tls(ca_bundle),
    )


def _probe_http_client(ca_bundle: str | None = None) -> urllib3.PoolManager:
    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=PROBE_TIMEOUT_S, read=PROBE_TIMEOUT_S * 3),
                               maxsize=2, retries=False, **_tls(ca_bundle))


def customer_key(encoded: str) -> SseCustomerKey:
    """The SSE-C key from its base64 form (S3_SSE_C_KEY); ValueError unless it is 32 bytes."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("S3_SSE_C_KEY is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError(f"S3_SSE_C_KEY must decode to 32 bytes, got {len(raw)}")
    return SseCustomerKey(raw)


class StorageError(RuntimeError):
    """The object store refused or could not be reached; the message says which."""


@dataclass
class StoredObject:
    bucket: str
    key: str
    etag: str
    version_id: str | None


@dataclass
class ObjectInfo:
    key: str
    size: int
    version_id: str | None
    content_type: str | None
    is_latest: bool = True
    # "AES256" (SSE-S3) or "SSE-C" when the store reports the object encrypted; None otherwise.
    encryption: str | None = None


class Storage:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, *, bucket: str,
                 secure: bool = False, region: str | None = None, sse: str = "none",
                 sse_c_key: str | None = None, ca_bundle: str | None = None) -> None:
        if sse not in SSE_MODES:
            raise ValueError(f"sse must be one of {SSE_MODES}, got {sse!r}")
        if sse == "c" and not sse_c_key:
            raise ValueError("sse='c' needs sse_c_key (32 bytes, base64)")
        self.endpoint = endpoint
        self.bucket = bucket
        self.sse_mode = sse
        # The SSE-C key is offered on every read whatever the mode, so objects written under SSE-C
        # stay readable after S3_SSE changes (as long as S3_SSE_C_KEY stays set).
        self._ssec: SseCustomerKey | None = customer_key(sse_c_key) if sse_c_key else None
        self._sse: Sse | None = SseS3() if sse == "s3" else self._ssec if sse == "c" else None
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region, http_client=_http_client(ca_bundle))
        self._probe = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region, http_client=_probe_http_client(ca_bundle))

    @classmethod
    def from_settings(cls, settings: Any, *, bucket: str | None = None) -> Storage:
        """The store as config.Settings describe it (endpoint, TLS, SSE); bucket defaults to evidence."""
        return cls(settings.s3_endpoint or "", settings.s3_access_key or "", settings.s3_secret_key or "",
                   bucket=bucket or settings.s3_evidence_bucket, secure=settings.s3_secure,
                   region=settings.s3_region, sse=getattr(settings, "s3_sse", "none") or "none",
                   sse_c_key=getattr(settings, "s3_sse_c_key", None),
                   ca_bundle=getattr(settings, "s3_ca_bundle", None))

    def _get(self, bucket: str, key: str, version_id: str | None, **kwargs: Any) -> Any:
        """get_object with the SSE-C key when there is one (retried without it for an object the
        store says was not written with one)."""
        if self._ssec is not None:
            try:
                return self.client.get_object(bucket, key, version_id=version_id, ssec=self._ssec, **kwargs)
            except S3Error as exc:
                if exc.code not in _SSEC_NOT_APPLICABLE:
                    raise
        return self.client.get_object(bucket, key, version_id=version_id, **kwargs)

    def _stat(self, bucket: str, key: str, version_id: str | None) -> Any:
        if self._ssec is not None:
            try:
                return self.client.stat_object(bucket, key, version_id=version_id, ssec=self._ssec)
            except S3Error as exc:
                if exc.code not in _SSEC_NOT_APPLICABLE:
                    raise
        return self.client.stat_object(bucket, key, version_id=version_id)

    def ensure_bucket(self, bucket: str | None = None, *, object_lock: bool = True) -> None:
        """Create the bucket (versioned, with object lock when asked and supported) or, when it
        exists, make sure versioning is on."""
        name = bucket or self.bucket
        try:
            if not self.client.bucket_exists(name):
                try:
                    self.client.make_bucket(name, object_lock=object_lock)
                except S3Error:
                    if not object_lock:
                        raise
                    self.client.make_bucket(name)  # a store without object lock
            if not self.versioning_enabled(name):
                self.client.set_bucket_versioning(name, VersioningConfig(ENABLED))
        except S3Error as exc:
            raise StorageError(f"bucket {name!r}: {exc.code}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"object store at {self.endpoint} unreachable: {type(exc).__name__}") from exc

    def versioning_enabled(self, bucket: str | None = None) -> bool:
        return self.client.get_bucket_versioning(bucket or self.bucket).status == ENABLED

    def supports_object_lock(self, bucket: str | None = None) -> bool:
        try:
            config = self.client.get_object_lock_config(bucket or self.bucket)
        except S3Error:
            return False
        return config is not None

    def ping(self) -> None:
        """Raise StorageError unless the store answers an authenticated request (one short try)."""
        try:
            self._probe.bucket_exists(self.bucket)
        except Exception as exc:
            raise StorageError(f"object store at {self.endpoint} unreachable: {type(exc).__name__}") from exc

    def available(self) -> bool:
        try:
            self.ping()
        except StorageError:
            return False
        return True

    def put(self, key: str, data: BinaryIO | bytes, length: int = -1, *,
            content_type: str = "application/octet-stream", part_size: int = PART_SIZE) -> StoredObject:
        """Store `data`; with length -1 it is read in part_size parts as an S3 multipart upload
        (aborted by the SDK if reading or sending fails), never held whole in memory."""
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        if isinstance(data, bytes):
            length = len(data)
        try:
            result = self.client.put_object(self.bucket, key, stream, length, content_type=content_type,
                                            part_size=part_size if length < 0 else 0, sse=self._sse)
        except S3Error as exc:
            raise StorageError(f"upload of {key!r} refused: {exc.code}") from exc
        return StoredObject(self.bucket, key, result.etag or "", result.version_id)

    def open(self, key: str, version_id: str | None = None, *, chunk_size: int = 64 * 1024,
             bucket: str | None = None) -> Iterator[bytes]:
        """Yield the object's bytes in chunks (streamed, never whole in memory)."""
        try:
            response = self._get(bucket or self.bucket, key, version_id)
        except S3Error as exc:
            raise StorageError(f"object {key!r}: {exc.code}") from exc
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def open_stream(self, key: str, version_id: str | None = None,
                    *, chunk_size: int = 64 * 1024, bucket: str | None = None) -> Iterator[bytes]:
        """Like open(), but the object is requested now (so a missing object or an outage raises
        StorageError here, before a response starts), and its bytes are yielded later."""
        try:
            response = self._get(bucket or self.bucket, key, version_id)
        except S3Error as exc:
            raise StorageError(f"object {key!r}: {exc.code}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"object store at {self.endpoint} unreachable: {type(exc).__name__}") from exc

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.stream(chunk_size)
            finally:
                response.close()
                response.release_conn()

        return chunks()

    def read_range(self, key: str, offset: int, length: int, version_id: str | None = None,
                   *, bucket: str | None = None) -> bytes:
        """`length` bytes from `offset` (a bounded ranged GET: e.g. a zip's central directory)."""
        try:
            response = self._get(bucket or self.bucket, key, version_id, offset=offset, length=length)
        except S3Error as exc:
            raise StorageError(f"object {key!r}: {exc.code}") from exc
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def stat(self, key: str, version_id: str | None = None, *, bucket: str | None = None) -> ObjectInfo | None:
        """The object's size, version and encryption, or None when it (or that version) does not exist."""
        try:
            info = self._stat(bucket or self.bucket, key, version_id)
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise StorageError(f"object {key!r}: {exc.code}") from exc
        headers = info.metadata or {}
        encryption = ("SSE-C" if headers.get("x-amz-server-side-encryption-customer-algorithm")
                      else headers.get("x-amz-server-side-encryption"))
        return ObjectInfo(key, int(info.size or 0), info.version_id, info.content_type, encryption=encryption)

    def copy(self, key: str, version_id: str | None, *, src_bucket: str, dest_bucket: str,
             dest_key: str | None = None) -> StoredObject:
        """Server-side copy of one object version to dest_bucket/dest_key (default: the same key);
        the bytes never pass through us. The copy is encrypted as this Storage writes (SSE mode)."""
        target = dest_key or key
        source = CopySource(src_bucket, key, version_id=version_id, ssec=self._ssec)
        try:
            try:
                result = self._copy(source, dest_bucket, target, src_bucket, key, version_id)
            except S3Error as exc:
                if self._ssec is None or exc.code not in _SSEC_NOT_APPLICABLE:
                    raise
                # A source not written under SSE-C: copy it without the source key.
                source = CopySource(src_bucket, key, version_id=version_id)
                result = self._copy(source, dest_bucket, target, src_bucket, key, version_id)
        except S3Error as exc:
            raise StorageError(f"copy of {key!r} to {dest_bucket!r}: {exc.code}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"object store at {self.endpoint} unreachable: {type(exc).__name__}") from exc
        return StoredObject(dest_bucket, target, result.etag or "", result.version_id)

    def _copy(self, source: CopySource, dest_bucket: str, dest_key: str, src_bucket: str, key: str,
              version_id: str | None) -> Any:
        if self._sse is None:
            return self.client.copy_object(dest_bucket, dest_key, source)
        # With the default COPY directive some stores (SeaweedFS) do not apply the new encryption;
        # REPLACE does, and the content type is carried over by hand.
        info = self._stat(src_bucket, key, version_id)
        metadata: dict[str, str | list[str] | tuple[str]] = {
            "Content-Type": info.content_type or "application/octet-stream"}
        return self.client.copy_object(dest_bucket, dest_key, source, sse=self._sse, metadata=metadata,
                                       metadata_directive=REPLACE)

    def list_objects(self, prefix: str = "", *, versions: bool = False) -> Iterator[ObjectInfo]:
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True, include_version=versions):
            if obj.is_dir:
                continue
            yield ObjectInfo(obj.object_name or "", int(obj.size or 0), obj.version_id, obj.content_type,
                             bool(obj.is_latest == "true" or obj.is_latest is True or not versions))

    def incomplete_uploads(self, prefix: str = "") -> list[dict[str, Any]]:
        """Multipart uploads begun and never completed or aborted (e.g. the store went away mid-way)."""
        result = self.client._list_multipart_uploads(self.bucket, prefix=prefix or None)
        return [{"key": u.object_name, "upload_id": u.upload_id, "initiated": u.initiated_time}
                for u in (result.uploads or [])]

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.client._abort_multipart_upload(self.bucket, key, upload_id)

    def lock(self, key: str, version_id: str | None, until: datetime, mode: str = GOVERNANCE,
             *, bucket: str | None = None) -> bool:
        """Put the object version under object lock until `until`; False when the store or bucket
        does not support object lock (versioning still keeps it from being overwritten).

        The bucket's object-lock configuration is asked first: some stores accept a retention on a
        bucket made without object lock and then do not enforce it."""
        name = bucket or self.bucket
        try:
            if not self.supports_object_lock(name):
                return False
            self.client.set_object_retention(name, key, Retention(mode, until), version_id=version_id)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"object store at {self.endpoint} unreachable: {type(exc).__name__}") from exc
        except S3Error as exc:
            if exc.code in ("InvalidRequest", "NotImplemented", "ObjectLockConfigurationNotFoundError",
                            "InvalidBucketState", "MethodNotAllowed"):
                return False
            raise StorageError(f"lock of {key!r}: {exc.code}") from exc
        return True

    def delete(self, key: str, version_id: str | None = None, *, bucket: str | None = None) -> None:
        """Remove the object (with version_id: that version, for good; without: a delete marker)."""
        try:
            self.client.remove_object(bucket or self.bucket, key, version_id=version_id)
        except S3Error as exc:
            raise StorageError(f"delete of {key!r}: {exc.code}") from exc

    def purge_bucket(self, bucket: str | None = None) -> None:
        """Tests and tools only: remove every version (bypassing governance-mode locks) and the bucket."""
        name = bucket or self.bucket
        objs = [DeleteObject(o.object_name or "", o.version_id)
                for o in self.client.list_objects(name, recursive=True, include_version=True)]
        for error in self.client.remove_objects(name, objs, bypass_governance_mode=True):
            raise StorageError(f"purge of {name!r}: {error.code} {error.name}")
        for upload in (self.client._list_multipart_uploads(name).uploads or []):
            self.client._abort_multipart_upload(name, upload.object_name or "", upload.upload_id or "")
        self.client.remove_bucket(name)
