"""Audit-ready reports (docs/reports.md): a statement of applicability of one framework or one AI
system, rendered by a job as PDF, CSV or OSCAL assessment-results JSON into the evidence bucket.

A row is the request and its outcome: what it covers, who asked, the time of the snapshot it read
(as_of: one REPEATABLE READ transaction) and the SHA-256 of the bytes it stored, so a filed report
can be checked against the portal later.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from governance.models.base import Base, Timestamps, UUIDPk
from governance.models.enums import ReportFormat, ReportScope, ReportStatus, pg_enum

__all__ = ["Report", "ReportFormat", "ReportScope", "ReportStatus"]


class Report(UUIDPk, Timestamps, Base):
    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_framework_id", "framework_id"),
        Index("ix_reports_ai_system_id", "ai_system_id"),
        Index("ix_reports_requested_by_id", "requested_by_id"),
        # The reports list: newest first, keyset on (created_at, id).
        Index("ix_reports_created_at_id", "created_at", "id"),
        CheckConstraint(
            "(scope = 'framework' AND framework_id IS NOT NULL AND ai_system_id IS NULL) OR "
            "(scope = 'ai_system' AND ai_system_id IS NOT NULL AND framework_id IS NULL)",
            name="one_target_of_its_scope"),
        CheckConstraint("period_start <= period_end", name="period_ordered"),
        CheckConstraint("status <> 'succeeded' OR (sha256 IS NOT NULL AND as_of IS NOT NULL "
                        "AND object_key IS NOT NULL AND size_bytes IS NOT NULL)", name="success_has_content"),
    )

    scope: Mapped[ReportScope] = mapped_column(pg_enum(ReportScope), nullable=False)
    framework_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("frameworks.id", ondelete="RESTRICT"))
    ai_system_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="RESTRICT"))
    format: Mapped[ReportFormat] = mapped_column(pg_enum(ReportFormat), nullable=False)
    status: Mapped[ReportStatus] = mapped_column(
        pg_enum(ReportStatus), nullable=False, server_default=ReportStatus.QUEUED.value)
    period_start: Mapped[date] = mapped_column(Date, nullable=False)
    period_end: Mapped[date] = mapped_column(Date, nullable=False)
    # The target's name when requested, so the list reads well without joins.
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"))
    as_of: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    bucket: Mapped[str | None] = mapped_column(String(255))
    object_key: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def extension(self) -> str:
        return "json" if self.format == ReportFormat.OSCAL else self.format.value

    @property
    def content_type(self) -> str:
        return {ReportFormat.PDF: "application/pdf", ReportFormat.CSV: "text/csv; charset=utf-8",
                ReportFormat.OSCAL: "application/json"}[self.format]
