"""Impact assessments of AI systems: the fundamental-rights impact assessment of Article 27(1)(a)-(f)
of the EU AI Act plus the AI impact items (data protection impact assessment, bias and fairness,
residual risk and who accepts it), as a versioned questionnaire (docs/ai-inventory.md).

Rules:
- a system's assessments are versions 1, 2, …; `start` opens the next one as a draft, copying the
  answers of the newest version (so a rejected or outdated assessment is revised, not retyped);
  there is at most one open version (draft or submitted) per system at a time;
- answers are edited while draft only; submitting needs every required answer;
- a submitted version is approved or rejected by the current actor, a named person who is not its
  author (created_by); the decision records who and when (decided_by_id, decided_at) and, for a
  rejection, what must change; approved and rejected versions never change again.
Who may decide is the permission ai_systems:approve (checked by the pages). Every change is
audited. Functions flush, never commit. Refusals raise ai_systems.AIInventoryError(field, message).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance import context
from governance.models.ai import AISystem, ImpactAssessment
from governance.models.enums import AssessmentStatus
from governance.services import audit
from governance.services.ai_systems import AIInventoryError

TEMPLATE_VERSION = "2026.1"
ANSWER_MAX = 10_000
COMMENT_MAX = 10_000
SUMMARY_MAX = 1_000
OPEN = (AssessmentStatus.DRAFT, AssessmentStatus.SUBMITTED)


@dataclass(frozen=True)
class Question:
    id: str
    title: str  # a short name, for lists of what is missing
    text: str
    help: str
    legal_ref: str
    required: bool = True


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    questions: tuple[Question, ...]


SECTIONS: tuple[Section, ...] = (
    Section("use", "How the system is used", (
        Question("processes", "Processes",
                 "In which of your processes will the system be used, and for what?",
                 "Describe the processes in line with the system's intended purpose: what it does in each, "
                 "and who acts on its output.",
                 "Article 27(1)(a)"),
        Question("period_frequency", "Period and frequency of use",
                 "For how long will the system be used, and how often?",
                 "For example: from March 2027 for two years, about 400 decisions a day on working days.",
                 "Article 27(1)(b)"),
    )),
    Section("people", "Who is affected", (
        Question("affected_persons", "People and groups affected",
                 "Which categories of people and groups are likely to be affected by its use here?",
                 "Think of the people the system decides about, the people it interacts with, and groups "
                 "that could be affected more than others (for example by age, disability or origin).",
                 "Article 27(1)(c)"),
        Question("risks_of_harm", "Specific risks of harm",
                 "What specific risks of harm to those people or groups do you foresee?",
                 "Use what the provider tells you in the instructions for use (Article 13): for each risk, "
                 "who could be harmed and how.",
                 "Article 27(1)(d)"),
    )),
    Section("measures", "Oversight and measures", (
        Question("human_oversight", "Human oversight measures",
                 "How do people oversee the system, following its instructions for use?",
                 "Who can check, override or stop its output, what they are trained for, and when they step in.",
                 "Article 27(1)(e)"),
        Question("mitigation", "Measures if risks materialise",
                 "What will you do if these risks materialise?",
                 "Include the internal governance arrangements (who decides, who is told) and how affected "
                 "people can complain and get a decision reviewed.",
                 "Article 27(1)(f)"),
    )),
    Section("ai_impact", "AI impact", (
        Question("dpia_reference", "Data protection impact assessment",
                 "Where is the data protection impact assessment for this use, and what did it conclude?",
                 "Give its reference (GDPR Article 35) and its conclusion, or say why the system processes no "
                 "personal data.",
                 "Article 26(9), Article 27(4)"),
        Question("bias_evaluation", "Bias and fairness evaluation",
                 "How was the system evaluated for bias and fairness, and what was found?",
                 "Name the groups compared, the measures used and the results, and what was changed because "
                 "of them.",
                 "Article 10(2)(f), Article 15"),
        Question("residual_risk", "Residual risk",
                 "What risk remains after the measures above?",
                 "Say how likely and how severe the remaining harms are.",
                 "Article 9(5)"),
        Question("risk_acceptance", "Acceptance of the residual risk",
                 "Who accepts the remaining risk, and why is it acceptable?",
                 "Name the person or body that accepts it and the reasons; the approver of this assessment "
                 "confirms it.",
                 "Article 9(5)"),
        Question("notes", "Other notes",
                 "Is there anything else the approver should know?",
                 "Optional.",
                 "", required=False),
    )),
)
QUESTIONS: tuple[Question, ...] = tuple(q for section in SECTIONS for q in section.questions)
BY_ID: dict[str, Question] = {q.id: q for q in QUESTIONS}


def link(assessment: ImpactAssessment) -> str:
    return f"/ai-systems/{assessment.system_id}/impact-assessments/{assessment.id}"


def missing(answers: Mapping[str, Any]) -> list[Question]:
    """The required questions without an answer."""
    return [q for q in QUESTIONS if q.required and not str(answers.get(q.id) or "").strip()]


def is_complete(assessment: ImpactAssessment) -> bool:
    return not missing(assessment.answers or {})


def _snapshot(assessment: ImpactAssessment) -> dict[str, Any]:
    return {"status": assessment.status, "version": assessment.version, "system_id": assessment.system_id}


def _system(session: Session, system_id: uuid.UUID) -> AISystem:
    system = session.scalars(select(AISystem).where(AISystem.id == system_id, AISystem.deleted_at.is_(None))
                             .with_for_update()).one_or_none()
    if system is None:
        raise AIInventoryError("system", "That AI system does not exist (any more).")
    return system


def _locked(session: Session, assessment_id: uuid.UUID) -> ImpactAssessment:
    found = session.scalars(select(ImpactAssessment).where(ImpactAssessment.id == assessment_id)
                            .with_for_update().execution_options(populate_existing=True)).one_or_none()
    if found is None:
        raise AIInventoryError("assessment", "That impact assessment does not exist (any more).")
    return found


def _comment(value: str | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise AIInventoryError("comment", "Enter the comment as text.")
    clean = (value or "").strip()
    if len(clean) > COMMENT_MAX:
        raise AIInventoryError("comment", f"Keep the comment to {COMMENT_MAX} characters.")
    return clean or None


def get(session: Session, assessment_id: uuid.UUID) -> ImpactAssessment | None:
    return session.get(ImpactAssessment, assessment_id)


def latest(session: Session, system_id: uuid.UUID) -> ImpactAssessment | None:
    """The newest version, whatever its status."""
    return session.scalars(select(ImpactAssessment).where(ImpactAssessment.system_id == system_id)
                           .order_by(ImpactAssessment.version.desc()).limit(1)).first()


def latest_approved(session: Session, system_id: uuid.UUID) -> ImpactAssessment | None:
    return session.scalars(select(ImpactAssessment).where(ImpactAssessment.system_id == system_id,
                                                          ImpactAssessment.status == AssessmentStatus.APPROVED)
                           .order_by(ImpactAssessment.version.desc()).limit(1)).first()


def history(session: Session, system_id: uuid.UUID) -> list[ImpactAssessment]:
    """Every version, newest first."""
    return list(session.scalars(select(ImpactAssessment).where(ImpactAssessment.system_id == system_id)
                                .order_by(ImpactAssessment.version.desc())))


def start(session: Session, system_id: uuid.UUID) -> ImpactAssessment:
    """Open the next version as a draft by the current actor, with the newest version's answers (of
    questions the template still asks). An open draft is returned as it is; a submitted version
    waiting for its decision is refused."""
    system = _system(session, system_id)  # locked: two starts cannot take the same version number
    newest = latest(session, system.id)
    if newest is not None and newest.status == AssessmentStatus.DRAFT:
        return newest
    if newest is not None and newest.status == AssessmentStatus.SUBMITTED:
        raise AIInventoryError(None, f"Version {newest.version} is waiting for a decision: approve or reject "
                                     "it before starting a new version.")
    answers = {k: v for k, v in (newest.answers if newest is not None else {}).items() if k in BY_ID}
    assessment = ImpactAssessment(
        system_id=system.id, version=(newest.version + 1) if newest is not None else 1,
        template_version=TEMPLATE_VERSION, answers=answers, status=AssessmentStatus.DRAFT,
        created_by_id=context.current().actor_id)
    session.add(assessment)
    session.flush()
    session.refresh(assessment)
    audit.record(session, "impact_assessment.start", object_type="impact_assessment", object_id=assessment.id,
                 after=_snapshot(assessment),
                 details={"system": system.name, "copied_from": newest.version if newest is not None else None})
    return assessment


def save_answers(session: Session, assessment_id: uuid.UUID, answers: Mapping[str, Any]) -> ImpactAssessment:
    """Store the given answers (others are kept; an empty answer clears one) of a draft; audited
    with the answers that changed."""
    assessment = _locked(session, assessment_id)
    if assessment.status != AssessmentStatus.DRAFT:
        raise AIInventoryError(None, f"Version {assessment.version} is {assessment.status.value}: its answers "
                                     "can no longer change. Start a new version to revise it.")
    current = dict(assessment.answers or {})
    updated = dict(current)
    for key, value in answers.items():
        if key not in BY_ID:
            raise AIInventoryError(key, "This assessment has no such question.")
        if value is not None and not isinstance(value, str):
            raise AIInventoryError(key, "Enter the answer as text.")
        text = (value or "").strip()
        if len(text) > ANSWER_MAX:
            raise AIInventoryError(key, f"Keep the answer to {ANSWER_MAX} characters.")
        if text:
            updated[key] = text
        else:
            updated.pop(key, None)
    changed = sorted(k for k in set(current) | set(updated) if current.get(k) != updated.get(k))
    if not changed:
        return assessment
    assessment.answers = updated
    session.flush()
    audit.record(session, "impact_assessment.save", object_type="impact_assessment", object_id=assessment.id,
                 before={k: current.get(k) for k in changed}, after={k: updated.get(k) for k in changed},
                 details={"system_id": assessment.system_id, "version": assessment.version})
    return assessment


def _require_complete(assessment: ImpactAssessment, verb: str) -> None:
    gaps = missing(assessment.answers or {})
    if gaps:
        names = ", ".join(q.title.lower() for q in gaps)
        raise AIInventoryError(gaps[0].id, f"Answer every required question before {verb}: {names}.")


def submit(session: Session, assessment_id: uuid.UUID) -> ImpactAssessment:
    """Send a complete draft for a decision."""
    assessment = _locked(session, assessment_id)
    if assessment.status != AssessmentStatus.DRAFT:
        raise AIInventoryError(None, f"Only a draft can be submitted; version {assessment.version} is "
                                     f"{assessment.status.value}.")
    _require_complete(assessment, "submitting")
    before = _snapshot(assessment)
    assessment.status = AssessmentStatus.SUBMITTED
    assessment.submitted_at = func.now()  # type: ignore[assignment]
    session.flush()
    session.refresh(assessment)
    audit.record(session, "impact_assessment.submit", object_type="impact_assessment", object_id=assessment.id,
                 before={"status": before["status"]}, after={"status": assessment.status,
                                                             "submitted_at": assessment.submitted_at},
                 details={"system_id": assessment.system_id, "version": assessment.version})
    return assessment


def _decide(session: Session, assessment_id: uuid.UUID, decision: AssessmentStatus,
            comment: str | None) -> ImpactAssessment:
    note = _comment(comment)
    actor = context.current()
    assessment = _locked(session, assessment_id)
    if assessment.status != AssessmentStatus.SUBMITTED:
        raise AIInventoryError(None, f"Only a submitted assessment can be decided; version {assessment.version} "
                                     f"is {assessment.status.value}.")
    if actor.actor_id is None:
        raise AIInventoryError(None, "A decision needs a named person: sign in to approve or reject.")
    if actor.actor_id == assessment.created_by_id:
        raise AIInventoryError(None, "You wrote this assessment, so someone else must approve or reject it.")
    if decision == AssessmentStatus.APPROVED:
        _require_complete(assessment, "approving")
    elif note is None:
        raise AIInventoryError("comment", "Say what must change before the assessment can be approved.")
    assessment.status = decision
    assessment.decided_by_id = actor.actor_id
    assessment.decided_at = func.now()  # type: ignore[assignment]
    assessment.decision_comment = note
    session.flush()
    session.refresh(assessment)
    action = "impact_assessment.approve" if decision == AssessmentStatus.APPROVED else "impact_assessment.reject"
    audit.record(session, action, object_type="impact_assessment", object_id=assessment.id,
                 before={"status": AssessmentStatus.SUBMITTED},
                 after={"status": decision, "decided_by_id": assessment.decided_by_id,
                        "decided_at": assessment.decided_at, "decision_comment": note},
                 details={"system_id": assessment.system_id, "version": assessment.version})
    return assessment


def approve(session: Session, assessment_id: uuid.UUID, comment: str | None = None) -> ImpactAssessment:
    """The current actor (not the author) approves a submitted, complete version."""
    return _decide(session, assessment_id, AssessmentStatus.APPROVED, comment)


def reject(session: Session, assessment_id: uuid.UUID, comment: str | None) -> ImpactAssessment:
    """The current actor (not the author) sends a submitted version back, saying what must change."""
    return _decide(session, assessment_id, AssessmentStatus.REJECTED, comment)


# --- summaries for the EU AI Act register (Annex VIII, Section C) ---------------------------------

def _shorten(text: str, limit: int = SUMMARY_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"


def findings_summary(assessment: ImpactAssessment) -> str | None:
    """The findings of the fundamental rights impact assessment in a few lines: the risks, the
    measures and the residual risk (None when none of them is answered)."""
    answers = assessment.answers or {}
    parts = [f"{BY_ID[key].title}: {answers[key].strip()}" for key in
             ("affected_persons", "risks_of_harm", "mitigation", "residual_risk", "risk_acceptance")
             if str(answers.get(key) or "").strip()]
    if not parts:
        return None
    return _shorten(f"Version {assessment.version}. " + " ".join(p if p.endswith(".") else p + "." for p in parts))


def dpia_summary(assessment: ImpactAssessment) -> str | None:
    answer = str((assessment.answers or {}).get("dpia_reference") or "").strip()
    return _shorten(answer) if answer else None
