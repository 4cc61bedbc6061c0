"""The object store interface against the real S3 server (SeaweedFS), one bucket per test."""

from __future__ import annotations

import io
import os

import pytest

from governance.storage import PART_SIZE, Storage, StorageError


def test_put_and_read_back_small_bytes(storage: Storage) -> None:
    stored = storage.put("evidence/a.txt", b"hello evidence", content_type="text/plain")
    assert stored.bucket == storage.bucket and stored.key == "evidence/a.txt" and stored.etag
    assert b"".join(storage.open("evidence/a.txt")) == b"hello evidence"


def test_a_stream_of_unknown_length_goes_up_as_multipart(storage: Storage) -> None:
    body = os.urandom(PART_SIZE + 1024)  # more than one part
    storage.put("evidence/big.bin", io.BytesIO(body))
    assert b"".join(storage.open("evidence/big.bin")) == body


def test_each_test_gets_its_own_empty_bucket(storage: Storage) -> None:
    assert storage.bucket.startswith("t-")
    assert list(storage.client.list_objects(storage.bucket, recursive=True)) == []


def test_a_missing_object_is_a_storage_error(storage: Storage) -> None:
    with pytest.raises(StorageError, match="NoSuchKey"):
        b"".join(storage.open("nothing/here"))


def test_delete_removes_the_object(storage: Storage) -> None:
    storage.put("evidence/gone.txt", b"x")
    storage.delete("evidence/gone.txt")
    with pytest.raises(StorageError):
        b"".join(storage.open("evidence/gone.txt"))


def test_wrong_credentials_are_refused(storage: Storage) -> None:
    intruder = Storage(storage.endpoint, "nobody", "wrong-secret", bucket=storage.bucket)
    with pytest.raises(StorageError):
        intruder.ping()
    with pytest.raises(StorageError):
        intruder.put("evidence/x", b"x")


def test_buckets_are_versioned_with_object_lock(storage: Storage) -> None:
    assert storage.versioning_enabled()
    assert storage.supports_object_lock()
    first = storage.put("evidence/v.txt", b"one")
    second = storage.put("evidence/v.txt", b"two")
    assert first.version_id and second.version_id and first.version_id != second.version_id
    # The overwritten version is still there, byte for byte.
    assert b"".join(storage.open("evidence/v.txt", first.version_id)) == b"one"
    assert storage.stat("evidence/v.txt", first.version_id).size == 3  # type: ignore[union-attr]
    assert storage.stat("evidence/none") is None


def test_a_locked_version_cannot_be_deleted(storage: Storage) -> None:
    from datetime import UTC, datetime, timedelta

    stored = storage.put("evidence/locked.txt", b"approved")
    assert storage.lock(stored.key, stored.version_id, datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(StorageError):
        storage.delete(stored.key, stored.version_id)
    assert b"".join(storage.open(stored.key, stored.version_id)) == b"approved"


def test_ranged_reads_and_listing(storage: Storage) -> None:
    storage.put("evidence/r.bin", b"0123456789")
    assert storage.read_range("evidence/r.bin", 7, 3) == b"789"
    assert [o.key for o in storage.list_objects("evidence/")] == ["evidence/r.bin"]
    assert storage.incomplete_uploads() == []
