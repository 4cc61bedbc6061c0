"""The EU AI Act questionnaire, the impact assessment and the EU AI Act register view.

The questionnaire is stateless: its form carries the answers given so far as hidden inputs
(a-<question id>), shows the next question (governance.services.ai_act.next_question) as radio
buttons, and each answer, "Back" or "Change" posts the whole form again. With htmx only the
questionnaire block is swapped; without JavaScript the same form posts and the page comes back.
Nothing is stored until "Save classification" (a new classification version). A value the
questionnaire does not know answers 400 with the message beside its question.

The impact assessment page edits the newest version while it is a draft, submits it, and lets a
compliance officer or admin (ai_systems:approve) approve or reject it with a comment; the rules
(never the author, complete answers only, drafts only) and their messages are the service's.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

from flask import abort, request, url_for
from werkzeug.wrappers import Response

from blueprints.access import can, requires
from blueprints.ai_systems import bp
from blueprints.ai_systems.forms import RISK_LABELS
from blueprints.web import done, render, wants_fragment
from extensions import db
from governance.models.ai import AISystem, ImpactAssessment
from governance.models.enums import AIRiskClass, AssessmentStatus
from governance.services import ai_act, ai_systems, impact_assessments
from governance.services.ai_act import AIActError, Question
from governance.services.ai_systems import AIInventoryError

CLASSIFY_TEMPLATE = "ai_systems/classify.html"
ASSESSMENT_TEMPLATE = "ai_systems/assessment.html"
REGISTER_TEMPLATE = "ai_systems/register.html"
ANSWER_PREFIX = "a-"
ASSESSMENT_PREFIX = "q-"
QUESTION_BY_ID: dict[str, Question] = ai_act.QUESTION_BY_ID
ORDER: dict[str, int] = {q.id: n for n, q in enumerate(ai_act.QUESTIONS)}
ASSESSMENT_LABELS = {
    AssessmentStatus.DRAFT: "Draft",
    AssessmentStatus.SUBMITTED: "Submitted for approval",
    AssessmentStatus.APPROVED: "Approved",
    AssessmentStatus.REJECTED: "Rejected",
}


@bp.app_template_filter("risk_label")
def risk_label(value: AIRiskClass | str | None) -> str:
    if value is None:
        return "Not classified"
    try:
        return RISK_LABELS[AIRiskClass(value)]
    except ValueError:
        return str(value)


@bp.app_template_filter("assessment_status")
def assessment_status(value: AssessmentStatus | str | None) -> str:
    if value is None:
        return "Not started"
    try:
        return ASSESSMENT_LABELS[AssessmentStatus(value)]
    except ValueError:
        return str(value)


@bp.app_template_filter("obligation_label")
def obligation_label(tag: str) -> str:
    """An obligation tag in words, e.g. 'High-risk system deployer (Article 26)'."""
    return ai_act.OBLIGATION_LABELS.get(tag) or tag.replace("_", " ").capitalize()


def _system_or_404(system_id: uuid.UUID) -> AISystem:
    system = ai_systems.get_system(db.session, system_id)
    if system is None or system.deleted_at is not None:
        abort(404)
    return system


def _system_url(system: AISystem) -> str:
    return url_for("ai_systems.detail", system_id=system.id)


# --- the questionnaire --------------------------------------------------------------------------------


def _answer_label(question: Question, value: str) -> str:
    return dict(question.options).get(value, value)


def _carried() -> dict[str, str]:
    """The answers the form carries (hidden a-<id> inputs): any question id the questionnaire knows."""
    return {key[len(ANSWER_PREFIX):]: value[:200] for key, value in request.form.items()
            if key.startswith(ANSWER_PREFIX) and key[len(ANSWER_PREFIX):] in QUESTION_BY_ID}


def _prefill(system: AISystem) -> dict[str, str]:
    """The newest classification's answers that are still relevant and valid (a re-classification
    starts from them); an answer the questionnaire no longer accepts is dropped."""
    newest = ai_act.latest(db.session, system.id)
    if newest is None:
        return {}
    answers = {str(k): str(v) for k, v in (newest.answers or {}).items() if k in QUESTION_BY_ID}
    for _ in range(len(answers) + 1):
        try:
            return ai_act.clean_answers(answers)
        except AIActError as exc:
            if exc.field not in answers:
                return {}
            answers.pop(exc.field)
    return {}


def _path(system: AISystem, answers: Mapping[str, str]) -> list[tuple[Question, str, str]]:
    """The answered questions on the path so far (for the system's role), in order: (question,
    value, label)."""
    return [(q, answers[q.id], _answer_label(q, answers[q.id]))
            for q in ai_act.relevant_questions(answers, role=system.eu_role) if q.id in answers]


def _questionnaire(system: AISystem, answers: Mapping[str, str], *, question: Question | None = None,
                   selected: str | None = None, error: str | None = None, status: int = 200,
                   **extra: Any) -> Response:
    """The page (or its questionnaire block): `question` is asked (default: the next one), with
    `selected` pre-chosen; the other answers ride along as hidden inputs."""
    answers = dict(answers)
    if question is None:
        question = ai_act.next_question(answers, role=system.eu_role)
    if question is not None:
        answers.pop(question.id, None)
    else:
        with contextlib.suppress(AIActError):  # complete: carry only what the classification is made of
            answers = ai_act.clean_answers(answers)
    result = ai_act.classify(answers, system.eu_role) if question is None else None
    obligations = [(tag, sorted(ai_act.applicable_refs([tag]))) for tag in result.obligations] if result else []
    context: dict[str, Any] = {
        "system": system, "answers": answers, "question": question, "selected": selected, "error": error,
        "path": _path(system, answers), "result": result, "obligations": obligations,
        "history": ai_act.history(db.session, system.id)[::-1], "questionnaire_version": ai_act.QUESTIONNAIRE_VERSION,
        "editable": can("ai_systems", "classify"), "save_error": None,
    }
    context.update(extra)
    response = render(CLASSIFY_TEMPLATE, block="questionnaire", status=status, **context)
    if status >= 400 and wants_fragment():
        # app.js swaps an error answer only when it names its target: the questionnaire again.
        response.headers["HX-Retarget"] = "#ai-questionnaire"
        response.headers["HX-Reswap"] = "outerHTML"
    return response


@bp.get("/ai-systems/<uuid:system_id>/classify")
@requires("ai_systems", "read")
def classify(system_id: uuid.UUID) -> Response:
    system = _system_or_404(system_id)
    fresh = request.args.get("fresh") == "1"
    answers = {} if fresh or not can("ai_systems", "classify") else _prefill(system)
    return _questionnaire(system, answers)


def _previous(system: AISystem, answers: Mapping[str, str], current: str | None) -> str | None:
    """The answered question before `current` on the path (the last answered one when complete)."""
    ids = [q.id for q, _, _ in _path(system, answers)]
    if current in ORDER:
        ids = [qid for qid in ids if ORDER[qid] < ORDER[current]]
    return ids[-1] if ids else None


@bp.post("/ai-systems/<uuid:system_id>/classify")
@requires("ai_systems", "classify")
def classify_step(system_id: uuid.UUID) -> Response:
    system = _system_or_404(system_id)
    answers = _carried()
    current_id = request.form.get("question") or None
    action = request.form.get("action", "answer")
    change = request.form.get("change")

    if change is not None or action == "back":
        # Ask that question again with its answer pre-chosen; later answers stay and are kept when
        # they are still relevant after the new answer.
        target = change if change in QUESTION_BY_ID else _previous(system, answers, current_id)
        if target is None:
            return _questionnaire(system, answers)
        return _questionnaire(system, answers, question=QUESTION_BY_ID[target], selected=answers.get(target))

    if action == "save":
        try:
            saved = ai_act.save_classification(db.session, system.id, answers)
        except AIActError as exc:
            db.session.rollback()
            return _bad_answer(system, answers, exc)
        db.session.commit()
        return done(_system_url(system),
                    f"Classified as {risk_label(saved.result).lower()} (version {saved.version}).")

    if current_id not in QUESTION_BY_ID:
        return _questionnaire(system, answers, status=400, error="That question is not part of the questionnaire.")
    question = QUESTION_BY_ID[current_id]
    value = request.form.get("answer")
    if not value:
        return _questionnaire(system, answers, question=question, status=400, error="Choose an answer to go on.")
    given = {**answers, question.id: value[:200]}
    try:
        ai_act.clean_answers(given)  # refuses a value a question does not offer
    except AIActError as exc:
        return _bad_answer(system, given, exc)
    # Answers off the path stay in the form until the end, so that changing an earlier answer and
    # changing it back loses nothing; the path and the result read only the relevant ones.
    return _questionnaire(system, given)


def _bad_answer(system: AISystem, answers: Mapping[str, str], exc: AIActError) -> Response:
    """400: the message beside the question it is about (or above the result when it is about none)."""
    question = QUESTION_BY_ID.get(exc.field or "")
    if question is None:
        return _questionnaire(system, answers, status=400, save_error=exc.message)
    rest = {k: v for k, v in answers.items() if k != question.id}
    return _questionnaire(system, rest, question=question, status=400, error=exc.message)


# --- the impact assessment ----------------------------------------------------------------------------


def _assessment_or_404(system: AISystem, assessment_id: uuid.UUID) -> ImpactAssessment:
    assessment = impact_assessments.get(db.session, assessment_id)
    if assessment is None or assessment.system_id != system.id:
        abort(404)
    return assessment


def _assessment_page(system: AISystem, *, shown: ImpactAssessment | None = None, status: int = 200,
                     errors: Mapping[str, str] | None = None, values: Mapping[str, str] | None = None,
                     form_error: str | None = None, decision_error: str | None = None,
                     comment: str = "") -> Response:
    """The page, or its assessment block for htmx: `shown` (default: the newest version) with its
    answers (a draft as an editable form), the decision form, and every version."""
    versions = impact_assessments.history(db.session, system.id)
    newest = versions[0] if versions else None
    shown = shown or newest
    answers = dict(shown.answers or {}) if shown is not None else {}
    answers.update(values or {})
    response = render(
        ASSESSMENT_TEMPLATE, block="assessment", status=status, system=system, shown=shown, newest=newest,
        versions=versions, sections=impact_assessments.SECTIONS, answers=answers, errors=errors or {},
        form_error=form_error, decision_error=decision_error, comment=comment,
        missing=impact_assessments.missing(shown.answers or {}) if shown is not None else [],
        template_version=impact_assessments.TEMPLATE_VERSION, answer_max=impact_assessments.ANSWER_MAX,
        comment_max=impact_assessments.COMMENT_MAX, needs_assessment=ai_systems.needs_assessment(system))
    return response


def _assessment_url(system: AISystem) -> str:
    return url_for("ai_systems.assessment", system_id=system.id)


@bp.get("/ai-systems/<uuid:system_id>/assessment")
@requires("ai_systems", "read")
def assessment(system_id: uuid.UUID) -> Response:
    return _assessment_page(_system_or_404(system_id))


@bp.get("/ai-systems/<uuid:system_id>/impact-assessments/<uuid:assessment_id>")
@requires("ai_systems", "read")
def assessment_version(system_id: uuid.UUID, assessment_id: uuid.UUID) -> Response:
    system = _system_or_404(system_id)
    return _assessment_page(system, shown=_assessment_or_404(system, assessment_id))


@bp.post("/ai-systems/<uuid:system_id>/assessment/start")
@requires("ai_systems", "assess")
def start_assessment(system_id: uuid.UUID) -> Response:
    system = _system_or_404(system_id)
    newest = impact_assessments.latest(db.session, system.id)
    try:
        started = impact_assessments.start(db.session, system.id)
    except AIInventoryError as exc:
        db.session.rollback()
        return _assessment_page(system, status=422, form_error=exc.message)
    db.session.commit()
    if newest is not None and started.id == newest.id:
        return done(_assessment_url(system), f"Version {started.version} is still a draft: carry on with it.")
    return done(_assessment_url(system), f"Version {started.version} started as a draft.")


def _posted_answers() -> dict[str, str]:
    return {key[len(ASSESSMENT_PREFIX):]: value[: impact_assessments.ANSWER_MAX + 1]
            for key, value in request.form.items()
            if key.startswith(ASSESSMENT_PREFIX) and key[len(ASSESSMENT_PREFIX):] in impact_assessments.BY_ID}


def _gaps(answers: Mapping[str, Any]) -> dict[str, str]:
    return {q.id: "Answer this question before submitting." for q in impact_assessments.missing(answers)}


@bp.post("/ai-systems/<uuid:system_id>/impact-assessments/<uuid:assessment_id>/answers")
@requires("ai_systems", "assess")
def save_assessment(system_id: uuid.UUID, assessment_id: uuid.UUID) -> Response:
    """Save the draft's answers; with action=submit, also send it for approval (the answers are
    kept even when the submission is refused, e.g. for a missing answer)."""
    system = _system_or_404(system_id)
    shown = _assessment_or_404(system, assessment_id)
    answers = _posted_answers()
    submitting = request.form.get("action") == "submit"
    try:
        saved = impact_assessments.save_answers(db.session, shown.id, answers)
    except AIInventoryError as exc:
        db.session.rollback()
        shown = _assessment_or_404(system, assessment_id)
        if exc.field in impact_assessments.BY_ID:
            return _assessment_page(system, shown=shown, status=422, errors={exc.field: exc.message}, values=answers)
        return _assessment_page(system, shown=shown, status=422, form_error=exc.message, values=answers)
    if not submitting:
        db.session.commit()
        return done(_assessment_url(system), f"Draft of version {saved.version} saved.")
    try:
        with db.session.begin_nested():
            impact_assessments.submit(db.session, saved.id)
    except AIInventoryError as exc:
        db.session.commit()  # the answers stay saved; only the submission was refused
        return _assessment_page(system, shown=saved, status=422, errors=_gaps(saved.answers or {}),
                                form_error=f"Draft saved, not submitted. {exc.message}")
    db.session.commit()
    return done(_assessment_url(system), f"Version {saved.version} submitted for approval.")


@bp.post("/ai-systems/<uuid:system_id>/impact-assessments/<uuid:assessment_id>/decision")
@requires("ai_systems", "approve")
def decide_assessment(system_id: uuid.UUID, assessment_id: uuid.UUID) -> Response:
    system = _system_or_404(system_id)
    shown = _assessment_or_404(system, assessment_id)
    comment = (request.form.get("comment") or "")[: impact_assessments.COMMENT_MAX + 1]
    decision = request.form.get("action")
    if decision not in ("approve", "reject"):
        return _assessment_page(system, shown=shown, status=422, comment=comment,
                                decision_error="Choose to approve or to reject the assessment.")
    try:
        if decision == "approve":
            decided = impact_assessments.approve(db.session, shown.id, comment)
        else:
            decided = impact_assessments.reject(db.session, shown.id, comment)
    except AIInventoryError as exc:
        db.session.rollback()
        shown = _assessment_or_404(system, assessment_id)
        errors = {"comment": exc.message} if exc.field == "comment" else {}
        message = None if errors else exc.message
        if shown.status != AssessmentStatus.SUBMITTED:  # no decision form to show it in
            return _assessment_page(system, shown=shown, status=422, form_error=message)
        return _assessment_page(system, shown=shown, status=422, comment=comment, errors=errors,
                                decision_error=message)
    db.session.commit()
    verb = "approved" if decided.status == AssessmentStatus.APPROVED else "rejected"
    return done(_assessment_url(system), f"Version {decided.version} {verb}.")


# --- the EU AI Act register ---------------------------------------------------------------------------


@bp.get("/ai-systems/register")
@requires("ai_systems", "read")
def register() -> Response:
    return render(REGISTER_TEMPLATE, rows=ai_systems.register_rows(db.session))
