"""Changes to controls: edit, soft delete, restore. Each validates, flushes (never commits) and
writes its audit entry with before/after in the caller's transaction.

Soft delete takes the control's live descendants with it (they would be unreachable in the tree
otherwise), all stamped with the same `deleted_at`; restore brings back exactly the rows stamped with
that moment, so undo does not resurrect a child deleted on its own earlier.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.orm import Session, aliased

from governance.models.frameworks import Control
from governance.services import audit, legal_holds, scoring

EDITABLE_FIELDS = ("title", "text", "assessable", "weight")
MAX_WEIGHT = Decimal("999.999")  # numeric(6, 3)
TITLE_MAX = 500


class ControlError(ValueError):
    """A refused change; `field` names the form field the message belongs beside (or None)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def snapshot(control: Control) -> dict[str, Any]:
    return {
        "title": control.title,
        "text": control.text,
        "assessable": bool(control.assessable),
        "weight": None if control.weight is None else Decimal(control.weight),
    }


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ControlError(None, f"These fields cannot be edited: {', '.join(sorted(unknown))}.")
    clean: dict[str, Any] = {}
    if "title" in fields:
        title = (fields["title"] or "").strip()
        if not title:
            raise ControlError("title", "Enter a title.")
        if len(title) > TITLE_MAX:
            raise ControlError("title", f"Keep the title to {TITLE_MAX} characters.")
        clean["title"] = title
    if "text" in fields:
        text = (fields["text"] or "").strip()
        clean["text"] = text or None
    if "assessable" in fields:
        clean["assessable"] = bool(fields["assessable"])
    if "weight" in fields:
        raw = fields["weight"]
        try:
            weight = Decimal(str(raw).strip())
        except (InvalidOperation, ValueError):
            raise ControlError("weight", "Enter the weight as a number, e.g. 1 or 0.5.") from None
        if not weight.is_finite() or weight < 0 or weight > MAX_WEIGHT:
            raise ControlError("weight", f"Enter a weight from 0 to {MAX_WEIGHT}.")
        if weight != weight.quantize(Decimal("0.001")):
            raise ControlError("weight", "Use at most three decimal places.")
        clean["weight"] = weight
    return clean


def update_control(session: Session, control: Control, **fields: Any) -> dict[str, Any]:
    """Apply the edits; returns the changed fields' new values (empty: nothing changed, nothing audited)."""
    clean = _clean(fields)
    before = snapshot(control)
    changed = {k: v for k, v in clean.items() if before[k] != v}
    if not changed:
        return {}
    for key, value in changed.items():
        setattr(control, key, value)
    session.flush()
    audit.record(
        session, "control.update", object_type="control", object_id=control.id,
        details={"framework_id": str(control.framework_id), "ref_id": control.ref_id},
        before={k: before[k] for k in changed}, after=changed,
    )
    if "assessable" in changed or "weight" in changed:
        scoring.on_control_changed(session, control.id)
    return changed


def _subtree_ids(control_id: uuid.UUID) -> Any:
    """The control and all its descendants (deleted or not), as a recursive CTE of ids."""
    tree = select(Control.id, literal(0).label("depth")).where(Control.id == control_id).cte(
        "subtree", recursive=True
    )
    child = aliased(Control)
    return tree.union_all(
        select(child.id, (tree.c.depth + 1).label("depth"))
        .where(child.parent_id == tree.c.id)
        .where(tree.c.depth < 50)
    )


def soft_delete_control(session: Session, control: Control) -> list[uuid.UUID]:
    """Soft-delete the control and its live descendants in one statement; returns their ids."""
    if control.deleted_at is not None:
        raise ControlError(None, "This control is already deleted.")
    tree = _subtree_ids(control.id)
    try:  # a legal hold on the control, a sub-control or the framework keeps them all (docs/retention.md)
        legal_holds.refuse_if_held(session, "control", list(session.scalars(select(tree.c.id))))
    except legal_holds.HoldError as exc:
        raise ControlError(None, exc.message) from None
    rows = session.execute(
        update(Control)
        .where(Control.id.in_(select(tree.c.id)), Control.deleted_at.is_(None))
        .values(deleted_at=func.now())
        .returning(Control.id, Control.deleted_at)
        .execution_options(synchronize_session=False)
    ).all()
    session.refresh(control)
    ids = [r[0] for r in rows]
    audit.record(
        session, "control.delete", object_type="control", object_id=control.id,
        details={"framework_id": str(control.framework_id), "ref_id": control.ref_id,
                 "descendants": [str(i) for i in ids if i != control.id]},
        before={"deleted_at": None}, after={"deleted_at": control.deleted_at},
    )
    scoring.on_controls_changed(session, ids)
    return ids


def restore_control(session: Session, control: Control) -> list[uuid.UUID]:
    """Undo soft_delete_control: restore the control and the descendants deleted with it."""
    deleted_at: datetime | None = control.deleted_at
    if deleted_at is None:
        raise ControlError(None, "This control is not deleted.")
    if control.parent_id is not None:
        parent = session.execute(
            select(Control.deleted_at).where(Control.id == control.parent_id).execution_options(include_deleted=True)
        ).scalar_one_or_none()
        if parent is not None:
            raise ControlError(None, "Its parent control is deleted: restore the parent first.")
    tree = _subtree_ids(control.id)
    rows = session.execute(
        update(Control)
        .where(Control.id.in_(select(tree.c.id)), Control.deleted_at == deleted_at)
        .values(deleted_at=None)
        .returning(Control.id)
        .execution_options(synchronize_session=False)
    ).all()
    session.refresh(control)
    ids = [r[0] for r in rows]
    audit.record(
        session, "control.restore", object_type="control", object_id=control.id,
        details={"framework_id": str(control.framework_id), "ref_id": control.ref_id,
                 "descendants": [str(i) for i in ids if i != control.id]},
        before={"deleted_at": deleted_at}, after={"deleted_at": None},
    )
    scoring.on_controls_changed(session, ids)
    return ids
