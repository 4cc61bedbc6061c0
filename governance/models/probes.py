"""probes (collectors), checks (rules a probe evaluates) and results (outcomes, partitioned by month)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
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
    # The AI system the probe checks (its AI checks), if any: the system page lists its probes.
    ai_system_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="RESTRICT"), index=True
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
        # The dashboard's failing checks, newest first.
        Index("ix_checks_failing_last_result_at_id", "last_result_at", "id",
              postgresql_where=text("last_outcome IN ('non_compliant', 'partial', 'error') AND status = 'active'")),
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
    # The latest result, kept by the run that wrote it (pages and scoring never scan results).
    last_outcome: Mapped[ResultOutcome | None] = mapped_column(pg_enum(ResultOutcome))
    last_result_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_message: Mapped[str | None] = mapped_column(Text)

    probe: Mapped[Probe] = relationship(back_populates="checks")
    # The primary control (control_id); check_controls lists every control the check assesses,
    # the primary one included.
    control: Mapped[Control] = relationship(back_populates="checks")
    controls: Mapped[list[Control]] = relationship(secondary="check_controls", viewonly=True)
    # Results grow without bound: never load them as a collection, query them with select().
    results: Mapped[list[Result]] = relationship(back_populates="check", lazy="raise", viewonly=True)

    def __repr__(self) -> str:
        return f"<Check {self.name}>"


class CheckControl(UUIDPk, Timestamps, Base):
    """A check assesses one or more controls (the primary check.control_id is always one of them).
    A pure association row: it goes with its check (CASCADE); a control in use cannot be deleted."""

    __tablename__ = "check_controls"
    __table_args__ = (
        # One row per pair; also check_id's FK index.
        Index("uq_check_controls_check_id_control_id", "check_id", "control_id", unique=True),
    )

    check_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("checks.id", ondelete="CASCADE"), nullable=False
    )
    control_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT"), nullable=False, index=True
    )


class ProbeRun(UUIDPk, Timestamps, Base):
    """One run of a probe: queued by the schedule or "run now", executed by a queue worker.
    results.run_id is this row's id."""

    __tablename__ = "probe_runs"
    __table_args__ = (
        Index("ix_probe_runs_probe_id_created_at", "probe_id", "created_at"),
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'timed_out')",
                        name="status_known"),
        CheckConstraint("trigger IN ('schedule', 'manual')", name="trigger_known"),
    )

    probe_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("probes.id", ondelete="RESTRICT"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default=text("'queued'"))
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    # Outcome counts of the run's results ({"compliant": 3, "error": 1, ...}) and progress.
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    checks_total: Mapped[int | None] = mapped_column(Integer)
    checks_done: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))

    probe: Mapped[Probe] = relationship()
    requested_by: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<ProbeRun {self.probe_id} {self.status}>"


class Attestation(UUIDPk, Timestamps, Base):
    """A person's statement for a manual_attestation check: compliant or not, with a comment."""

    __tablename__ = "attestations"
    __table_args__ = (
        Index("ix_attestations_check_id_created_at", "check_id", "created_at"),
        CheckConstraint("outcome IN ('compliant', 'partial', 'non_compliant')", name="outcome_is_statement"),
    )

    check_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("checks.id", ondelete="RESTRICT"), nullable=False
    )
    attested_by_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    outcome: Mapped[ResultOutcome] = mapped_column(pg_enum(ResultOutcome), nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False)

    check: Mapped[Check] = relationship()
    attested_by: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<Attestation {self.check_id} {self.outcome}>"


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
    # Groups the results of one probe run: probe_runs.id (not a foreign key: results are partitioned
    # and outlive the runs' retention).
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    outcome: Mapped[ResultOutcome] = mapped_column(pg_enum(ResultOutcome), nullable=False)
    observed: Mapped[Any | None] = mapped_column(JSONB)
    expected: Mapped[Any | None] = mapped_column(JSONB)
    message: Mapped[str | None] = mapped_column(Text)
    resource: Mapped[str | None] = mapped_column(String(1024))

    check: Mapped[Check] = relationship(back_populates="results")

    def __repr__(self) -> str:
        return f"<Result {self.check_id} {self.outcome} {self.created_at}>"
