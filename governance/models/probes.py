"""probes (collectors), checks (rules a probe evaluates) and results (outcomes, partitioned by month)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from governance.models.base import Base, MonthlyPartitioned, Timestamps, UUIDPk
from governance.models.enums import CheckStatus, ProbeStatus, ResultOutcome, Severity, pg_enum

if TYPE_CHECKING:
    from governance.models.frameworks import Control
    from governance.models.identity import User


class Probe(UUIDPk, Timestamps, Base):
    """A data collector or integration (built-in kind + config) run on a cron schedule."""

    __tablename__ = "probes"
    __table_args__ = (
        # The scheduler's hot query: enabled probes due next.
        Index("ix_probes_enabled_next_run_at", "next_run_at", postgresql_where=text("enabled")),
    )

    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    schedule: Mapped[str | None] = mapped_column(String(128))  # cron expression; NULL = manual only
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    status: Mapped[ProbeStatus] = mapped_column(
        pg_enum(ProbeStatus), nullable=False, server_default=ProbeStatus.IDLE.value
    )
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    owner: Mapped[User | None] = relationship()
    checks: Mapped[list[Check]] = relationship(back_populates="probe", passive_deletes="all")

    def __repr__(self) -> str:
        return f"<Probe {self.name} ({self.kind})>"


class Check(UUIDPk, Timestamps, Base):
    """One validation rule a probe evaluates, assessing one control (controls → checks one-to-many)."""

    __tablename__ = "checks"
    __table_args__ = (
        # Unique per probe; the leading column is probe_id's FK index.
        UniqueConstraint("probe_id", "name"),
        # The probe run's query: the active checks of one probe.
        Index("ix_checks_active_probe_id", "probe_id", postgresql_where=text("status = 'active'")),
    )

    probe_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("probes.id", ondelete="RESTRICT"), nullable=False
    )
    control_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[Severity] = mapped_column(
        pg_enum(Severity), nullable=False, server_default=Severity.MEDIUM.value
    )
    status: Mapped[CheckStatus] = mapped_column(
        pg_enum(CheckStatus), nullable=False, server_default=CheckStatus.ACTIVE.value
    )
    parameters: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )

    probe: Mapped[Probe] = relationship(back_populates="checks")
    control: Mapped[Control] = relationship(back_populates="checks")
    # Results grow without bound: never load them as a collection, query them with select().
    results: Mapped[list[Result]] = relationship(back_populates="check", lazy="raise", viewonly=True)

    def __repr__(self) -> str:
        return f"<Check {self.name}>"


class Result(MonthlyPartitioned, Base):
    """One outcome of one check in one run. Append-only and large: range-partitioned by month on
    created_at (see governance.services.partitions), so the primary key includes created_at."""

    __tablename__ = "results"
    __table_args__ = (
        # Latest results of a check (and check_id's FK index).
        Index("ix_results_check_id_created_at", "check_id", "created_at"),
        Index("ix_results_run_id", "run_id"),
        # Hot subset for dashboards and alerting: what is failing.
        Index(
            "ix_results_failing_check_id_created_at",
            "check_id",
            "created_at",
            postgresql_where=text("outcome IN ('non_compliant', 'partial', 'error')"),
        ),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    check_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("checks.id", ondelete="RESTRICT"), nullable=False
    )
    # Groups the results of one probe run (the job id); not a foreign key, runs are not a table.
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    outcome: Mapped[ResultOutcome] = mapped_column(pg_enum(ResultOutcome), nullable=False)
    observed: Mapped[Any | None] = mapped_column(JSONB)
    expected: Mapped[Any | None] = mapped_column(JSONB)
    message: Mapped[str | None] = mapped_column(Text)
    resource: Mapped[str | None] = mapped_column(String(1024))

    check: Mapped[Check] = relationship(back_populates="results")

    def __repr__(self) -> str:
        return f"<Result {self.check_id} {self.outcome} {self.created_at}>"
