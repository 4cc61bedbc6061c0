"""notifications: in-app messages to one user (evidence about to expire, later assignments and
alerts), e-mailed too when SMTP is configured."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from governance.models.base import Base, Timestamps, UUIDPk

if TYPE_CHECKING:
    from governance.models.identity import User


class Notification(UUIDPk, Timestamps, Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # The unread count in the navigation and the list, newest first.
        Index("ix_notifications_user_id_created_at", "user_id", "created_at"),
        Index("ix_notifications_unread_user_id", "user_id", postgresql_where=text("read_at IS NULL")),
        # The e-mail outbox: what is still to be sent.
        Index("ix_notifications_pending_email_created_at", "created_at", postgresql_where=text("emailed_at IS NULL")),
        # One notice per subject and occasion (e.g. "evidence X expires on D" to user U), however
        # often the job that raises it runs.
        Index("uq_notifications_dedup_key", "dedup_key", unique=True, postgresql_where=text("dedup_key IS NOT NULL")),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    # A path inside the portal (never an external URL).
    link: Mapped[str | None] = mapped_column(String(1024))
    dedup_key: Mapped[str | None] = mapped_column(String(255))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    emailed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<Notification {self.kind} {self.title}>"
