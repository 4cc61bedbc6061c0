"""Legal holds (docs/retention.md): a hold on a framework, a control or one piece of evidence stops
retention from archiving it and stops its deletion, until the hold is released.

What a hold covers:
- evidence: that evidence;
- control: the control, its sub-controls, and the evidence collected for any of them (evidence.control_id)
  or linked to any of them (evidence_links.control_id);
- framework: every control of the framework and, through them, their evidence.

The same coverage decides which audit partitions must be kept: one holding entries about a covered
framework, control or evidence (by object_type / object_id). Released holds stay as history.

place / release validate, flush and audit (legal_hold.place / legal_hold.release, before/after);
they never commit. The coverage queries are single SQL statements, whatever the number of holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from governance.models.enums import HoldTarget
from governance.models.evidence import Evidence
from governance.models.frameworks import Control, Framework
from governance.models.lifecycle import LegalHold
from governance.services import audit

REASON_MAX = 2000
TARGET_MODELS: dict[HoldTarget, Any] = {
    HoldTarget.FRAMEWORK: Framework, HoldTarget.CONTROL: Control, HoldTarget.EVIDENCE: Evidence,
}
TARGET_COLUMNS = {HoldTarget.FRAMEWORK: "framework_id", HoldTarget.CONTROL: "control_id",
                  HoldTarget.EVIDENCE: "evidence_id"}


class HoldError(ValueError):
    """Refused input or a refused deletion: `field` names the form field the message belongs beside."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# Every control an active hold covers, with the hold: framework holds cover their controls, control
# holds their subtree (depth-bounded like controls._subtree_ids).
HELD_CONTROLS_CTE = """
held_roots AS (
    SELECT c.id AS control_id, h.id AS hold_id FROM legal_holds h JOIN controls c ON c.framework_id = h.framework_id
     WHERE h.released_at IS NULL AND h.target_type = 'framework'
    UNION ALL
    SELECT h.control_id, h.id FROM legal_holds h WHERE h.released_at IS NULL AND h.target_type = 'control'
),
held_controls AS (
    SELECT control_id, hold_id, 0 AS depth FROM held_roots
    UNION ALL
    SELECT c.id, t.hold_id, t.depth + 1 FROM controls c JOIN held_controls t ON c.parent_id = t.control_id
     WHERE t.depth < 50
),
held_evidence AS (
    SELECT e.id AS evidence_id, t.hold_id FROM evidence e JOIN held_controls t ON t.control_id = e.control_id
    UNION
    SELECT l.evidence_id, t.hold_id FROM evidence_links l JOIN held_controls t ON t.control_id = l.control_id
    UNION
    SELECT h.evidence_id, h.id FROM legal_holds h WHERE h.released_at IS NULL AND h.target_type = 'evidence'
),
held_objects AS (
    SELECT 'framework'::text AS object_type, h.framework_id::text AS object_id, h.id AS hold_id FROM legal_holds h
     WHERE h.released_at IS NULL AND h.target_type = 'framework'
    UNION SELECT 'control', control_id::text, hold_id FROM held_controls
    UNION SELECT 'evidence', evidence_id::text, hold_id FROM held_evidence
)
"""
WITH_HELD = "WITH RECURSIVE " + HELD_CONTROLS_CTE


@dataclass(frozen=True)
class HoldView:
    """An active (or released) hold with a label for its target, for pages and plans."""

    hold: LegalHold
    target_label: str

    def describe(self) -> str:
        return f"legal hold on {self.target_label} ({self.hold.reason})"


def _target_id(hold: LegalHold) -> uuid.UUID | None:
    return hold.framework_id or hold.control_id or hold.evidence_id


def _load_target(session: Session, target_type: HoldTarget, target_id: uuid.UUID) -> Any:
    model = TARGET_MODELS[target_type]
    return session.scalars(select(model).where(model.id == target_id)
                           .execution_options(include_deleted=True)).one_or_none()


def target_label(target_type: HoldTarget, target: Any) -> str:
    if target is None:
        return f"{target_type.value} (gone)"
    if target_type == HoldTarget.FRAMEWORK:
        return f"framework {target.title} v{target.version}"
    if target_type == HoldTarget.CONTROL:
        return f"control {target.ref_id} {target.title}"
    return f"evidence {target.name}"


def parse_target_type(raw: str | None) -> HoldTarget:
    try:
        return HoldTarget((raw or "").strip().lower())
    except ValueError:
        raise HoldError("target_type", "Choose what to hold: a framework, a control or evidence.") from None


def _clean_reason(reason: str | None, field: str) -> str:
    clean = (reason or "").strip()
    if not clean:
        raise HoldError(field, "Give the reason (e.g. the matter or ticket it is for).")
    if len(clean) > REASON_MAX:
        raise HoldError(field, f"Keep the reason under {REASON_MAX} characters.")
    return clean


def snapshot(hold: LegalHold) -> dict[str, Any]:
    return {"target_type": hold.target_type.value, "target_id": str(_target_id(hold)), "reason": hold.reason,
            "released_at": hold.released_at, "released_by_id": hold.released_by_id,
            "release_reason": hold.release_reason}


def place(session: Session, target_type: HoldTarget | str, target_id: uuid.UUID | None, reason: str | None,
          placed_by: uuid.UUID | None) -> LegalHold:
    """Place a hold on an existing framework, control or evidence (soft-deleted ones too: a hold
    preserves what is left). Several holds may cover the same target (different matters)."""
    kind = target_type if isinstance(target_type, HoldTarget) else parse_target_type(target_type)
    if target_id is None:
        raise HoldError("target", f"Choose the {kind.value} to hold.")
    clean = _clean_reason(reason, "reason")
    target = _load_target(session, kind, target_id)
    if target is None:
        raise HoldError("target", f"No {kind.value} with id {target_id}.")
    hold = LegalHold(id=uuid.uuid4(), target_type=kind, reason=clean, placed_by_id=placed_by,
                     **{TARGET_COLUMNS[kind]: target_id})
    session.add(hold)
    session.flush()
    audit.record(session, "legal_hold.place", object_type=kind.value, object_id=target_id,
                 details={"hold_id": str(hold.id), "target": target_label(kind, target)},
                 before=None, after=snapshot(hold))
    return hold


def release(session: Session, hold_id: uuid.UUID, reason: str | None, released_by: uuid.UUID) -> LegalHold:
    """Release an active hold (it stays as history, with who released it, when and why)."""
    hold = session.scalars(select(LegalHold).where(LegalHold.id == hold_id).with_for_update()).one_or_none()
    if hold is None:
        raise HoldError("hold", f"No legal hold with id {hold_id}.")
    if hold.released_at is not None:
        raise HoldError("hold", f"This hold was already released on {hold.released_at:%Y-%m-%d}.")
    clean = _clean_reason(reason, "release_reason")
    before = snapshot(hold)
    hold.released_at = datetime.now(UTC)
    hold.released_by_id = released_by
    hold.release_reason = clean
    session.flush()
    audit.record(session, "legal_hold.release", object_type=hold.target_type.value, object_id=_target_id(hold),
                 details={"hold_id": str(hold.id)}, before=before, after=snapshot(hold))
    return hold


# --- coverage ---------------------------------------------------------------------------------


def active_holds(session: Session) -> list[HoldView]:
    """Every active hold, oldest first, with its target's label (three statements in all)."""
    holds = list(session.scalars(select(LegalHold).where(LegalHold.released_at.is_(None))
                                 .order_by(LegalHold.created_at, LegalHold.id)))
    return label_holds(session, holds)


def label_holds(session: Session, holds: Iterable[LegalHold]) -> list[HoldView]:
    holds = list(holds)
    targets: dict[tuple[HoldTarget, uuid.UUID], Any] = {}
    for kind, model in TARGET_MODELS.items():
        ids = {_target_id(h) for h in holds if h.target_type == kind}
        if ids:
            for row in session.scalars(select(model).where(model.id.in_(ids)).execution_options(include_deleted=True)):
                targets[(kind, row.id)] = row
    return [HoldView(h, target_label(h.target_type, targets.get((h.target_type, _target_id(h)))))  # type: ignore[arg-type]
            for h in holds]


def holds_by_id(session: Session, hold_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, HoldView]:
    ids = set(hold_ids)
    if not ids:
        return {}
    return {v.hold.id: v for v in label_holds(session, session.scalars(select(LegalHold).where(LegalHold.id.in_(ids))))}


def held_evidence_ids(session: Session, evidence_ids: Iterable[uuid.UUID] | None = None) -> dict[uuid.UUID, uuid.UUID]:
    """{evidence id: one hold covering it} for the given evidence (all covered evidence when None)."""
    ids = None if evidence_ids is None else [str(i) for i in evidence_ids]
    if ids is not None and not ids:
        return {}
    where = "" if ids is None else " WHERE evidence_id = ANY(CAST(:ids AS uuid[]))"
    rows = session.execute(text(f"{WITH_HELD} SELECT DISTINCT ON (evidence_id) evidence_id, hold_id "  # noqa: S608
                                f"FROM held_evidence{where} ORDER BY evidence_id, hold_id"),
                           {"ids": ids} if ids is not None else {}).all()
    return {row[0]: row[1] for row in rows}


def covering_holds(session: Session, target_type: HoldTarget | str,
                   target_ids: uuid.UUID | Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Ids of the active holds that cover the target(s), directly or through what they belong to
    (one statement)."""
    kind = target_type if isinstance(target_type, HoldTarget) else HoldTarget(target_type)
    ids = [str(target_ids)] if isinstance(target_ids, uuid.UUID) else [str(i) for i in target_ids]
    if not ids:
        return []
    if kind == HoldTarget.FRAMEWORK:
        sql = ("SELECT id AS hold_id FROM legal_holds WHERE released_at IS NULL AND target_type = 'framework' "
               "AND framework_id = ANY(CAST(:ids AS uuid[]))")
    elif kind == HoldTarget.CONTROL:
        # The controls' own holds and their ancestors' and framework's (held_controls walks down).
        sql = f"{WITH_HELD} SELECT DISTINCT hold_id FROM held_controls WHERE control_id = ANY(CAST(:ids AS uuid[]))"  # noqa: S608
    else:
        sql = f"{WITH_HELD} SELECT DISTINCT hold_id FROM held_evidence WHERE evidence_id = ANY(CAST(:ids AS uuid[]))"  # noqa: S608
    return sorted(session.execute(text(sql), {"ids": ids}).scalars())


def is_held(session: Session, target_type: HoldTarget | str, target_id: uuid.UUID) -> bool:
    return bool(covering_holds(session, target_type, target_id))


def refuse_if_held(session: Session, target_type: HoldTarget | str,
                   target_ids: uuid.UUID | Iterable[uuid.UUID]) -> None:
    """Raise HoldError when any of the targets is under an active hold (deletion paths call this)."""
    kind = target_type if isinstance(target_type, HoldTarget) else HoldTarget(target_type)
    holds = covering_holds(session, kind, target_ids)
    if holds:
        first = holds_by_id(session, holds[:1])[holds[0]]
        raise HoldError(None, f"This {kind.value} is under a {first.describe()}: it cannot be deleted "
                              "until the hold is released.")
