"""audit_logs (who did what, when, with which outcome; partitioned by month) and alerts."""

from __future__ import annotations

import uuid
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from governance.models.base import Base, MonthlyPartitioned, Timestamps, UUIDPk
from governance.models.enums import AlertStatus, AuditOutcome, Severity, pg_enum

if TYPE_CHECKING:
    from governance.models.identity import User
    from governance.models.tasks import Task


class AuditLog(MonthlyPartitioned, Base):
    """One action (users → audit_logs one-to-many). Written in the same transaction as the change it
    records. Range-partitioned by month on created_at, so retention drops whole partitions and the
    primary key includes created_at."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        # A user's activity (and actor_id's FK index).
        Index("ix_audit_logs_actor_id_created_at", "actor_id", "created_at"),
        # An object's history.
        Index("ix_audit_logs_object_type_object_id_created_at", "object_type", "object_id", "created_at"),
        Index("ix_audit_logs_action_created_at", "action", "created_at"),
        Index("ix_audit_logs_request_id", "request_id"),
        # Hot subset for security monitoring: denied and failed actions.
        Index(
            "ix_audit_logs_not_success_created_at",
            "created_at",
            postgresql_where=text("outcome <> 'success'"),
        ),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    # NULL for system actions (jobs, probes); actor_name keeps who it was even if the user changes.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    actor_name: Mapped[str] = mapped_column(String(255), nullable=False)
    action: Mapped[str] = mapped_column(String(128), nullable=False)
    object_type: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[AuditOutcome] = mapped_column(pg_enum(AuditOutcome), nullable=False)
    # psycopg returns ipaddress objects; a string is accepted on the way in.
    ip: Mapped[IPv4Address | IPv6Address | str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(64))
    # before / after values and anything else the action wants to record.
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))

    actor: Mapped[User | None] = relationship(back_populates="audit_logs")

    def __repr__(self) -> str:
        return f"<AuditLog {self.actor_name} {self.action} {self.outcome}>"


class Alert(UUIDPk, Timestamps, Base):
    """A triggered notification or risk event (alerts → tasks one-to-many)."""

    __tablename__ = "alerts"
    __table_args__ = (
        # The open-alerts list and badge count.
        Index(
            "ix_alerts_open_severity_created_at",
            "severity",
            "created_at",
            postgresql_where=text("status = 'open'"),
        ),
        # At most one unresolved alert per dedup key: a failing check re-run does not pile up alerts.
        Index(
            "uq_alerts_unresolved_dedup_key",
            "dedup_key",
            unique=True,
            postgresql_where=text("status <> 'resolved' AND dedup_key IS NOT NULL"),
        ),
        Index("ix_alerts_source_type_source_id", "source_type", "source_id"),
    )

    rule: Mapped[str] = mapped_column(String(128), nullable=False)
    severity: Mapped[Severity] = mapped_column(
        pg_enum(Severity), nullable=False, server_default=Severity.MEDIUM.value
    )
    status: Mapped[AlertStatus] = mapped_column(
        pg_enum(AlertStatus), nullable=False, server_default=AlertStatus.OPEN.value
    )
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    # What raised it (e.g. "check", "<uuid>"): polymorphic, so not a foreign key.
    source_type: Mapped[str | None] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(255))
    dedup_key: Mapped[str | None] = mapped_column(String(255))
    acknowledged_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(Text)

    acknowledged_by: Mapped[User | None] = relationship()
    tasks: Mapped[list[Task]] = relationship(back_populates="alert", passive_deletes="all")

    def __repr__(self) -> str:
        return f"<Alert {self.rule} {self.severity} {self.status}>"
