"""Legal holds (governance.services.legal_holds): validation, audit, coverage, refused deletion."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, scoped_session

from governance.models.audit import AuditLog
from governance.models.frameworks import Control
from governance.services import controls, legal_holds
from governance.services.legal_holds import HoldError

DBSession = scoped_session[Session]


def _entries(session: DBSession, action: str) -> list[AuditLog]:
    return list(session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.seq)))


def test_place_validates_the_target_and_the_reason(db_session: DBSession, make_user: Callable[..., Any],
                                                   make_control: Callable[..., Any]) -> None:
    user = make_user("compliance_officer")
    control = make_control()
    with pytest.raises(HoldError) as no_reason:
        legal_holds.place(db_session(), "control", control.id, "   ", user.id)
    assert no_reason.value.field == "reason"
    with pytest.raises(HoldError) as missing:
        legal_holds.place(db_session(), "control", uuid.uuid4(), "Matter", user.id)
    assert missing.value.field == "target" and "No control" in missing.value.message
    with pytest.raises(HoldError) as kind:
        legal_holds.place(db_session(), "user", control.id, "Matter", user.id)
    assert kind.value.field == "target_type"
    with pytest.raises(HoldError) as long_reason:
        legal_holds.place(db_session(), "control", control.id, "x" * (legal_holds.REASON_MAX + 1), user.id)
    assert long_reason.value.field == "reason"


def test_place_and_release_are_audited_with_before_and_after(db_session: DBSession, make_user: Callable[..., Any],
                                                             make_control: Callable[..., Any]) -> None:
    user = make_user("compliance_officer")
    control = make_control()
    hold = legal_holds.place(db_session(), "control", control.id, "Matter 1", user.id)
    placed = _entries(db_session, "legal_hold.place")[-1]
    assert placed.object_type == "control" and placed.object_id == str(control.id)
    assert placed.details["after"]["reason"] == "Matter 1" and "before" not in placed.details
    assert legal_holds.is_held(db_session(), "control", control.id)

    released = legal_holds.release(db_session(), hold.id, "Settled", user.id)
    assert released.released_at is not None and released.release_reason == "Settled"
    entry = _entries(db_session, "legal_hold.release")[-1]
    assert entry.details["before"]["released_at"] is None and entry.details["after"]["release_reason"] == "Settled"
    assert not legal_holds.is_held(db_session(), "control", control.id)
    with pytest.raises(HoldError, match="already released"):
        legal_holds.release(db_session(), hold.id, "Again", user.id)
    with pytest.raises(HoldError) as no_reason:
        legal_holds.release(db_session(), legal_holds.place(db_session(), "control", control.id, "M2", user.id).id,
                            "", user.id)
    assert no_reason.value.field == "release_reason"


def test_a_hold_covers_evidence_directly_through_controls_links_and_frameworks(
        db_session: DBSession, make_user: Callable[..., Any], make_control: Callable[..., Any],
        make_evidence: Callable[..., Any]) -> None:
    user = make_user("compliance_officer")
    parent = make_control("GV-1")
    child = Control(framework_id=parent.framework_id, ref_id="GV-1.1", title="Child", parent_id=parent.id)
    db_session.add(child)
    db_session.commit()
    other = make_control("OT-1")
    under_child = make_evidence(user, control=child, name="Under child")
    linked = make_evidence(user, name="Linked")
    db_session.execute(text("INSERT INTO evidence_links (evidence_id, control_id) VALUES (:e, :c)"),
                       {"e": linked.id, "c": child.id})
    alone = make_evidence(user, name="Alone")
    elsewhere = make_evidence(user, control=other, name="Elsewhere")
    ids = [under_child.id, linked.id, alone.id, elsewhere.id]
    assert legal_holds.held_evidence_ids(db_session(), ids) == {}

    on_parent = legal_holds.place(db_session(), "control", parent.id, "Parent matter", user.id)
    assert legal_holds.held_evidence_ids(db_session(), ids) == {under_child.id: on_parent.id, linked.id: on_parent.id}
    direct = legal_holds.place(db_session(), "evidence", alone.id, "Subpoena", user.id)
    on_framework = legal_holds.place(db_session(), "framework", other.framework_id, "Regulator", user.id)
    held = legal_holds.held_evidence_ids(db_session(), ids)
    assert held[alone.id] == direct.id and held[elsewhere.id] == on_framework.id
    assert legal_holds.covering_holds(db_session(), "control", child.id) == [on_parent.id]
    views = legal_holds.active_holds(db_session())
    labels = {v.hold.id: v.target_label for v in views}
    assert labels[on_parent.id] == "control GV-1 Policies are in place" and labels[direct.id] == "evidence Alone"


def test_a_held_control_cannot_be_deleted(db_session: DBSession, make_user: Callable[..., Any],
                                          make_control: Callable[..., Any]) -> None:
    user = make_user("compliance_officer")
    parent = make_control("GV-2")
    child = Control(framework_id=parent.framework_id, ref_id="GV-2.1", title="Child", parent_id=parent.id)
    db_session.add(child)
    db_session.commit()
    hold = legal_holds.place(db_session(), "control", child.id, "Matter on the child", user.id)
    with pytest.raises(controls.ControlError, match=r"legal hold .*cannot be deleted"):
        controls.soft_delete_control(db_session(), parent)  # would take the held child with it
    with pytest.raises(legal_holds.HoldError):
        legal_holds.refuse_if_held(db_session(), "control", [child.id])
    legal_holds.release(db_session(), hold.id, "Done", user.id)
    assert child.id in controls.soft_delete_control(db_session(), parent)
