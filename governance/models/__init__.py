"""Every table, imported so the metadata is complete.

Importing this package also installs the soft-delete query filter on every ORM Session
(governance.models.soft_delete): default queries hide rows whose deleted_at is set, and
`.execution_options(include_deleted=True)` shows them.
"""

from sqlalchemy.orm import Session

from governance.models.ai import (
    AIClassification,
    AIModel,
    AISystem,
    AISystemControl,
    AISystemDataset,
    AISystemModel,
    Dataset,
    ImpactAssessment,
)
from governance.models.audit import Alert, AlertEvent, AuditLog
from governance.models.audit_chain import AuditChainHead
from governance.models.base import Base, SoftDelete, Timestamps, UUIDPk
from governance.models.cache import CacheEntry, CacheGeneration
from governance.models.enums import (
    AlertStatus,
    AuditOutcome,
    CheckStatus,
    ControlStatus,
    EvidenceStatus,
    FrameworkStatus,
    MappingRelationship,
    ProbeStatus,
    ResultOutcome,
    ScoreScope,
    Severity,
    TaskStatus,
)
from governance.models.evidence import Evidence, EvidenceLink, EvidenceReview, EvidenceRevision
from governance.models.frameworks import Control, Framework, Mapping
from governance.models.identity import LoginAttempt, Permission, RecoveryCode, Role, User, UserSession
from governance.models.lifecycle import AuditArchive, Backup, ErasureRequest, LegalHold, PersonKey, RestoreDrill
from governance.models.notifications import Notification
from governance.models.probes import Attestation, Check, CheckControl, Probe, ProbeRun, Result
from governance.models.reports import Report, ReportFormat, ReportScope, ReportStatus
from governance.models.scoring import CurrentScore, Metric, Score
from governance.models.soft_delete import INCLUDE_DELETED, install_soft_delete_filter
from governance.models.tasks import Task

install_soft_delete_filter(Session)

__all__ = [
    "INCLUDE_DELETED",
    "AIClassification",
    "AIModel",
    "AISystem",
    "AISystemControl",
    "AISystemDataset",
    "AISystemModel",
    "Alert",
    "AlertEvent",
    "AlertStatus",
    "Attestation",
    "AuditArchive",
    "AuditChainHead",
    "AuditLog",
    "AuditOutcome",
    "Backup",
    "Base",
    "CacheEntry",
    "CacheGeneration",
    "Check",
    "CheckControl",
    "CheckStatus",
    "Control",
    "ControlStatus",
    "CurrentScore",
    "Dataset",
    "ErasureRequest",
    "Evidence",
    "EvidenceLink",
    "EvidenceReview",
    "EvidenceRevision",
    "EvidenceStatus",
    "Framework",
    "FrameworkStatus",
    "ImpactAssessment",
    "LegalHold",
    "LoginAttempt",
    "Mapping",
    "MappingRelationship",
    "Metric",
    "Notification",
    "Permission",
    "PersonKey",
    "Probe",
    "ProbeRun",
    "ProbeStatus",
    "RecoveryCode",
    "Report",
    "ReportFormat",
    "ReportScope",
    "ReportStatus",
    "RestoreDrill",
    "Result",
    "ResultOutcome",
    "Role",
    "Score",
    "ScoreScope",
    "Severity",
    "SoftDelete",
    "Task",
    "TaskStatus",
    "Timestamps",
    "UUIDPk",
    "User",
    "UserSession",
    "install_soft_delete_filter",
]
