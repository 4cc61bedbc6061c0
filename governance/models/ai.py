"""The AI inventory: AI systems (use cases), the models and datasets they use, their EU AI Act
classifications and impact assessments, and the controls that apply to them.

Classifications and impact assessments are versioned: a new answer set is a new row (version n+1),
never an update of an old one, so the history of a system's risk class and of each assessment
approval stays readable. ai_systems.risk_class mirrors the newest classification for lists.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from governance.models.base import Base, SoftDelete, Timestamps, UUIDPk
from governance.models.enums import (
    AIActRole,
    AIAutonomy,
    AILifecycleStage,
    AIModelApproval,
    AIRiskClass,
    AssessmentStatus,
    pg_enum,
)

if TYPE_CHECKING:
    from governance.models.frameworks import Control
    from governance.models.identity import User


class AISystem(UUIDPk, Timestamps, SoftDelete, Base):
    """One AI system / use case the organisation governs."""

    __tablename__ = "ai_systems"
    __table_args__ = (
        # A live system's name is unique (a deleted one's may be reused).
        Index("uq_ai_systems_live_name", "name", unique=True, postgresql_where=text("deleted_at IS NULL")),
        Index("ix_ai_systems_live_risk_class", "risk_class", postgresql_where=text("deleted_at IS NULL")),
        Index("ix_ai_systems_live_lifecycle_stage", "lifecycle_stage", postgresql_where=text("deleted_at IS NULL")),
    )

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    purpose: Mapped[str] = mapped_column(Text, nullable=False)
    intended_use: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    business_unit: Mapped[str | None] = mapped_column(String(255))
    lifecycle_stage: Mapped[AILifecycleStage] = mapped_column(
        pg_enum(AILifecycleStage), nullable=False, server_default=AILifecycleStage.IDEA.value
    )
    eu_role: Mapped[AIActRole] = mapped_column(
        pg_enum(AIActRole), nullable=False, server_default=AIActRole.DEPLOYER.value
    )
    autonomy_level: Mapped[AIAutonomy] = mapped_column(
        pg_enum(AIAutonomy), nullable=False, server_default=AIAutonomy.ASSISTIVE.value
    )
    # How people oversee it (Article 14), and who answers for that oversight.
    human_oversight: Mapped[str | None] = mapped_column(Text)
    oversight_owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    data_categories: Mapped[list[str]] = mapped_column(
        ARRAY(String(128)), nullable=False, server_default=text("'{}'::varchar[]")
    )
    deployment_regions: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), nullable=False, server_default=text("'{}'::varchar[]")
    )
    next_review_date: Mapped[date | None] = mapped_column(Date)
    # The newest classification's result (NULL: not classified yet).
    risk_class: Mapped[AIRiskClass | None] = mapped_column(pg_enum(AIRiskClass))
    classified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # EU database registration (Article 49, Annex VIII): what the register view shows.
    provider_name: Mapped[str | None] = mapped_column(String(255))
    operating_logic: Mapped[str | None] = mapped_column(Text)
    conformity_certificate: Mapped[str | None] = mapped_column(String(500))
    eu_database_id: Mapped[str | None] = mapped_column(String(128))
    instructions_url: Mapped[str | None] = mapped_column(String(2048))

    owner: Mapped[User | None] = relationship(foreign_keys=[owner_id])
    oversight_owner: Mapped[User | None] = relationship(foreign_keys=[oversight_owner_id])
    models: Mapped[list[AIModel]] = relationship(secondary="ai_system_models", viewonly=True,
                                                 order_by="AIModel.name")
    datasets: Mapped[list[Dataset]] = relationship(secondary="ai_system_datasets", viewonly=True,
                                                   order_by="Dataset.name")

    def __repr__(self) -> str:
        return f"<AISystem {self.name}>"


class AIModel(UUIDPk, Timestamps, SoftDelete, Base):
    """A model (one version) that AI systems use."""

    __tablename__ = "ai_models"
    __table_args__ = (
        Index("uq_ai_models_live_name_version", "name", "version", unique=True,
              postgresql_where=text("deleted_at IS NULL")),
    )

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    version: Mapped[str] = mapped_column(String(128), nullable=False, server_default=text("''"))
    provider: Mapped[str | None] = mapped_column(String(255))
    license: Mapped[str | None] = mapped_column(String(255))
    approval_status: Mapped[AIModelApproval] = mapped_column(
        pg_enum(AIModelApproval), nullable=False, server_default=AIModelApproval.PENDING.value
    )
    notes: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<AIModel {self.name} {self.version}>"


class Dataset(UUIDPk, Timestamps, SoftDelete, Base):
    """A dataset AI systems are trained, evaluated or run on."""

    __tablename__ = "datasets"
    __table_args__ = (
        Index("uq_datasets_live_name", "name", unique=True, postgresql_where=text("deleted_at IS NULL")),
    )

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    source: Mapped[str | None] = mapped_column(Text)
    personal_data: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    license: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<Dataset {self.name}>"


class AISystemModel(UUIDPk, Timestamps, Base):
    """A system uses a model (many-to-many). Goes with its system; a model in use cannot be removed."""

    __tablename__ = "ai_system_models"
    __table_args__ = (UniqueConstraint("system_id", "model_id"),)

    system_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="CASCADE"), nullable=False
    )
    model_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_models.id", ondelete="RESTRICT"), nullable=False, index=True
    )


class AISystemDataset(UUIDPk, Timestamps, Base):
    """A system uses a dataset (many-to-many)."""

    __tablename__ = "ai_system_datasets"
    __table_args__ = (UniqueConstraint("system_id", "dataset_id"),)

    system_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="CASCADE"), nullable=False
    )
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("datasets.id", ondelete="RESTRICT"), nullable=False, index=True
    )


class AISystemControl(UUIDPk, Timestamps, Base):
    """A control that applies to a system: linked by hand (origin manual, any framework) or made
    applicable by the newest classification (origin classification, EU AI Act controls; replaced
    whenever the system is classified again). The system's score counts exactly these controls."""

    __tablename__ = "ai_system_controls"
    __table_args__ = (
        UniqueConstraint("system_id", "control_id", "origin"),
        CheckConstraint("origin IN ('manual', 'classification')", name="origin_known"),
    )

    system_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="CASCADE"), nullable=False
    )
    control_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    origin: Mapped[str] = mapped_column(String(16), nullable=False)
    # Why it applies (the classification's obligation, e.g. "high_provider"), or the linker's note.
    reason: Mapped[str | None] = mapped_column(Text)

    control: Mapped[Control] = relationship()


class AIClassification(UUIDPk, Timestamps, Base):
    """One run of the EU AI Act questionnaire for a system: the answers, the result, the reasons and
    the obligations that decide applicability. Append-only by convention (new version per run)."""

    __tablename__ = "ai_classifications"
    __table_args__ = (UniqueConstraint("system_id", "version"),)

    system_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="RESTRICT"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    questionnaire_version: Mapped[str] = mapped_column(String(32), nullable=False)
    answers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # The organisation's role the classification was made for (applicability depends on it).
    role: Mapped[AIActRole] = mapped_column(pg_enum(AIActRole), nullable=False)
    result: Mapped[AIRiskClass] = mapped_column(pg_enum(AIRiskClass), nullable=False)
    rationale: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    obligations: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )

    created_by: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<AIClassification {self.system_id} v{self.version} {self.result}>"


class ImpactAssessment(UUIDPk, Timestamps, Base):
    """One version of a system's fundamental-rights / AI impact assessment. Answers are edited while
    draft; submitted versions are decided by a named approver (never the author); a change after
    that is a new version."""

    __tablename__ = "impact_assessments"
    __table_args__ = (
        UniqueConstraint("system_id", "version"),
        CheckConstraint("status NOT IN ('approved', 'rejected')"
                        " OR (decided_by_id IS NOT NULL AND decided_at IS NOT NULL)", name="decision_is_named"),
    )

    system_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ai_systems.id", ondelete="RESTRICT"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    template_version: Mapped[str] = mapped_column(String(32), nullable=False)
    answers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    status: Mapped[AssessmentStatus] = mapped_column(
        pg_enum(AssessmentStatus), nullable=False, server_default=AssessmentStatus.DRAFT.value
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The decider (approve or reject), when, and what they said.
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_comment: Mapped[str | None] = mapped_column(Text)

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    def __repr__(self) -> str:
        return f"<ImpactAssessment {self.system_id} v{self.version} {self.status}>"
