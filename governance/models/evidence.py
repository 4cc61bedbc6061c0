"""evidence (metadata of objects in the S3/MinIO store), its numbered revisions and their reviews,
and evidence_links."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from governance.models.base import Base, SoftDelete, Timestamps, UUIDPk
from governance.models.enums import EvidenceCategory, EvidenceStatus, pg_enum

if TYPE_CHECKING:
    from governance.models.frameworks import Control
    from governance.models.identity import User
    from governance.models.probes import Check
    from governance.models.tasks import Task

EVIDENCE_SEARCH_EXPR = (
    "to_tsvector('english'::regconfig, coalesce(name, '') || ' ' || coalesce(description, ''))"
)


class Evidence(UUIDPk, Timestamps, SoftDelete, Base):
    """One piece of evidence: its metadata, and (bucket, object_key, size, type, sha256) of its
    current revision (one-to-one with that object: object_key is unique).

    Every upload is an EvidenceRevision numbered 1, 2, …; the columns here mirror the newest one so
    lists read one row. status is the current revision's review state (or expired).
    control_id is the control the evidence was collected for (controls → evidence one-to-many);
    evidence_links attach it to further controls, checks and tasks (including that first control).
    owner_id is who answers for it (notified before it expires): the first uploader by default.
    """

    __tablename__ = "evidence"
    __table_args__ = (
        # Review queues and lists: live evidence by status, newest first.
        Index(
            "ix_evidence_live_status_created_at",
            "status",
            "created_at",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The evidence list: live evidence newest first, keyset on (created_at, id) (read backwards).
        Index(
            "ix_evidence_live_created_at_id",
            "created_at",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The expiry sweep: approved evidence that will expire.
        Index(
            "ix_evidence_approved_expires_at",
            "expires_at",
            postgresql_where=text("status = 'approved' AND deleted_at IS NULL AND expires_at IS NOT NULL"),
        ),
        Index("ix_evidence_search", "search", postgresql_using="gin"),
        CheckConstraint("size_bytes >= 0", name="size_non_negative"),
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        CheckConstraint(
            "period_start IS NULL OR period_end IS NULL OR period_end >= period_start",
            name="period_ordered",
        ),
    )

    name: Mapped[str] = mapped_column(String(500), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    bucket: Mapped[str] = mapped_column(String(255), nullable=False)
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False, unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content_type: Mapped[str] = mapped_column(
        String(255), nullable=False, server_default=text("'application/octet-stream'")
    )
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # NULL when a probe (not a person) collected it.
    uploaded_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    control_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT"), index=True
    )
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    # The number of the current (newest) revision; 0 only for rows made without an upload.
    revision_number: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # What the document is: the AI checks look for model cards, evaluation reports and data sheets.
    category: Mapped[EvidenceCategory] = mapped_column(
        pg_enum(EvidenceCategory), nullable=False, server_default=EvidenceCategory.GENERAL.value
    )
    status: Mapped[EvidenceStatus] = mapped_column(
        pg_enum(EvidenceStatus), nullable=False, server_default=EvidenceStatus.DRAFT.value
    )
    # The period the evidence covers (e.g. the quarter of an access review) and when it lapses.
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when retention moved its objects to the cold bucket (bucket then names that bucket).
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    search: Mapped[str | None] = deferred(
        mapped_column(TSVECTOR, Computed(EVIDENCE_SEARCH_EXPR, persisted=True))
    )

    uploaded_by: Mapped[User | None] = relationship(foreign_keys=[uploaded_by_id])
    owner: Mapped[User | None] = relationship(foreign_keys=[owner_id])
    control: Mapped[Control | None] = relationship(back_populates="evidence")
    revisions: Mapped[list[EvidenceRevision]] = relationship(
        back_populates="evidence", order_by="EvidenceRevision.number.desc()", passive_deletes="all"
    )
    links: Mapped[list[EvidenceLink]] = relationship(back_populates="evidence", passive_deletes=True)
    tasks: Mapped[list[Task]] = relationship(back_populates="evidence", passive_deletes="all")

    def __repr__(self) -> str:
        return f"<Evidence {self.name}>"


class EvidenceRevision(UUIDPk, Timestamps, Base):
    """One upload of a piece of evidence: its own object (a server-made key, never the user's file
    name) and S3 version, its hash, and its own review state. A revision is never overwritten: a
    new upload is a new revision; the bucket is versioned, and an approved revision's object version
    is put under object lock where the store supports it (locked_until)."""

    __tablename__ = "evidence_revisions"
    __table_args__ = (
        Index("uq_evidence_revisions_evidence_id_number", "evidence_id", "number", unique=True),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("size_bytes >= 0", name="size_non_negative"),
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        CheckConstraint("status IN ('draft', 'in_review', 'approved', 'rejected')", name="status_reviewable"),
    )

    evidence_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("evidence.id", ondelete="RESTRICT"), nullable=False
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    bucket: Mapped[str] = mapped_column(String(255), nullable=False)
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False, unique=True)
    version_id: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content_type: Mapped[str] = mapped_column(String(255), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # The uploader's file name, cleaned, for display and the download's file name only.
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    uploaded_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[EvidenceStatus] = mapped_column(
        pg_enum(EvidenceStatus), nullable=False, server_default=EvidenceStatus.IN_REVIEW.value
    )
    reviewed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_comment: Mapped[str | None] = mapped_column(Text)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when retention moved this revision's object to the cold bucket: bucket and version_id
    # then name the copy there.
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    evidence: Mapped[Evidence] = relationship(back_populates="revisions")
    uploaded_by: Mapped[User | None] = relationship(foreign_keys=[uploaded_by_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])
    reviews: Mapped[list[EvidenceReview]] = relationship(
        back_populates="revision", order_by="EvidenceReview.created_at", passive_deletes="all"
    )

    def __repr__(self) -> str:
        return f"<EvidenceRevision {self.evidence_id} #{self.number}>"


class EvidenceReview(UUIDPk, Timestamps, Base):
    """The review history: every approve / reject of a revision, with its comment (append-only)."""

    __tablename__ = "evidence_reviews"
    __table_args__ = (
        CheckConstraint("decision IN ('approved', 'rejected')", name="decision_is_verdict"),
    )

    evidence_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("evidence.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    revision_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("evidence_revisions.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    reviewer_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    decision: Mapped[EvidenceStatus] = mapped_column(pg_enum(EvidenceStatus), nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False)

    revision: Mapped[EvidenceRevision] = relationship(back_populates="reviews")
    reviewer: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<EvidenceReview {self.revision_id} {self.decision}>"


class EvidenceLink(UUIDPk, Timestamps, Base):
    """Attaches evidence to exactly one target: a control, a check, a remediation task or an AI system.

    A pure association row: meaningless without either end, so its foreign keys cascade (the ends
    themselves are soft-deleted, so in practice only a GDPR erasure of evidence removes links).
    """

    __tablename__ = "evidence_links"
    __table_args__ = (
        CheckConstraint("num_nonnulls(control_id, check_id, task_id, ai_system_id) = 1", name="exactly_one_target"),
        # One link per (target, evidence); each also serves as the FK index of its target column.
        Index(
            "uq_evidence_links_control_id_evidence_id",
            "control_id",
            "evidence_id",
            unique=True,
            postgresql_where=text("control_id IS NOT NULL"),
        ),
        Index(
            "uq_evidence_links_check_id_evidence_id",
            "check_id",
            "evidence_id",
            unique=True,
            postgresql_where=text("check_id IS NOT NULL"),
        ),
        Index(
            "uq_evidence_links_task_id_evidence_id",
            "task_id",
            "evidence_id",
            unique=True,
            postgresql_where=text("task_id IS NOT NULL"),
        ),
        Index(
            "uq_evidence_links_ai_system_id_evidence_id",
            "ai_system_id",
            "evidence_id",
            unique=True,
            postgresql_where=text("ai_system_id IS NOT NULL"),
        ),
    )

    evidence_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("evidence.id", ondelete="CASCADE"), nullable=False, index=True
    )
    control_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="CASCADE")
    )
    check_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("checks.id", ondelete="CASCADE")
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("tasks.id", ondelete="CASCADE")
    )
    ai_system_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="CASCADE")
    )
    linked_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    note: Mapped[str | None] = mapped_column(Text)

    evidence: Mapped[Evidence] = relationship(back_populates="links")
    control: Mapped[Control | None] = relationship()
    check: Mapped[Check | None] = relationship()
    task: Mapped[Task | None] = relationship(back_populates="evidence_links")
    linked_by: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        target = self.control_id or self.check_id or self.task_id
        return f"<EvidenceLink {self.evidence_id} -> {target}>"
