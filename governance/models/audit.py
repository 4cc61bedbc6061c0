"""audit_logs (who did what, when, with which outcome; partitioned by month) and alerts."""

from __future__ import annotations

import uuid
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
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
    primary key includes created_at.

    Append-only and hash-chained (migration 0011, docs/audit.md): triggers refuse UPDATE, DELETE and
    TRUNCATE to every role but governance_break_glass, and a BEFORE INSERT trigger sets seq, prev_hash
    and hash (sha256 of prev_hash and the entry's canonical bytes, governance.services.audit_chain)
    under a lock on the chain's head row (audit_chain_heads)."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        # A user's activity (and actor_id's FK index).
        Index("ix_audit_logs_actor_id_created_at", "actor_id", "created_at"),
        # An object's history.
        Index("ix_audit_logs_object_type_object_id_created_at", "object_type", "object_id", "created_at"),
        Index("ix_audit_logs_action_created_at", "action", "created_at"),
        Index("ix_audit_logs_request_id", "request_id"),
        # The audit-log pages' plain newest-first order (keyset on created_at, id; migration 0012).
        Index("ix_audit_logs_created_at_id", "created_at", "id"),
        # The chain's order: `flask audit verify` walks it, anchors look entries up by it.
        Index("ix_audit_logs_seq", "seq"),
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
    # Set by the database (trigger audit_logs_chain) whatever the INSERT says: the position in the
    # chain (1, 2, 3 ... without gaps), the previous entry's hash (32 zero bytes before the first
    # entry) and this entry's hash.
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=FetchedValue())
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, server_default=FetchedValue())
    hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, server_default=FetchedValue())

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
    # Deduplication: a repeat of the same rule and subject while unresolved counts here, not in rows.
    occurrences: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                    server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                   server_default=func.now())
    # Who should act on it (the control's or probe's owner); their remediation task goes to them.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    # How it was resolved: the person's comment, or why it cleared by itself.
    resolution: Mapped[str | None] = mapped_column(Text)

    acknowledged_by: Mapped[User | None] = relationship(foreign_keys=[acknowledged_by_id])
    owner: Mapped[User | None] = relationship(foreign_keys=[owner_id])
    resolved_by: Mapped[User | None] = relationship(foreign_keys=[resolved_by_id])
    tasks: Mapped[list[Task]] = relationship(back_populates="alert", passive_deletes="all")
    events: Mapped[list[AlertEvent]] = relationship(back_populates="alert", passive_deletes="all",
                                                    order_by="AlertEvent.created_at")

    def __repr__(self) -> str:
        return f"<Alert {self.rule} {self.severity} {self.status}>"


class AlertEvent(UUIDPk, Timestamps, Base):
    """An alert's history: raised, repeated (first of a burst only is not required: every raise
    while unresolved may add one), acknowledged, resolved, auto_resolved, with who and a comment."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_alert_id_created_at", "alert_id", "created_at"),)

    alert_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("alerts.id", ondelete="RESTRICT"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    comment: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))

    alert: Mapped[Alert] = relationship(back_populates="events")
    actor: Mapped[User | None] = relationship()
