"""Impact assessments (governance.services.impact_assessments): the template's questions, versions
that copy their predecessor's answers, drafts only edited, submission and approval needing every
required answer, a named approver who is not the author, rejections that say why, the audit trail,
and the "high-risk without an approved impact assessment" flag."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from governance import context
from governance.models.ai import AISystem
from governance.models.audit import AuditLog
from governance.models.enums import AIRiskClass, AssessmentStatus
from governance.services import ai_systems
from governance.services import impact_assessments as ia
from governance.services.ai_systems import AIInventoryError


def _acting(user: Any) -> Any:
    return context.acting_as(context.ActionContext(actor_id=user.id, actor_name=user.email))


def _refused(field: str | None, words: str, call: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(AIInventoryError) as err:
        call(*args, **kwargs)
    assert err.value.field == field, err.value.message
    assert words in err.value.message, err.value.message


def _high_system(session: Session) -> AISystem:
    system = ai_systems.create_system(session, name="CV ranking", purpose="Ranks job applications.")
    system.risk_class = AIRiskClass.HIGH
    session.flush()
    return system


def _complete() -> dict[str, str]:
    return {q.id: f"Answer to {q.title.lower()}." for q in ia.QUESTIONS if q.required}


def _actions(session: Session, assessment: Any) -> list[str]:
    return list(session.scalars(select(AuditLog.action).where(
        AuditLog.object_type == "impact_assessment", AuditLog.object_id == str(assessment.id))
        .order_by(AuditLog.seq)))


def test_the_template_asks_article_27_and_the_ai_impact_items() -> None:
    assert ia.TEMPLATE_VERSION
    refs = [q.legal_ref for q in ia.QUESTIONS]
    for point in "abcdef":
        assert f"Article 27(1)({point})" in refs
    ids = {q.id for q in ia.QUESTIONS}
    assert {"dpia_reference", "bias_evaluation", "residual_risk", "risk_acceptance"} <= ids
    assert len(ids) == len(ia.QUESTIONS)
    assert [q.id for q in ia.QUESTIONS if not q.required] == ["notes"]
    for q in ia.QUESTIONS:
        assert q.text.endswith("?") and " not " not in f" {q.text.lower()} "  # plain, no negatives


def test_an_assessment_from_draft_to_approval_by_someone_else(db_session, make_user) -> None:
    author, approver = make_user("engineer"), make_user("compliance_officer")
    session = db_session()
    system = _high_system(session)
    assert ai_systems.HIGH_WITHOUT_ASSESSMENT in ai_systems.flags(session, system)
    with _acting(author):
        draft = ia.start(session, system.id)
        assert ia.start(session, system.id).id == draft.id  # one open draft
        assert (draft.version, draft.status, draft.created_by_id) == (1, AssessmentStatus.DRAFT, author.id)
        assert draft.template_version == ia.TEMPLATE_VERSION and draft.answers == {}
        ia.save_answers(session, draft.id, {"processes": "  Screening of applications.  ", "notes": ""})
        assert draft.answers == {"processes": "Screening of applications."}
        _refused("period_frequency", "Answer every required question before submitting: period and frequency",
                 ia.submit, session, draft.id)
        _refused("bogus", "no such question", ia.save_answers, session, draft.id, {"bogus": "x"})
        _refused("processes", "as text", ia.save_answers, session, draft.id, {"processes": 3})
        _refused("processes", "10000 characters", ia.save_answers, session, draft.id, {"processes": "x" * 10_001})
        ia.save_answers(session, draft.id, _complete())
        ia.submit(session, draft.id)
        assert draft.status == AssessmentStatus.SUBMITTED and draft.submitted_at is not None
        _refused(None, "can no longer change", ia.save_answers, session, draft.id, {"notes": "late"})
        _refused(None, "waiting for a decision", ia.start, session, system.id)
        _refused(None, "You wrote this assessment", ia.approve, session, draft.id)
    _refused(None, "needs a named person", ia.approve, session, draft.id)  # the system actor
    assert ai_systems.HIGH_WITHOUT_ASSESSMENT in ai_systems.flags(session, system)

    with _acting(approver):
        approved = ia.approve(session, draft.id, "Residual risk accepted.")
        _refused(None, "Only a submitted assessment", ia.reject, session, draft.id, "again")
    assert approved.status == AssessmentStatus.APPROVED and approved.decided_by_id == approver.id
    assert approved.decided_at is not None and approved.decision_comment == "Residual risk accepted."
    assert ia.latest_approved(session, system.id).id == draft.id  # type: ignore[union-attr]
    assert ai_systems.HIGH_WITHOUT_ASSESSMENT not in ai_systems.flags(session, system)
    assert _actions(session, draft) == ["impact_assessment.start", "impact_assessment.save",
                                        "impact_assessment.save", "impact_assessment.submit",
                                        "impact_assessment.approve"]
    entry = session.scalars(select(AuditLog).where(AuditLog.action == "impact_assessment.approve",
                                                   AuditLog.object_id == str(draft.id))).one()
    assert entry.actor_id == approver.id
    assert entry.details["after"]["decided_by_id"] == str(approver.id)
    assert entry.details["before"] == {"status": "submitted"}
    first_save = session.scalars(select(AuditLog).where(AuditLog.action == "impact_assessment.save",
                                                        AuditLog.object_id == str(draft.id))
                                 .order_by(AuditLog.seq)).first()
    assert first_save is not None and first_save.details["before"] == {"processes": None}
    assert first_save.details["after"] == {"processes": "Screening of applications."}


def test_a_new_version_copies_the_answers_and_a_rejection_says_why(db_session, make_user) -> None:
    author, reviewer = make_user("engineer"), make_user("compliance_officer")
    session = db_session()
    system = _high_system(session)
    with _acting(author):
        first = ia.start(session, system.id)
        ia.save_answers(session, first.id, {**_complete(), "notes": "First try."})
        ia.submit(session, first.id)
    with _acting(reviewer):
        _refused("comment", "Say what must change", ia.reject, session, first.id, "   ")
        ia.reject(session, first.id, "The bias evaluation names no groups.")
    assert first.status == AssessmentStatus.REJECTED and first.decided_by_id == reviewer.id
    assert ai_systems.HIGH_WITHOUT_ASSESSMENT in ai_systems.flags(session, system)
    assert ia.latest_approved(session, system.id) is None

    with _acting(reviewer):  # the reviewer revises it: now the reviewer is the author of version 2
        second = ia.start(session, system.id)
    assert second.version == 2 and second.answers == first.answers and second.created_by_id == reviewer.id
    with _acting(reviewer):
        ia.save_answers(session, second.id, {"bias_evaluation": "Compared by age and gender: no gap over 2%."})
        ia.submit(session, second.id)
        _refused(None, "someone else must approve", ia.approve, session, second.id)
    with _acting(author):
        ia.approve(session, second.id)
    assert first.answers["bias_evaluation"] != second.answers["bias_evaluation"]  # v1 unchanged
    assert [a.version for a in ia.history(session, system.id)] == [2, 1]
    assert ia.latest(session, system.id).id == second.id  # type: ignore[union-attr]
    with _acting(author):
        third = ia.start(session, system.id)  # after an approval: a new draft, the approval stands
    assert third.version == 3 and ia.latest_approved(session, system.id).id == second.id  # type: ignore[union-attr]
    assert ai_systems.HIGH_WITHOUT_ASSESSMENT not in ai_systems.flags(session, system)


def test_approval_needs_every_required_answer(db_session, make_user) -> None:
    author, approver = make_user("engineer"), make_user("compliance_officer")
    session = db_session()
    system = _high_system(session)
    with _acting(author):
        draft = ia.start(session, system.id)
        ia.save_answers(session, draft.id, _complete())
        ia.submit(session, draft.id)
    # A version submitted against an older template that lacked a question now required.
    draft.answers = {k: v for k, v in draft.answers.items() if k != "risk_acceptance"}
    session.flush()
    with _acting(approver):
        _refused("risk_acceptance", "before approving: acceptance of the residual risk", ia.approve, session,
                 draft.id)
    assert draft.status == AssessmentStatus.SUBMITTED and draft.decided_by_id is None


def test_unknown_systems_and_assessments_are_refused(db_session, make_user) -> None:
    import uuid

    session = db_session()
    _refused("system", "does not exist", ia.start, session, uuid.uuid4())
    _refused("assessment", "does not exist", ia.submit, session, uuid.uuid4())
    system = _high_system(session)
    ai_systems.delete_system(session, system.id)
    _refused("system", "does not exist", ia.start, session, system.id)
