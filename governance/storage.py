"""The object store (S3 protocol: MinIO in production, SeaweedFS in development and tests).

A small interface over the `minio` SDK, so the rest of the code never builds S3 requests itself.
Evidence streaming, versioning and object lock build on this in the evidence issue.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from minio import Minio
from minio.error import S3Error

# minio streams multipart uploads with memory ~ 4-6 x part_size (DESIGN.md): 8 MiB parts.
PART_SIZE = 8 * 1024 * 1024


class StorageError(RuntimeError):
    """The object store refused or could not be reached; the message says which."""


@dataclass
class StoredObject:
    bucket: str
    key: str
    etag: str
    version_id: str | None


class Storage:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, *, bucket: str,
                 secure: bool = False, region: str | None = None) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region)

    def ensure_bucket(self, bucket: str | None = None) -> None:
        name = bucket or self.bucket
        try:
            if not self.client.bucket_exists(name):
                self.client.make_bucket(name)
        except S3Error as exc:
            raise StorageError(f"bucket {name!r}: {exc.code}") from exc

    def ping(self) -> None:
        """Raise StorageError unless the store answers an authenticated request."""
        try:
            self.client.bucket_exists(self.bucket)
        except Exception as exc:
            raise StorageError(f"object store at {self.endpoint} unreachable: {type(exc).__name__}") from exc

    def put(self, key: str, data: BinaryIO | bytes, length: int = -1, *,
            content_type: str = "application/octet-stream") -> StoredObject:
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        if isinstance(data, bytes):
            length = len(data)
        try:
            result = self.client.put_object(self.bucket, key, stream, length, content_type=content_type,
                                            part_size=PART_SIZE if length < 0 else 0)
        except S3Error as exc:
            raise StorageError(f"upload of {key!r} refused: {exc.code}") from exc
        return StoredObject(self.bucket, key, result.etag or "", result.version_id)

    def open(self, key: str, version_id: str | None = None) -> Iterator[bytes]:
        """Yield the object's bytes in chunks (streamed, never whole in memory)."""
        try:
            response = self.client.get_object(self.bucket, key, version_id=version_id)
        except S3Error as exc:
            raise StorageError(f"object {key!r}: {exc.code}") from exc
        try:
            yield from response.stream(64 * 1024)
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str, version_id: str | None = None) -> None:
        self.client.remove_object(self.bucket, key, version_id=version_id)
