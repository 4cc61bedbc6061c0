"""scores (compliance ratings over time) and metrics (pre-aggregated KPIs for dashboards)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, Numeric, String, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from governance.models.base import Base, Timestamps, UUIDPk
from governance.models.enums import ScoreScope, pg_enum

if TYPE_CHECKING:
    from governance.models.frameworks import Control, Framework
    from governance.models.identity import User


class Score(UUIDPk, Timestamps, Base):
    """A compliance percentage for one framework, control or user at computed_at.

    Many score rows per subject (history): scores → controls is many-to-one (seed §4.3). Exactly
    the column matching `scope` is set, enforced by a CHECK.
    """

    __tablename__ = "scores"
    __table_args__ = (
        CheckConstraint(
            "(scope = 'framework' AND framework_id IS NOT NULL AND control_id IS NULL AND user_id IS NULL)"
            " OR (scope = 'control' AND control_id IS NOT NULL AND framework_id IS NULL AND user_id IS NULL)"
            " OR (scope = 'user' AND user_id IS NOT NULL AND framework_id IS NULL AND control_id IS NULL)",
            name="scope_matches_subject",
        ),
        CheckConstraint("value >= 0 AND value <= 100", name="value_percentage"),
        CheckConstraint(
            "passed IS NULL OR total IS NULL OR (passed >= 0 AND passed <= total)", name="passed_le_total"
        ),
        # Latest score of a subject; each is also the FK index of its subject column.
        Index("ix_scores_framework_id_computed_at", "framework_id", "computed_at"),
        Index("ix_scores_control_id_computed_at", "control_id", "computed_at"),
        Index("ix_scores_user_id_computed_at", "user_id", "computed_at"),
    )

    scope: Mapped[ScoreScope] = mapped_column(pg_enum(ScoreScope), nullable=False)
    framework_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("frameworks.id", ondelete="RESTRICT")
    )
    control_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT")
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    value: Mapped[Decimal] = mapped_column(Numeric(5, 2), nullable=False)
    passed: Mapped[int | None] = mapped_column(Integer)
    total: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    computed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    framework: Mapped[Framework | None] = relationship()
    control: Mapped[Control | None] = relationship()
    user: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<Score {self.scope} {self.value}>"


class Metric(UUIDPk, Timestamps, Base):
    """One KPI value for one period and set of dimensions, written by aggregation jobs.

    Unique on (key, period, dimensions) so a job can recompute a period with INSERT … ON CONFLICT.
    """

    __tablename__ = "metrics"
    __table_args__ = (
        Index(
            "uq_metrics_key_period_dimensions",
            "key",
            "period_start",
            "period_end",
            "dimensions",
            unique=True,
        ),
        Index("ix_metrics_dimensions", "dimensions", postgresql_using="gin"),
        CheckConstraint("period_end > period_start", name="period_ordered"),
    )

    key: Mapped[str] = mapped_column(String(128), nullable=False)
    value: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    dimensions: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    def __repr__(self) -> str:
        return f"<Metric {self.key}={self.value} {self.period_start:%Y-%m-%d}>"


class CurrentScore(UUIDPk, Timestamps, Base):
    """The current compliance of one control, framework or user, kept up to date incrementally
    (governance.services.scoring) whenever a result or an evidence review lands: pages read this row,
    never the results. The sums make a framework's or user's score updatable by the difference one
    control made, without reading its other controls. `scores` keeps the history."""

    __tablename__ = "current_scores"
    __table_args__ = (
        CheckConstraint(
            "(scope = 'framework' AND framework_id IS NOT NULL AND control_id IS NULL AND user_id IS NULL)"
            " OR (scope = 'control' AND control_id IS NOT NULL AND framework_id IS NULL AND user_id IS NULL)"
            " OR (scope = 'user' AND user_id IS NOT NULL AND framework_id IS NULL AND control_id IS NULL)",
            name="scope_matches_subject",
        ),
        CheckConstraint("value IS NULL OR (value >= 0 AND value <= 100)", name="value_percentage"),
        Index("uq_current_scores_framework_id", "framework_id", unique=True,
              postgresql_where=text("framework_id IS NOT NULL")),
        Index("uq_current_scores_control_id", "control_id", unique=True,
              postgresql_where=text("control_id IS NOT NULL")),
        Index("uq_current_scores_user_id", "user_id", unique=True, postgresql_where=text("user_id IS NOT NULL")),
    )

    scope: Mapped[ScoreScope] = mapped_column(pg_enum(ScoreScope), nullable=False)
    framework_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("frameworks.id", ondelete="RESTRICT")
    )
    control_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT")
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT")
    )
    # Percentage 0..100; NULL while nothing is assessable (no counted result yet).
    value: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    # sum of the counted controls' weights, and of weight * points (compliant 1, partial 0.5, non-compliant 0).
    weight_counted: Mapped[Decimal] = mapped_column(Numeric(14, 3), nullable=False, server_default=text("0"))
    weighted_points: Mapped[Decimal] = mapped_column(Numeric(14, 3), nullable=False, server_default=text("0"))
    compliant: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    partial: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    non_compliant: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    error: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    not_applicable: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    unassessed: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    computed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    def __repr__(self) -> str:
        return f"<CurrentScore {self.scope} {self.value}>"
