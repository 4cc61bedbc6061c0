"""frameworks, controls and mappings (control-to-control crosswalks)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from governance.models.base import Base, SoftDelete, Timestamps, UUIDPk
from governance.models.enums import ControlStatus, FrameworkStatus, MappingRelationship, pg_enum

if TYPE_CHECKING:
    from governance.models.evidence import Evidence
    from governance.models.probes import Check

# Generated tsvector expressions. Kept here (not only in the migration) so a test can prove the
# database's generation expression is the one the model declares.
FRAMEWORK_SEARCH_EXPR = (
    "to_tsvector('english'::regconfig, coalesce(title, '') || ' ' || coalesce(description, ''))"
)
CONTROL_SEARCH_EXPR = (
    "to_tsvector('english'::regconfig, "
    "coalesce(ref_id, '') || ' ' || coalesce(title, '') || ' ' || coalesce(text, ''))"
)


class Framework(UUIDPk, Timestamps, SoftDelete, Base):
    """A governance framework at one version (EU AI Act, NIST AI RMF 1.0, ISO/IEC 42001:2023 …)."""

    __tablename__ = "frameworks"
    __table_args__ = (
        # Seed §4.5: "unique indexes ensure … framework version". Soft-deleted rows keep their
        # (title, version): a framework version is an identity, restore it instead of re-creating.
        UniqueConstraint("title", "version"),
        Index(
            "ix_frameworks_active",
            "title",
            postgresql_where=sql("status = 'active' AND deleted_at IS NULL"),
        ),
        Index("ix_frameworks_search", "search", postgresql_using="gin"),
    )

    title: Mapped[str] = mapped_column(String(255), nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    region: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[FrameworkStatus] = mapped_column(
        pg_enum(FrameworkStatus), nullable=False, server_default=FrameworkStatus.DRAFT.value
    )
    search: Mapped[str | None] = deferred(
        mapped_column(TSVECTOR, Computed(FRAMEWORK_SEARCH_EXPR, persisted=True))
    )

    controls: Mapped[list[Control]] = relationship(
        back_populates="framework", passive_deletes="all", order_by="Control.sort_order"
    )

    def __repr__(self) -> str:
        return f"<Framework {self.title} {self.version}>"


class Control(UUIDPk, Timestamps, SoftDelete, Base):
    """A control / requirement / subcategory of one framework; parent_id builds the hierarchy
    (AC-2 → AC-2(1), GOVERN → GOVERN 1 → GOVERN 1.1)."""

    __tablename__ = "controls"
    __table_args__ = (
        # The seed's "framework_id + control_id" composite lookup; also the FK index of framework_id.
        UniqueConstraint("framework_id", "ref_id"),
        Index(
            "ix_controls_live_framework_id_sort_order",
            "framework_id",
            "sort_order",
            postgresql_where=sql("deleted_at IS NULL"),
        ),
        Index("ix_controls_search", "search", postgresql_using="gin"),
        CheckConstraint("weight >= 0", name="weight_non_negative"),
        CheckConstraint("parent_id <> id", name="not_own_parent"),
    )

    framework_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("frameworks.id", ondelete="RESTRICT"), nullable=False
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="RESTRICT"), index=True
    )
    ref_id: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    text: Mapped[str | None] = mapped_column(Text)
    assessable: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=sql("true"))
    weight: Mapped[Decimal] = mapped_column(Numeric(6, 3), nullable=False, server_default=sql("1"))
    sort_order: Mapped[int] = mapped_column(Integer, nullable=False, server_default=sql("0"))
    status: Mapped[ControlStatus] = mapped_column(
        pg_enum(ControlStatus), nullable=False, server_default=ControlStatus.ACTIVE.value
    )
    # Who answers for the control (compliance per user is over the controls a user owns).
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    search: Mapped[str | None] = deferred(
        mapped_column(TSVECTOR, Computed(CONTROL_SEARCH_EXPR, persisted=True))
    )

    framework: Mapped[Framework] = relationship(back_populates="controls")
    parent: Mapped[Control | None] = relationship(remote_side="Control.id", back_populates="children")
    children: Mapped[list[Control]] = relationship(back_populates="parent", passive_deletes="all")
    checks: Mapped[list[Check]] = relationship(back_populates="control", passive_deletes="all")
    evidence: Mapped[list[Evidence]] = relationship(back_populates="control", passive_deletes="all")

    def __repr__(self) -> str:
        return f"<Control {self.ref_id}>"


class Mapping(UUIDPk, Timestamps, Base):
    """A crosswalk edge: source control relates to target control (e.g. AI RMF GOVERN 1.1 ⊂
    ISO/IEC 42001 5.2). Frameworks become many-to-many through their controls' mappings.

    Directed, one row per ordered pair: the relationship is not symmetric (subset_of vs superset_of).
    """

    __tablename__ = "mappings"
    __table_args__ = (
        # Unique pair; its leading column is the FK index of source_control_id.
        UniqueConstraint("source_control_id", "target_control_id"),
        CheckConstraint("source_control_id <> target_control_id", name="distinct_controls"),
        CheckConstraint("strength BETWEEN 1 AND 10", name="strength_range"),
    )

    source_control_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="CASCADE"), nullable=False
    )
    target_control_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("controls.id", ondelete="CASCADE"), nullable=False, index=True
    )
    relationship_type: Mapped[MappingRelationship] = mapped_column(
        "relationship",
        pg_enum(MappingRelationship),
        nullable=False,
        server_default=MappingRelationship.RELATED_TO.value,
    )
    # Optional strength of the relationship, 1 (weak) .. 10 (the target fully covers the source).
    strength: Mapped[int | None] = mapped_column(SmallInteger)
    rationale: Mapped[str | None] = mapped_column(Text)
    # Where the crosswalk comes from: the imported set's `source` (else its name), e.g. "AI Governance
    # Platform project mapping — not an official …"; never a publisher's name unless it is theirs.
    source: Mapped[str | None] = mapped_column(String(500))

    source_control: Mapped[Control] = relationship(foreign_keys=[source_control_id])
    target_control: Mapped[Control] = relationship(foreign_keys=[target_control_id])

    def __repr__(self) -> str:
        return f"<Mapping {self.source_control_id} {self.relationship_type} {self.target_control_id}>"
