"""Consistency of the evidence records with the object store (`flask evidence verify`).

Every revision row names one object version (bucket, object_key, version_id) with its size and
SHA-256; verify() checks that the version exists, has that size and (unless told not to) hashes to
that SHA-256, reading it as a stream. It also checks that each evidence row mirrors its current
revision, lists object versions under evidence/ in the evidence bucket that no revision names
(and delete markers hiding a key), and multipart uploads begun and never finished (aborting those
older than a threshold when asked). The run is audited ("evidence.verify", with the counts).

Memory stays flat whatever the size of the store: rows are read in keyset batches, the listing
is checked against the database one batch of keys at a time, objects are hashed chunk by chunk.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import urllib3
from minio.error import S3Error
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, aliased

from governance.models.enums import AuditOutcome
from governance.models.evidence import Evidence, EvidenceRevision
from governance.services import audit
from governance.storage import Storage, StorageError

PREFIX = "evidence/"
BATCH = 500
HASH_CHUNK = 1024 * 1024
MIRROR_LIMIT = 1000
DEFAULT_INCOMPLETE_AGE = timedelta(hours=1)

# The kinds of problem, in report order.
KINDS = ("missing", "size", "sha256", "unreadable", "mirror", "orphan", "delete_marker", "incomplete")


class StoreUnreachable(RuntimeError):
    pass


@dataclass(frozen=True)
class Problem:
    kind: str
    key: str
    version_id: str | None
    message: str

    def line(self) -> str:
        where = self.key + (f" version {self.version_id}" if self.version_id else "")
        return f"{self.kind.upper():<13} {where}: {self.message}"


@dataclass
class VerifyReport:
    bucket: str
    hashed: bool
    revisions_checked: int = 0
    versions_listed: int = 0
    problems: list[Problem] = field(default_factory=list)
    # Incomplete uploads younger than the threshold (an upload may be running right now): not problems.
    in_progress: list[dict[str, Any]] = field(default_factory=list)
    aborted: list[dict[str, Any]] = field(default_factory=list)
    unreachable: str | None = None

    @property
    def clean(self) -> bool:
        return not self.problems and self.unreachable is None

    def counts(self) -> dict[str, int]:
        by_kind = Counter(p.kind for p in self.problems)
        return {"revisions_checked": self.revisions_checked, "versions_listed": self.versions_listed,
                **{kind: by_kind.get(kind, 0) for kind in KINDS},
                "aborted": len(self.aborted), "in_progress": len(self.in_progress),
                "problems": len(self.problems)}

    def summary(self) -> str:
        counts = self.counts()
        if self.unreachable:
            return f"UNREACHABLE: {self.unreachable} (checked {self.revisions_checked} revision(s) before that)"
        found = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in KINDS)
        return (f"{'OK' if self.clean else 'PROBLEMS'}: {counts['problems']} problem(s) in bucket {self.bucket}; "
                f"{self.revisions_checked} revision(s) checked ({'size and SHA-256' if self.hashed else 'size only'}), "
                f"{self.versions_listed} object version(s) listed under {PREFIX}; {found}; "
                f"{counts['aborted']} incomplete upload(s) aborted, {counts['in_progress']} in progress")


def _store_for(storage: Storage, bucket: str) -> Storage:
    """The same store and client on another bucket (rows written while a different bucket was
    configured are checked where they are)."""
    if bucket == storage.bucket:
        return storage
    other = copy.copy(storage)
    other.bucket = bucket
    return other


def _revision_batches(session: Session) -> Iterator[list[Any]]:
    after: uuid.UUID | None = None
    while True:
        stmt = select(EvidenceRevision.id, EvidenceRevision.evidence_id, EvidenceRevision.number,
                      EvidenceRevision.bucket, EvidenceRevision.object_key, EvidenceRevision.version_id,
                      EvidenceRevision.size_bytes, EvidenceRevision.sha256).order_by(EvidenceRevision.id).limit(BATCH)
        if after is not None:
            stmt = stmt.where(EvidenceRevision.id > after)
        rows = session.execute(stmt).all()
        if rows:
            yield list(rows)
        if len(rows) < BATCH:
            return
        after = rows[-1][0]


def _sha256(store: Storage, key: str, version_id: str | None) -> str:
    digest = hashlib.sha256()
    for chunk in store.open(key, version_id, chunk_size=HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _check_revisions(session: Session, storage: Storage, report: VerifyReport, hashed: bool) -> None:
    for rows in _revision_batches(session):
        for _id, evidence_id, number, bucket, key, version_id, size, sha256 in rows:
            report.revisions_checked += 1
            whose = f"evidence {evidence_id} revision {number}"
            store = _store_for(storage, bucket)
            try:
                info = store.stat(key, version_id)
                if info is None:
                    report.problems.append(Problem("missing", key, version_id,
                                                   f"{whose}: object version not in bucket {bucket}"))
                elif info.size != size:
                    report.problems.append(Problem("size", key, version_id,
                                                   f"{whose}: row says {size} bytes, store has {info.size}"))
                elif hashed:
                    actual = _sha256(store, key, version_id)
                    if actual != sha256:
                        report.problems.append(Problem("sha256", key, version_id,
                                                       f"{whose}: row says {sha256}, object hashes to {actual}"))
            except StorageError as exc:
                report.problems.append(Problem("unreadable", key, version_id, f"{whose}: {exc}"))


def _check_mirrors(session: Session, report: VerifyReport) -> None:
    """Each evidence row must describe its current revision (revision_number) exactly."""
    current = aliased(EvidenceRevision)
    rows = session.execute(
        select(Evidence.id, Evidence.object_key, Evidence.revision_number, current.id)
        .outerjoin(current, and_(current.evidence_id == Evidence.id, current.number == Evidence.revision_number))
        .where(Evidence.revision_number > 0,
               or_(current.id.is_(None), current.object_key != Evidence.object_key,
                   current.bucket != Evidence.bucket, current.sha256 != Evidence.sha256,
                   current.size_bytes != Evidence.size_bytes))
        .order_by(Evidence.id)
        .limit(MIRROR_LIMIT)
        .execution_options(include_deleted=True)
    ).all()
    for evidence_id, key, number, revision_id in rows:
        what = "has no such revision" if revision_id is None else "differs from that revision's object, size or hash"
        report.problems.append(Problem("mirror", key, None,
                                       f"evidence {evidence_id} names revision {number} as current but {what}"))


def _listed_versions(storage: Storage) -> Iterator[tuple[str, str | None, bool]]:
    """(key, version_id, is_delete_marker) of every version under PREFIX. Storage.list_objects does
    not tell delete markers apart from empty objects, so this reads the SDK's listing."""
    for obj in storage.client.list_objects(storage.bucket, prefix=PREFIX, recursive=True, include_version=True):
        if obj.is_dir:
            continue
        yield obj.object_name or "", obj.version_id, bool(obj.is_delete_marker)


def _check_orphans(session: Session, storage: Storage, report: VerifyReport) -> None:
    listing = _listed_versions(storage)
    while batch := list(islice(listing, BATCH)):
        report.versions_listed += len(batch)
        named: dict[str, set[str | None]] = {}
        for key, version_id in session.execute(
            select(EvidenceRevision.object_key, EvidenceRevision.version_id)
            .where(EvidenceRevision.bucket == storage.bucket,
                   EvidenceRevision.object_key.in_({k for k, _v, _m in batch}))
        ):
            named.setdefault(key, set()).add(version_id)
        for key, version_id, marker in batch:
            versions = named.get(key)
            if marker:
                report.problems.append(Problem(
                    "delete_marker", key, version_id,
                    "a delete marker hides this key" + (" (the revision's version is still kept)" if versions else "")))
            elif versions is None or (version_id not in versions and None not in versions):
                report.problems.append(Problem("orphan", key, version_id, "no revision row names this object version"))


def _check_incomplete(storage: Storage, report: VerifyReport, *, abort: bool, older_than: timedelta,
                      now: datetime) -> None:
    for upload in storage.incomplete_uploads(PREFIX):
        initiated = upload.get("initiated")
        age = now - initiated if isinstance(initiated, datetime) else None
        if age is not None and age < older_than:
            report.in_progress.append(upload)
            continue
        started = initiated.isoformat() if isinstance(initiated, datetime) else "at an unknown time"
        if abort:
            storage.abort_upload(upload["key"], upload["upload_id"])
            report.aborted.append(upload)
            continue
        report.problems.append(Problem("incomplete", upload["key"], None,
                                       f"multipart upload {upload['upload_id']} begun {started} never completed"))


def verify(session: Session, storage: Storage, *, hashed: bool = True, abort_incomplete: bool = False,
           incomplete_age: timedelta = DEFAULT_INCOMPLETE_AGE, now: datetime | None = None) -> VerifyReport:
    """Check the records against the store (see the module docstring) and audit the run in the
    caller's transaction. A store that cannot be reached ends the run: report.unreachable says why."""
    now = now or datetime.now(UTC)
    report = VerifyReport(bucket=storage.bucket, hashed=hashed)
    try:
        storage.ping()
        _check_mirrors(session, report)
        _check_revisions(session, storage, report, hashed)
        _check_orphans(session, storage, report)
        _check_incomplete(storage, report, abort=abort_incomplete, older_than=incomplete_age, now=now)
    except StorageError as exc:
        report.unreachable = str(exc)
    except S3Error as exc:  # the listing calls: the bucket is gone, or the credentials refused
        report.unreachable = f"object store at {storage.endpoint} refused: {exc.code}"
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        report.unreachable = f"object store at {storage.endpoint} unreachable: {type(exc).__name__}"
    audit.record(
        session, "evidence.verify", object_type="evidence_store", object_id=storage.bucket,
        outcome=AuditOutcome.SUCCESS if report.clean else AuditOutcome.ERROR,
        details={**report.counts(), "hashed": hashed, "abort_incomplete": abort_incomplete,
                 "unreachable": report.unreachable,
                 "aborted_uploads": [{"key": u["key"], "upload_id": u["upload_id"]} for u in report.aborted],
                 # The first problems, so the log says what was wrong without the full report.
                 "first_problems": [p.line() for p in report.problems[:20]]},
    )
    return report
