"""evidence_links: evidence attached to controls, checks, tasks and AI systems (many-to-many), from
either side.
Each function validates, flushes (never commits) and writes its audit entry."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.models.ai import AISystem
from governance.models.evidence import Evidence, EvidenceLink
from governance.models.frameworks import Control
from governance.models.probes import Check
from governance.models.tasks import Task
from governance.services import audit

# target type -> (model, EvidenceLink column name)
TARGETS: dict[str, tuple[type[Any], str]] = {
    "control": (Control, "control_id"),
    "check": (Check, "check_id"),
    "task": (Task, "task_id"),
    "ai_system": (AISystem, "ai_system_id"),
}


class LinkError(ValueError):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _target(session: Session, target_type: str, target_id: uuid.UUID) -> Any:
    if target_type not in TARGETS:
        raise LinkError(f"Evidence can be linked to a control, a check, a task or an AI system, not {target_type!r}.",
                        400)
    model, _column = TARGETS[target_type]
    target = session.get(model, target_id)
    if target is None or getattr(target, "deleted_at", None) is not None:
        label = "AI system" if target_type == "ai_system" else target_type
        raise LinkError(f"That {label} does not exist (any more).", 404)
    return target


def describe(target_type: str, target: Any) -> str:
    if target_type == "control":
        return f"{target.ref_id} {target.title}"
    if target_type in ("check", "ai_system"):
        return str(target.name)
    return str(target.title)


def find(session: Session, evidence_id: uuid.UUID, target_type: str, target_id: uuid.UUID) -> EvidenceLink | None:
    _model, column = TARGETS[target_type]
    return session.scalars(
        select(EvidenceLink).where(EvidenceLink.evidence_id == evidence_id,
                                   getattr(EvidenceLink, column) == target_id)
    ).one_or_none()


def link(session: Session, evidence: Evidence, target_type: str, target_id: uuid.UUID, *,
         linked_by_id: uuid.UUID | None, note: str | None = None) -> EvidenceLink:
    """Attach `evidence` to the target; attaching it again changes nothing and returns the link."""
    if evidence.deleted_at is not None:
        raise LinkError("That evidence has been deleted.", 404)
    target = _target(session, target_type, target_id)
    existing = find(session, evidence.id, target_type, target_id)
    if existing is not None:
        return existing
    _model, column = TARGETS[target_type]
    row = EvidenceLink(evidence_id=evidence.id, linked_by_id=linked_by_id, note=(note or "").strip() or None,
                       **{column: target_id})
    session.add(row)
    session.flush()
    audit.record(session, "evidence.link", object_type="evidence", object_id=evidence.id,
                 details={"link_id": row.id, "target_type": target_type, "target_id": target_id,
                          "target": describe(target_type, target)})
    return row


def unlink(session: Session, row: EvidenceLink) -> None:
    target_type = next(t for t, (_m, column) in TARGETS.items() if getattr(row, column) is not None)
    target_id = getattr(row, TARGETS[target_type][1])
    target = session.get(TARGETS[target_type][0], target_id)
    audit.record(session, "evidence.unlink", object_type="evidence", object_id=row.evidence_id,
                 details={"link_id": row.id, "target_type": target_type, "target_id": target_id,
                          "target": describe(target_type, target) if target is not None else None})
    session.delete(row)
    session.flush()
