"""The object store (S3 protocol: MinIO in production, SeaweedFS in development and tests).

A small interface over the `minio` SDK, so the rest of the code never builds S3 requests itself.
Evidence buckets are versioned (an overwrite keeps the earlier version) and made with object lock
where the store supports it, so an approved revision's object version can be locked against
deletion and overwrite (docs/evidence.md).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, GOVERNANCE
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

# minio streams multipart uploads with memory ~ 4-6 x part_size (DESIGN.md); 8 MiB parts.
PART_SIZE = 8 * 1024 * 1024

# Fail fast when the store is down (pages must still render and say so), retry a little when it
# is briefly unwell. minio's default would retry for many seconds per request.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 120.0


# Health probes (a page asking "is the store up?") get one short try and no retry.
PROBE_TIMEOUT_S = 1.0


def _http_client() -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        maxsize=10,
        retries=urllib3.Retry(total=2, connect=1, backoff_factor=0.2,
                              status_forcelist=(500, 502, 503, 504)),
    )


def _probe_http_client() -> urllib3.PoolManager:
    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=PROBE_TIMEOUT_S, read=PROBE_TIMEOUT_S * 3),
                               maxsize=2, retries=False)


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


class Storage:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, *, bucket: str,
                 secure: bool = False, region: str | None = None) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region, http_client=_http_client())
        self._probe = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region, http_client=_probe_http_client())

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
                                            part_size=part_size if length < 0 else 0)
        except S3Error as exc:
            raise StorageError(f"upload of {key!r} refused: {exc.code}") from exc
        return StoredObject(self.bucket, key, result.etag or "", result.version_id)

    def open(self, key: str, version_id: str | None = None, *, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """Yield the object's bytes in chunks (streamed, never whole in memory)."""
        try:
            response = self.client.get_object(self.bucket, key, version_id=version_id)
        except S3Error as exc:
            raise StorageError(f"object {key!r}: {exc.code}") from exc
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def open_stream(self, key: str, version_id: str | None = None,
                    *, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """Like open(), but the object is requested now (so a missing object or an outage raises
        StorageError here, before a response starts), and its bytes are yielded later."""
        try:
            response = self.client.get_object(self.bucket, key, version_id=version_id)
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

    def read_range(self, key: str, offset: int, length: int, version_id: str | None = None) -> bytes:
        """`length` bytes from `offset` (a bounded ranged GET: e.g. a zip's central directory)."""
        try:
            response = self.client.get_object(self.bucket, key, offset=offset, length=length,
                                              version_id=version_id)
        except S3Error as exc:
            raise StorageError(f"object {key!r}: {exc.code}") from exc
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def stat(self, key: str, version_id: str | None = None) -> ObjectInfo | None:
        """The object's size and version, or None when it (or that version) does not exist."""
        try:
            info = self.client.stat_object(self.bucket, key, version_id=version_id)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion", "NoSuchObject", "NotFound", "ResourceNotFound"):
                return None
            raise StorageError(f"object {key!r}: {exc.code}") from exc
        return ObjectInfo(key, int(info.size or 0), info.version_id, info.content_type)

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

    def delete(self, key: str, version_id: str | None = None) -> None:
        """Remove the object (with version_id: that version, for good; without: a delete marker)."""
        try:
            self.client.remove_object(self.bucket, key, version_id=version_id)
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
