"""users, roles and permissions (the Casbin rule table)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import INET, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from governance.models.base import Base, SoftDelete, Timestamps, UUIDPk

if TYPE_CHECKING:
    from governance.models.audit import AuditLog


class Role(UUIDPk, Timestamps, Base):
    """An access level (admin, compliance_officer, engineer, auditor). Casbin `g` rules name roles by
    `name`, so the name is the stable key and unique."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)

    users: Mapped[list[User]] = relationship(back_populates="role", passive_deletes="all")

    def __repr__(self) -> str:
        return f"<Role {self.name}>"


class User(UUIDPk, Timestamps, SoftDelete, Base):
    """An account. users → roles is many-to-one (seed §4.5); a user is never hard-deleted."""

    __tablename__ = "users"
    __table_args__ = (
        # Unique among live accounts, case-insensitively: a soft-deleted account frees its address.
        Index(
            "uq_users_lower_email_live",
            func.lower(text("email")),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    email: Mapped[str] = mapped_column(String(320), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("roles.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # TOTP (RFC 6238) shared secret, base32; set at enrolment, confirmed when mfa_enabled_at is set.
    mfa_secret: Mapped[str | None] = mapped_column(String(64))
    mfa_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    role: Mapped[Role] = relationship(back_populates="users", lazy="joined")
    audit_logs: Mapped[list[AuditLog]] = relationship(back_populates="actor", lazy="raise", viewonly=True)

    # The session-user protocol Flask-Login expects (is_active is the column above); written out
    # here so the domain does not import the web framework.
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)

    def __repr__(self) -> str:
        return f"<User {self.email}>"


class Permission(UUIDPk, Timestamps, Base):
    """One Casbin rule (`p` policy or `g` grouping), the shape casbin-sqlalchemy-adapter expects.

    Usable directly as the adapter's `db_class`: same column names, and the adapter's `__str__`
    (without it the adapter silently loads zero rules). The id has a server default, so the adapter
    can insert without one.
    """

    __tablename__ = "permissions"
    __table_args__ = (
        Index(
            "uq_permissions_rule",
            "ptype",
            "v0",
            "v1",
            "v2",
            "v3",
            "v4",
            "v5",
            unique=True,
            # NULLs compare equal: ("p", "admin", NULL...) twice is the same rule.
            postgresql_nulls_not_distinct=True,
        ),
    )

    ptype: Mapped[str] = mapped_column(String(255), nullable=False)
    v0: Mapped[str | None] = mapped_column(String(255))
    v1: Mapped[str | None] = mapped_column(String(255))
    v2: Mapped[str | None] = mapped_column(String(255))
    v3: Mapped[str | None] = mapped_column(String(255))
    v4: Mapped[str | None] = mapped_column(String(255))
    v5: Mapped[str | None] = mapped_column(String(255))

    def __str__(self) -> str:
        parts = [self.ptype]
        for value in (self.v0, self.v1, self.v2, self.v3, self.v4, self.v5):
            if value is None:
                break
            parts.append(value)
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f'<Permission {self.id}: "{self}">'


class UserSession(UUIDPk, Timestamps, Base):
    """A signed-in browser session, kept on the server so it can be revoked from any worker.

    The cookie carries only a random token; the table keeps its SHA-256. A session is valid while
    not revoked, before expires_at (absolute lifetime) and within the idle timeout of last_seen_at.
    """

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_id", "user_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Set once the second factor was checked in this session (NULL: password only so far).
    mfa_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(String(512))

    user: Mapped[User] = relationship(lazy="joined")


class RecoveryCode(UUIDPk, Timestamps, Base):
    """A one-time MFA recovery code (stored hashed); used_at set when spent."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_id", "user_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    code_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginAttempt(UUIDPk, Timestamps, Base):
    """One sign-in attempt, for throttling per account and per IP across every worker."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_email_created_at", "email", "created_at"),
        Index("ix_login_attempts_ip_created_at", "ip", "created_at"),
    )

    email: Mapped[str] = mapped_column(String(320), nullable=False)
    ip: Mapped[str | None] = mapped_column(INET)
    succeeded: Mapped[bool] = mapped_column(Boolean, nullable=False)
