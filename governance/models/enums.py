"""The fixed value sets of the schema, each stored as a PostgreSQL ENUM type.

The database stores the *values* (lower_snake strings), not the Python member names, so SQL written
by hand, reports and the Casbin layer read the same words the code uses.
"""

from __future__ import annotations

import enum

from sqlalchemy import Enum as SAEnum


class FrameworkStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    RETIRED = "retired"


class ControlStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    DEPRECATED = "deprecated"
    # Removed by the framework's publisher (OSCAL `status: withdrawn`); kept so references resolve.
    WITHDRAWN = "withdrawn"


class MappingRelationship(enum.StrEnum):
    """Set-theory relationships of a crosswalk, in the NIST OLIR words (NIST IR 8278A): source is
    equal to / a subset of / a superset of / intersects with / is related to the target."""

    EQUAL = "equal"
    SUBSET_OF = "subset_of"
    SUPERSET_OF = "superset_of"
    INTERSECTS_WITH = "intersects_with"
    RELATED_TO = "related_to"


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ProbeStatus(enum.StrEnum):
    """Outcome of the probe's last run."""

    IDLE = "idle"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class CheckStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class ResultOutcome(enum.StrEnum):
    COMPLIANT = "compliant"
    NON_COMPLIANT = "non_compliant"
    PARTIAL = "partial"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"


class EvidenceStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ScoreScope(enum.StrEnum):
    FRAMEWORK = "framework"
    CONTROL = "control"
    USER = "user"


class AuditOutcome(enum.StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    ERROR = "error"


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    WONT_FIX = "wont_fix"  # closed without a fix; tasks.resolution says why


class EvidenceCategory(enum.StrEnum):
    """What a piece of evidence is (the AI documents have their own: checks look for them)."""

    GENERAL = "general"
    MODEL_CARD = "model_card"
    EVALUATION_REPORT = "evaluation_report"
    DATA_SHEET = "data_sheet"


class AILifecycleStage(enum.StrEnum):
    IDEA = "idea"
    DEVELOPMENT = "development"
    VALIDATION = "validation"
    PRODUCTION = "production"
    RETIRED = "retired"


class AIActRole(enum.StrEnum):
    """The organisation's role for an AI system under the EU AI Act (Article 3(3)-(7))."""

    PROVIDER = "provider"
    DEPLOYER = "deployer"
    IMPORTER = "importer"
    DISTRIBUTOR = "distributor"


class AIAutonomy(enum.StrEnum):
    ASSISTIVE = "assistive"  # a person decides; the system suggests
    HUMAN_IN_THE_LOOP = "human_in_the_loop"  # the system decides, a person approves each decision
    HUMAN_ON_THE_LOOP = "human_on_the_loop"  # the system decides, a person monitors and can intervene
    AUTONOMOUS = "autonomous"  # no person involved in individual decisions


class AIRiskClass(enum.StrEnum):
    """The EU AI Act classification result (governance.services.ai_act)."""

    PROHIBITED = "prohibited"
    HIGH = "high"
    LIMITED = "limited"
    MINIMAL = "minimal"


class AIModelApproval(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    RESTRICTED = "restricted"
    BLOCKED = "blocked"


class AssessmentStatus(enum.StrEnum):
    """An impact assessment version: written (draft), sent for approval (submitted), decided."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class BackupKind(enum.StrEnum):
    """A full backup holds everything; a diff holds the tables changed since its full one (docs/operations.md)."""

    FULL = "full"
    DIFF = "diff"


class BackupStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Removed from the backup bucket by the retention job (the row stays as history).
    PRUNED = "pruned"


class DrillStatus(enum.StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


class HoldTarget(enum.StrEnum):
    """What a legal hold is placed on; a hold on a framework covers its controls and their evidence."""

    FRAMEWORK = "framework"
    CONTROL = "control"
    EVIDENCE = "evidence"


class ErasureStatus(enum.StrEnum):
    """A GDPR erasure request: asked for, decided by a second admin, then carried out once."""

    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXECUTED = "executed"


class ReportScope(enum.StrEnum):
    """What a report covers: one framework or one AI system (docs/reports.md)."""

    FRAMEWORK = "framework"
    AI_SYSTEM = "ai_system"


class ReportFormat(enum.StrEnum):
    PDF = "pdf"
    CSV = "csv"
    OSCAL = "oscal"


class ReportStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# Python enum -> PostgreSQL type name. The migration creates exactly these types (and drops them on
# downgrade); a test checks the two agree.
PG_ENUM_NAMES: dict[type[enum.Enum], str] = {
    FrameworkStatus: "framework_status",
    ControlStatus: "control_status",
    MappingRelationship: "mapping_relationship",
    Severity: "severity",
    ProbeStatus: "probe_status",
    CheckStatus: "check_status",
    ResultOutcome: "result_outcome",
    EvidenceStatus: "evidence_status",
    ScoreScope: "score_scope",
    AuditOutcome: "audit_outcome",
    AlertStatus: "alert_status",
    TaskStatus: "task_status",
    EvidenceCategory: "evidence_category",
    AILifecycleStage: "ai_lifecycle_stage",
    AIActRole: "ai_act_role",
    AIAutonomy: "ai_autonomy",
    AIRiskClass: "ai_risk_class",
    AIModelApproval: "ai_model_approval",
    AssessmentStatus: "assessment_status",
    BackupKind: "backup_kind",
    BackupStatus: "backup_status",
    DrillStatus: "drill_status",
    HoldTarget: "hold_target",
    ErasureStatus: "erasure_status",
    ReportScope: "report_scope",
    ReportFormat: "report_format",
    ReportStatus: "report_status",
}


def _values(enum_cls: type[enum.Enum]) -> list[str]:
    return [str(member.value) for member in enum_cls]


def pg_enum(enum_cls: type[enum.Enum]) -> SAEnum:
    """The column type for enum_cls: a named PostgreSQL ENUM holding the members' values."""
    return SAEnum(
        enum_cls,
        name=PG_ENUM_NAMES[enum_cls],
        values_callable=_values,
        validate_strings=True,
        # One type shared by several columns (severity): the migration owns its lifecycle.
        create_constraint=False,
    )
