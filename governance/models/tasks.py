"""tasks: remediation work, raised by alerts or by people."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, Date, DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from governance.models.base import Base, SoftDelete, Timestamps, UUIDPk
from governance.models.enums import Severity, TaskStatus, pg_enum

if TYPE_CHECKING:
    from governance.models.audit import Alert
    from governance.models.evidence import Evidence, EvidenceLink
    from governance.models.frameworks import Control
    from governance.models.identity import User
    from governance.models.probes import Probe


class Task(UUIDPk, Timestamps, SoftDelete, Base):
    """A piece of remediation work.

    alerts → tasks is one-to-many (alert_id). tasks → evidence is many-to-one (evidence_id: the
    evidence item the task is about, e.g. "renew the expired pen-test report"; many tasks may concern
    one item). Evidence that a task *produced* is attached through evidence_links (task_id).
    """

    __tablename__ = "tasks"
    __table_args__ = (
        # "My open work": open / in-progress live tasks of an assignee by due date.
        Index(
            "ix_tasks_open_assignee_id_due_date",
            "assignee_id",
            "due_date",
            postgresql_where=text("status IN ('open', 'in_progress') AND deleted_at IS NULL"),
        ),
        # One remediation task per alert (opened automatically for high and critical alerts).
        Index("uq_tasks_alert_id", "alert_id", unique=True, postgresql_where=text("alert_id IS NOT NULL")),
        # The board: live tasks by status, soonest due first.
        Index("ix_tasks_live_status_due_date", "status", "due_date", postgresql_where=text("deleted_at IS NULL")),
        CheckConstraint("status <> 'wont_fix' OR resolution IS NOT NULL", name="wont_fix_has_reason"),
    )

    title: Mapped[str] = mapped_column(String(500), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[TaskStatus] = mapped_column(
        pg_enum(TaskStatus), nullable=False, server_default=TaskStatus.OPEN.value
    )
    priority: Mapped[Severity] = mapped_column(
        pg_enum(Severity), nullable=False, server_default=Severity.MEDIUM.value
    )
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    alert_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("alerts.id", ondelete="RESTRICT"), index=True
    )
    evidence_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("evidence.id", ondelete="RESTRICT"), index=True
    )
    control_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT"), index=True
    )
    probe_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("probes.id", ondelete="RESTRICT"), index=True
    )
    ai_system_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="RESTRICT"), index=True
    )
    due_date: Mapped[date | None] = mapped_column(Date)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why it was closed as wont_fix (required then), or a closing note.
    resolution: Mapped[str | None] = mapped_column(Text)

    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id])
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    alert: Mapped[Alert | None] = relationship(back_populates="tasks")
    evidence: Mapped[Evidence | None] = relationship(back_populates="tasks")
    control: Mapped[Control | None] = relationship()
    probe: Mapped[Probe | None] = relationship()
    evidence_links: Mapped[list[EvidenceLink]] = relationship(back_populates="task", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<Task {self.title} {self.status}>"
