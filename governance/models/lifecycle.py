"""Data lifecycle (docs/operations.md): backups and their restore drills, legal holds, archived audit
partitions, GDPR erasure requests and the per-person keys that seal personal data in the audit log.

A backup's bytes live in the backup bucket (encrypted; its manifest beside it), so a restore needs
only the bucket and the key; the `backups` row is the history the admin page, retention and the
"last successful backup" check read.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from governance.models.base import Base, Timestamps, UUIDPk
from governance.models.enums import BackupKind, BackupStatus, DrillStatus, ErasureStatus, HoldTarget, pg_enum


class Backup(UUIDPk, Timestamps, Base):
    """One backup: a pg_dump (custom format) and a manifest, both encrypted, in the backup bucket.

    created_at is when it started. A diff names the full backup it completes (base_id)."""

    __tablename__ = "backups"
    __table_args__ = (
        Index("ix_backups_base_id", "base_id"),
        # "The newest successful full backup" and "the last successful backup" checks.
        Index("ix_backups_status_kind_created_at", "status", "kind", "created_at"),
        CheckConstraint("(kind = 'diff') = (base_id IS NOT NULL)", name="diff_has_base"),
    )

    kind: Mapped[BackupKind] = mapped_column(pg_enum(BackupKind), nullable=False)
    status: Mapped[BackupStatus] = mapped_column(
        pg_enum(BackupStatus), nullable=False, server_default=BackupStatus.RUNNING.value
    )
    base_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("backups.id", ondelete="RESTRICT")
    )
    bucket: Mapped[str] = mapped_column(String(255), nullable=False)
    # backups/<id>/database.dump.enc and backups/<id>/manifest.json.enc
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    manifest_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # SHA-256 of the encrypted object as stored (what a copy elsewhere can be checked against).
    sha256: Mapped[str | None] = mapped_column(String(64))
    # The Alembic head of the database when it was taken (restore migrates forward from it).
    migration_head: Mapped[str | None] = mapped_column(String(64))
    tables: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(BigInteger)
    evidence_objects: Mapped[int | None] = mapped_column(Integer)
    # Tables whose data this backup carries (a diff: those changed since its full one).
    tables_included: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    # Who or what started it (a CLI command, the scheduled job).
    started_by: Mapped[str] = mapped_column(String(255), nullable=False)

    def __repr__(self) -> str:
        return f"<Backup {self.kind} {self.status} {self.id}>"


class RestoreDrill(UUIDPk, Timestamps, Base):
    """A restore of a backup into a scratch database and the checks made on it (created_at: start)."""

    __tablename__ = "restore_drills"
    __table_args__ = (
        Index("ix_restore_drills_backup_id", "backup_id"),
        Index("ix_restore_drills_created_at", "created_at"),
    )

    # A pruned backup keeps its row (status pruned), so its drills keep their reference.
    backup_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("backups.id", ondelete="RESTRICT")
    )
    status: Mapped[DrillStatus] = mapped_column(
        pg_enum(DrillStatus), nullable=False, server_default=DrillStatus.RUNNING.value
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Seconds from the first byte read to a migrated database (the measured restore time).
    restore_seconds: Mapped[float | None] = mapped_column(Float)
    tables_checked: Mapped[int | None] = mapped_column(Integer)
    rows_checked: Mapped[int | None] = mapped_column(BigInteger)
    objects_checked: Mapped[int | None] = mapped_column(Integer)
    chain_ok: Mapped[bool | None] = mapped_column(Boolean)
    # Each mismatch found, as {"check": ..., "message": ...}; empty when it passed.
    problems: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    started_by: Mapped[str] = mapped_column(String(255), nullable=False)


class LegalHold(UUIDPk, Timestamps, Base):
    """Blocks archival and deletion of its target (and, for a framework or control, what is under it)
    until released. Released holds stay as history."""

    __tablename__ = "legal_holds"
    __table_args__ = (
        CheckConstraint(
            "num_nonnulls(framework_id, control_id, evidence_id) = 1 AND "
            "(target_type <> 'framework' OR framework_id IS NOT NULL) AND "
            "(target_type <> 'control' OR control_id IS NOT NULL) AND "
            "(target_type <> 'evidence' OR evidence_id IS NOT NULL)",
            name="one_target_of_its_type",
        ),
        CheckConstraint("(released_at IS NULL) = (released_by_id IS NULL)", name="release_is_named"),
        Index("ix_legal_holds_framework_id", "framework_id"),
        Index("ix_legal_holds_control_id", "control_id"),
        Index("ix_legal_holds_evidence_id", "evidence_id"),
        Index("ix_legal_holds_placed_by_id", "placed_by_id"),
        Index("ix_legal_holds_released_by_id", "released_by_id"),
        Index("ix_legal_holds_active", "target_type", postgresql_where=text("released_at IS NULL")),
    )

    target_type: Mapped[HoldTarget] = mapped_column(pg_enum(HoldTarget), nullable=False)
    framework_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("frameworks.id", ondelete="RESTRICT")
    )
    control_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT")
    )
    evidence_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("evidence.id", ondelete="RESTRICT")
    )
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    placed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    release_reason: Mapped[str | None] = mapped_column(Text)


class AuditArchive(UUIDPk, Timestamps, Base):
    """An audit_logs partition exported to cold storage, verified, then dropped.

    The newest archive's (last_seq, last_hash) is where the live chain now starts: `flask audit
    verify` accepts a first entry of seq last_seq + 1 whose prev_hash is last_hash, when a chained
    `retention.audit_archived` entry vouches for the same pair (docs/audit.md)."""

    __tablename__ = "audit_archives"

    partition_name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    range_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    range_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    first_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    rows: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bucket: Mapped[str] = mapped_column(String(255), nullable=False)
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dropped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ErasureRequest(UUIDPk, Timestamps, Base):
    """A GDPR Article 17 erasure of one user: requested, approved by another admin, executed once;
    the receipt lists what was removed or pseudonymised, table by table."""

    __tablename__ = "erasure_requests"
    __table_args__ = (
        # One open request per person.
        Index("uq_erasure_requests_open_subject_id", "subject_id", unique=True,
              postgresql_where=text("status IN ('requested', 'approved')")),
        Index("ix_erasure_requests_subject_id", "subject_id"),
        Index("ix_erasure_requests_requested_by_id", "requested_by_id"),
        Index("ix_erasure_requests_decided_by_id", "decided_by_id"),
        Index("ix_erasure_requests_executed_by_id", "executed_by_id"),
        CheckConstraint(
            "status = 'requested' OR (decided_by_id IS NOT NULL AND decided_at IS NOT NULL)",
            name="decision_is_named",
        ),
        CheckConstraint("status <> 'executed' OR (executed_at IS NOT NULL AND receipt IS NOT NULL)",
                        name="execution_has_receipt"),
    )

    subject_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[ErasureStatus] = mapped_column(
        pg_enum(ErasureStatus), nullable=False, server_default=ErasureStatus.REQUESTED.value
    )
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_comment: Mapped[str | None] = mapped_column(Text)
    executed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    executed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    receipt_sha256: Mapped[str | None] = mapped_column(String(64))


class PersonKey(UUIDPk, Timestamps, Base):
    """The key that seals one person's personal fields in audit entries (AES-256-GCM). Erasure
    destroys it (key NULL, destroyed_at set): the sealed fields become unreadable while the entries,
    and the hash chain over their ciphertext, stay intact."""

    __tablename__ = "person_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, unique=True
    )
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("(key IS NULL) = (destroyed_at IS NOT NULL)", name="key_or_destroyed"),
    )
