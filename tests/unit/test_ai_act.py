"""The EU AI Act questionnaire (governance.services.ai_act): every path through it (Article 5, Annex I,
Annex III with the Article 6(3) exceptions, the deployer's Article 26(8)/27 questions, Article 50, GPAI
models), question order and relevance per role, answer cleaning, the obligation -> control mapping
against the shipped library, and persistence: versions, applicability rows, re-classification, audit."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

import config
from governance import context
from governance.models.ai import AIClassification, AISystem, AISystemControl
from governance.models.audit import AuditLog
from governance.models.enums import AIActRole, AIRiskClass
from governance.models.frameworks import Control, Framework
from governance.services import ai_act, libraries
from governance.services.ai_act import AIActError

P, D, IMP, DIS = AIActRole.PROVIDER, AIActRole.DEPLOYER, AIActRole.IMPORTER, AIActRole.DISTRIBUTOR
ALL_ROLES = (P, D, IMP, DIS)
ARTICLE_5 = [f"Article 5(1)({p})" for p in "abcdefgh"]
PROHIBITION_IDS = list(ai_act.PROHIBITIONS)
BASE = "prohibited_practices"
LIBRARY_FILE = config.ROOT / "governance" / "libraries" / "eu-ai-act-2024-1689.json"


def run(role: AIActRole | None, **given: str) -> tuple[dict[str, str], list[str]]:
    """Answer the questionnaire as a person would, one next_question at a time: the given answers, else
    "no" (yes/no), "none" (the Annex III area) or "private" (the deployer's organisation). Returns the
    answers and the questions asked, in order; every given answer must have been asked."""
    answers: dict[str, str] = {}
    asked: list[str] = []
    while (question := ai_act.next_question(answers, role=role)) is not None:
        assert question.id not in asked, f"{question.id} asked twice"
        asked.append(question.id)
        default = {"yes_no": "no", "choice": "none"}[question.kind]
        if question.id == ai_act.DEPLOYER_ORG:
            default = "private"
        answers[question.id] = given.get(question.id, default)
        assert len(asked) <= len(ai_act.QUESTIONS)
    assert set(given) <= set(asked), f"never asked: {set(given) - set(asked)}"
    return answers, asked


def result_of(role: AIActRole, **given: str) -> tuple[ai_act.Classification, list[str]]:
    answers, asked = run(role, **given)
    outcome = ai_act.classify(answers, role)
    assert outcome.complete
    return outcome, asked


def mentions(outcome: ai_act.Classification, text: str) -> bool:
    return any(text in reason for reason in outcome.rationale)


def library_leaves() -> dict[str, str]:
    """Assessable ref_id -> the ref_id of its parent heading, from the shipped JSON file."""
    leaves: dict[str, str] = {}

    def walk(nodes: list[dict[str, Any]], parent: str) -> None:
        for node in nodes:
            if node.get("assessable", True):
                leaves[node["ref_id"]] = parent
            walk(node.get("children", []), node["ref_id"])

    walk(json.loads(LIBRARY_FILE.read_text(encoding="utf-8"))["controls"], "")
    return leaves


# --- the questions ------------------------------------------------------------------------------------

def test_questions_are_plain_single_step_and_cite_the_law() -> None:
    ids = [q.id for q in ai_act.QUESTIONS]
    assert len(ids) == len(set(ids))
    for q in ai_act.QUESTIONS:
        assert q.text.endswith("?") and q.help.strip() and q.legal_ref.strip(), q.id
        assert q.legal_ref.startswith(("Article", "Annex")), q.id
        # No negation in the question itself, so never a double negative ("yes" always means "it does").
        words = q.text.lower().replace("?", " ").replace(",", " ").split()
        assert "not" not in words and not any(w.endswith("n't") for w in words), q.id
        if q.kind == "yes_no":
            assert q.options == (("yes", "Yes"), ("no", "No"))
        else:
            assert q.kind == "choice" and len(q.options) >= 2
            assert len({v for v, _ in q.options}) == len(q.options) and all(label for _, label in q.options)
    assert [ai_act.QUESTION_BY_ID[qid].legal_ref for qid in PROHIBITION_IDS] == ARTICLE_5[:7]
    assert ai_act.QUESTION_BY_ID[ai_act.RBI].legal_ref == "Article 5(1)(h)"
    area = ai_act.QUESTION_BY_ID[ai_act.ANNEX_III]
    assert [v for v, _ in area.options] == [*ai_act.ANNEX_III_AREAS, "none"]
    assert [point for point, _ in ai_act.ANNEX_III_AREAS.values()] == [str(n) for n in range(1, 9)]


def test_the_full_order_for_every_role_when_everything_is_no() -> None:
    article_5 = [*PROHIBITION_IDS, ai_act.RBI]
    _, asked = run(None)
    assert asked == [*article_5, ai_act.ANNEX_I, ai_act.ANNEX_III, ai_act.INTERACTS, ai_act.SYNTHETIC,
                     ai_act.EMOTION_BIOMETRIC, ai_act.DEEP_FAKE, ai_act.GPAI]
    assert run(P)[1] == [*article_5, ai_act.ANNEX_I, ai_act.ANNEX_III, ai_act.INTERACTS, ai_act.SYNTHETIC,
                         ai_act.GPAI]
    assert run(D)[1] == [*article_5, ai_act.ANNEX_I, ai_act.ANNEX_III, ai_act.EMOTION_BIOMETRIC, ai_act.DEEP_FAKE,
                         ai_act.GPAI]
    for role in (IMP, DIS):
        assert run(role)[1] == [*article_5, ai_act.ANNEX_I, ai_act.ANNEX_III, ai_act.GPAI]
    assert ai_act.next_question({}).id == "prohibited_manipulation"
    # The role may be given as its value too.
    assert ai_act.next_question(run(P)[0], role="provider") is None


def test_relevant_questions_is_the_path_so_far_with_the_next_question() -> None:
    answers = {"prohibited_manipulation": "no", "prohibited_vulnerabilities": "no"}
    assert [q.id for q in ai_act.relevant_questions(answers)] == [
        "prohibited_manipulation", "prohibited_vulnerabilities", "prohibited_social_scoring"]
    answers, _ = run(P, annex_i_product="yes", annex_i_third_party="yes")
    path = [q.id for q in ai_act.relevant_questions(answers, role=P)]
    assert path == list(answers) and ai_act.ANNEX_III not in path and ai_act.ANNEX_I_THIRD_PARTY in path
    # Complete after a prohibited practice: the path stops at it.
    assert [q.id for q in ai_act.relevant_questions({"prohibited_manipulation": "yes"})] == ["prohibited_manipulation"]


# --- Article 5 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("qid", PROHIBITION_IDS)
@pytest.mark.parametrize("role", ALL_ROLES)
def test_each_prohibited_practice_ends_the_questionnaire_as_prohibited(qid: str, role: AIActRole) -> None:
    outcome, asked = result_of(role, **{qid: "yes"})
    assert asked == PROHIBITION_IDS[: PROHIBITION_IDS.index(qid) + 1]
    assert outcome.result == AIRiskClass.PROHIBITED
    assert outcome.obligations == [BASE]
    ref = ai_act.PROHIBITIONS[qid][0]
    assert len(outcome.rationale) == 1 and outcome.rationale[0].startswith(f"{ref}:")
    assert mentions(outcome, "must not be placed on the market")
    assert ai_act.applicable_refs(outcome.obligations) == set(ARTICLE_5)


@pytest.mark.parametrize("role", ALL_ROLES)
def test_realtime_biometric_identification_beyond_the_objectives_is_prohibited(role: AIActRole) -> None:
    outcome, asked = result_of(role, realtime_biometric_identification="yes", realtime_biometric_authorised="no")
    assert asked == [*PROHIBITION_IDS, ai_act.RBI, ai_act.RBI_AUTHORISED]
    assert outcome.result == AIRiskClass.PROHIBITED and outcome.obligations == [BASE]
    assert outcome.rationale[0].startswith("Article 5(1)(h):") and mentions(outcome, "(h)(i)-(iii)")


def test_authorised_realtime_biometric_identification_is_high_risk_not_prohibited() -> None:
    outcome, asked = result_of(P, realtime_biometric_identification="yes", realtime_biometric_authorised="yes")
    assert outcome.result == AIRiskClass.HIGH
    assert outcome.obligations == [BASE, "high_risk_provider"]
    assert mentions(outcome, "Annex III point 1(a)") and mentions(outcome, "Article 5(2)-(3)")
    # Already high-risk under Annex III point 1(a): the Annex I/III route is not asked.
    assert not {ai_act.ANNEX_I, ai_act.ANNEX_III, ai_act.PROFILING, ai_act.EXCEPTION} & set(asked)
    # A deployer (a law enforcement authority) needs the impact assessment for each use (Article 5(2)).
    outcome, asked = result_of(D, realtime_biometric_identification="yes", realtime_biometric_authorised="yes",
                               deployer_organisation="public_authority")
    assert outcome.obligations == [BASE, "high_risk_deployer", "public_authority_registration",
                                   "fundamental_rights_impact_assessment"]
    assert ai_act.CREDIT_INSURANCE not in asked and mentions(outcome, "(Article 5(2))")


# --- high risk: Annex I ----------------------------------------------------------------------------------

def test_annex_i_product_with_third_party_assessment_is_high_risk() -> None:
    outcome, asked = result_of(P, annex_i_product="yes", annex_i_third_party="yes")
    assert outcome.result == AIRiskClass.HIGH and outcome.obligations == [BASE, "high_risk_provider"]
    assert mentions(outcome, "Article 6(1):") and mentions(outcome, "Articles 9-15")
    assert ai_act.ANNEX_III not in asked and ai_act.DEPLOYER_ORG not in asked
    # A deployer is still asked the area (Article 27 covers Annex III systems) and its organisation.
    outcome, asked = result_of(D, annex_i_product="yes", annex_i_third_party="yes")
    assert ai_act.ANNEX_III in asked and ai_act.PROFILING not in asked and ai_act.DEPLOYER_ORG in asked
    assert outcome.result == AIRiskClass.HIGH and outcome.obligations == [BASE, "high_risk_deployer"]


def test_annex_i_product_without_third_party_assessment_goes_on_to_annex_iii() -> None:
    outcome, asked = result_of(P, annex_i_product="yes", annex_i_third_party="no")
    assert asked.index(ai_act.ANNEX_I_THIRD_PARTY) < asked.index(ai_act.ANNEX_III)
    assert outcome.result == AIRiskClass.MINIMAL and outcome.obligations == [BASE]
    assert mentions(outcome, "Article 6(1)(b)") and mentions(outcome, "Minimal risk")
    outcome, _ = result_of(P, annex_i_product="yes", annex_i_third_party="no", annex_iii_area="employment",
                           annex_iii_exception="no")
    assert outcome.result == AIRiskClass.HIGH
    # Not an Annex I product: the third-party question is never asked.
    assert ai_act.ANNEX_I_THIRD_PARTY not in run(P)[1]


# --- high risk: Annex III and Article 6(3) ---------------------------------------------------------------

@pytest.mark.parametrize("area", list(ai_act.ANNEX_III_AREAS))
def test_each_annex_iii_area_is_high_risk(area: str) -> None:
    point = ai_act.ANNEX_III_AREAS[area][0]
    outcome, asked = result_of(P, annex_iii_area=area, annex_iii_exception="no")
    assert asked[asked.index(ai_act.ANNEX_III):asked.index(ai_act.ANNEX_III) + 3] == [
        ai_act.ANNEX_III, ai_act.PROFILING, ai_act.EXCEPTION]
    assert outcome.result == AIRiskClass.HIGH and outcome.obligations == [BASE, "high_risk_provider"]
    assert mentions(outcome, f"Annex III point {point} (")


@pytest.mark.parametrize("role", ALL_ROLES)
def test_profiling_is_always_high_risk_and_skips_the_exception(role: AIActRole) -> None:
    outcome, asked = result_of(role, annex_iii_area="education", profiling="yes")
    assert ai_act.EXCEPTION not in asked
    assert outcome.result == AIRiskClass.HIGH and mentions(outcome, "Article 6(3), last subparagraph")
    # Answering the exception anyway changes nothing: the answer is not relevant.
    answers, _ = run(role, annex_iii_area="education", profiling="yes")
    assert ai_act.classify({**answers, ai_act.EXCEPTION: "yes"}, role).result == AIRiskClass.HIGH
    assert ai_act.EXCEPTION not in ai_act.clean_answers({**answers, ai_act.EXCEPTION: "yes"}, role=role)


def test_the_article_6_3_exception_makes_it_not_high_risk() -> None:
    outcome, asked = result_of(P, annex_iii_area="employment", annex_iii_exception="yes")
    assert outcome.result == AIRiskClass.MINIMAL and outcome.obligations == [BASE]
    assert mentions(outcome, "Article 6(4)") and mentions(outcome, "Article 49(2)")
    assert mentions(outcome, "Document this assessment")
    # ... and then limited when Article 50 applies.
    outcome, _ = result_of(P, annex_iii_area="employment", annex_iii_exception="yes", interacts_with_people="yes")
    assert outcome.result == AIRiskClass.LIMITED
    assert outcome.obligations == [BASE, "transparency_interaction", "transparency_information"]
    # A deployer of such a system has no high-risk questions to answer; the provider documents it.
    outcome, asked = result_of(D, annex_iii_area="employment", annex_iii_exception="yes")
    assert ai_act.DEPLOYER_ORG not in asked and outcome.result == AIRiskClass.MINIMAL
    assert mentions(outcome, "The provider must document")


# --- the deployer's Article 26(8) and Article 27 questions -----------------------------------------------

@pytest.mark.parametrize(("organisation", "extra"), [
    ("public_authority", ["public_authority_registration", "fundamental_rights_impact_assessment"]),
    ("public_law_body", ["fundamental_rights_impact_assessment"]),
    ("public_services", ["fundamental_rights_impact_assessment"]),
    ("private", []),
])
def test_a_high_risk_deployers_organisation_decides_registration_and_fria(organisation: str,
                                                                          extra: list[str]) -> None:
    outcome, asked = result_of(D, annex_iii_area="employment", profiling="yes", deployer_organisation=organisation)
    assert outcome.result == AIRiskClass.HIGH
    assert outcome.obligations == [BASE, "high_risk_deployer", *extra]
    assert ai_act.CREDIT_INSURANCE not in asked  # only for essential services
    assert mentions(outcome, "Article 26(8)") == (organisation == "public_authority")
    assert mentions(outcome, "Article 27: carry out") == bool(extra and extra[-1].startswith("fundamental"))


def test_credit_scoring_and_insurance_pricing_need_a_fria_whatever_the_organisation() -> None:
    outcome, asked = result_of(D, annex_iii_area="essential_services", profiling="yes",
                               deployer_credit_insurance="yes")
    assert asked.index(ai_act.DEPLOYER_ORG) + 1 == asked.index(ai_act.CREDIT_INSURANCE)
    assert outcome.obligations == [BASE, "high_risk_deployer", "fundamental_rights_impact_assessment"]
    assert mentions(outcome, "Annex III point 5(b)-(c)")
    outcome, _ = result_of(D, annex_iii_area="essential_services", profiling="yes", deployer_credit_insurance="no")
    assert outcome.obligations == [BASE, "high_risk_deployer"] and mentions(outcome, "no fundamental rights")
    # A public body already needs one: the credit question is not asked.
    _, asked = result_of(D, annex_iii_area="essential_services", profiling="yes",
                         deployer_organisation="public_law_body")
    assert ai_act.CREDIT_INSURANCE not in asked


def test_critical_infrastructure_and_annex_i_only_systems_need_no_fria() -> None:
    outcome, _ = result_of(D, annex_iii_area="critical_infrastructure", annex_iii_exception="no",
                           deployer_organisation="public_authority")
    assert outcome.obligations == [BASE, "high_risk_deployer", "public_authority_registration"]
    assert mentions(outcome, "Annex III point 2")
    outcome, _ = result_of(D, annex_i_product="yes", annex_i_third_party="yes", deployer_organisation="public_law_body")
    assert outcome.obligations == [BASE, "high_risk_deployer"]
    # An Annex I product whose use Annex III also lists: the impact assessment applies.
    outcome, asked = result_of(D, annex_i_product="yes", annex_i_third_party="yes", annex_iii_area="education",
                               deployer_organisation="public_law_body")
    assert ai_act.PROFILING not in asked
    assert outcome.obligations == [BASE, "high_risk_deployer", "fundamental_rights_impact_assessment"]
    assert mentions(outcome, "also lists")


def test_providers_importers_and_distributors_are_never_asked_the_deployer_questions() -> None:
    for role in (P, IMP, DIS):
        _, asked = run(role, annex_iii_area="essential_services", profiling="yes")
        assert ai_act.DEPLOYER_ORG not in asked and ai_act.CREDIT_INSURANCE not in asked


# --- Article 50 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "qid", "tag", "article"), [
    (P, ai_act.INTERACTS, "transparency_interaction", "Article 50(1)"),
    (P, ai_act.SYNTHETIC, "transparency_synthetic_content", "Article 50(2)"),
    (D, ai_act.EMOTION_BIOMETRIC, "transparency_emotion_biometric", "Article 50(3)"),
    (D, ai_act.DEEP_FAKE, "transparency_deep_fake", "Article 50(4)"),
])
def test_each_article_50_answer_is_limited_with_the_roles_obligations(role: AIActRole, qid: str, tag: str,
                                                                      article: str) -> None:
    outcome, _ = result_of(role, **{qid: "yes"})
    assert outcome.result == AIRiskClass.LIMITED
    assert outcome.obligations == [BASE, tag, "transparency_information"]
    assert mentions(outcome, f"{article}:") and mentions(outcome, "Article 50(5)")
    assert ai_act.applicable_refs(outcome.obligations) == {*ARTICLE_5, article, "Article 50(5)"}
    # The other role is not asked this question, and an answer given anyway is not relevant to it.
    other = D if role == P else P
    answers, asked = run(other)
    assert qid not in asked
    assert ai_act.classify({**answers, qid: "yes"}, other).result == AIRiskClass.MINIMAL


def test_all_article_50_obligations_of_a_role_together_and_with_high_risk() -> None:
    outcome, _ = result_of(P, interacts_with_people="yes", generates_synthetic_content="yes")
    assert outcome.obligations == [BASE, "transparency_interaction", "transparency_synthetic_content",
                                   "transparency_information"]
    outcome, _ = result_of(D, annex_iii_area="employment", profiling="yes", emotion_or_biometric_categorisation="yes",
                           deep_fake_or_public_text="yes")
    assert outcome.result == AIRiskClass.HIGH  # high takes precedence over limited
    assert outcome.obligations == [BASE, "high_risk_deployer", "transparency_emotion_biometric",
                                   "transparency_deep_fake", "transparency_information"]


# --- general-purpose AI models ---------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "tags", "not_asked"), [
    ({"gpai_model": "yes"}, ["gpai_provider"], set()),
    ({"gpai_model": "yes", "gpai_outside_eu": "yes"}, ["gpai_provider", "gpai_authorised_representative"], set()),
    ({"gpai_model": "yes", "gpai_systemic_risk": "yes"}, ["gpai_provider", "gpai_systemic_risk"],
     {ai_act.GPAI_OPEN_SOURCE}),
    ({"gpai_model": "yes", "gpai_systemic_risk": "yes", "gpai_outside_eu": "yes"},
     ["gpai_provider", "gpai_authorised_representative", "gpai_systemic_risk"], {ai_act.GPAI_OPEN_SOURCE}),
    ({"gpai_model": "yes", "gpai_open_source": "yes"}, ["gpai_open_source_provider"], {ai_act.GPAI_OUTSIDE_EU}),
    ({}, [], {ai_act.GPAI_SYSTEMIC, ai_act.GPAI_OPEN_SOURCE, ai_act.GPAI_OUTSIDE_EU}),
])
@pytest.mark.parametrize("role", ALL_ROLES)
def test_general_purpose_ai_model_obligations(role: AIActRole, given: dict[str, str], tags: list[str],
                                              not_asked: set[str]) -> None:
    outcome, asked = result_of(role, **given)
    assert not not_asked & set(asked)
    assert outcome.obligations == [BASE, *sorted(tags, key=list(ai_act.OBLIGATIONS).index)]
    # A model's obligations do not change the system's risk class.
    assert outcome.result == AIRiskClass.MINIMAL
    refs = ai_act.applicable_refs(outcome.obligations)
    assert ("Article 55(1)(a)" in refs) == ("gpai_systemic_risk" in tags)
    assert ("Article 54(1)" in refs) == ("gpai_authorised_representative" in tags)
    assert ("Article 53(1)(a)" in refs) == ("gpai_provider" in tags)
    if "gpai_open_source_provider" in tags:
        assert {"Article 53(1)(c)", "Article 53(1)(d)", "Article 53(3)"} <= refs
        assert mentions(outcome, "Article 54(6)")


# --- importers, distributors, minimal ------------------------------------------------------------------

@pytest.mark.parametrize(("role", "article"), [(IMP, "Article 23"), (DIS, "Article 24")])
def test_importers_and_distributors_of_high_risk_systems(role: AIActRole, article: str) -> None:
    outcome, asked = result_of(role, annex_iii_area="migration", profiling="yes")
    assert outcome.result == AIRiskClass.HIGH
    assert outcome.obligations == [BASE]  # the library has no leaves for Articles 23/24
    assert mentions(outcome, f"{article}: as {role.value} of a high-risk system")
    assert mentions(outcome, f"no controls for {article}")
    assert mentions(outcome, "Article 50 places its transparency obligations on providers and deployers")
    assert not {ai_act.INTERACTS, ai_act.SYNTHETIC, ai_act.EMOTION_BIOMETRIC, ai_act.DEEP_FAKE} & set(asked)


@pytest.mark.parametrize("role", ALL_ROLES)
def test_nothing_applies_is_minimal(role: AIActRole) -> None:
    outcome, _ = result_of(role)
    assert outcome.result == AIRiskClass.MINIMAL and outcome.obligations == [BASE]
    assert mentions(outcome, "none of the prohibited practices applies") and mentions(outcome, "Minimal risk")
    assert mentions(outcome, "Article 6(2): the system's use is in none of the Annex III areas")


# --- cleaning and incomplete answers --------------------------------------------------------------------

def test_clean_answers_drops_what_is_no_longer_relevant() -> None:
    answers, _ = run(None, annex_i_product="yes", annex_i_third_party="no")
    assert ai_act.clean_answers(answers) == answers
    # annex_i_product changed to "no": its follow-up goes; unknown keys go; order is the questionnaire's.
    changed = {**answers, ai_act.ANNEX_I: "no", "csrf_token": "x", "not_a_question": "yes"}
    cleaned = ai_act.clean_answers(changed)
    assert ai_act.ANNEX_I_THIRD_PARTY not in cleaned and "csrf_token" not in cleaned
    assert list(cleaned) == [q.id for q in ai_act.QUESTIONS if q.id in cleaned]
    # A prohibited practice: everything after it goes.
    assert ai_act.clean_answers({**answers, "prohibited_manipulation": "yes"}) == {"prohibited_manipulation": "yes"}
    # The role drops the other roles' answers.
    for_provider = ai_act.clean_answers(answers, role=P)
    assert ai_act.EMOTION_BIOMETRIC not in for_provider and ai_act.INTERACTS in for_provider
    assert ai_act.INTERACTS not in ai_act.clean_answers(answers, role=D)


def test_going_back_keeps_the_later_answers_that_stay_relevant() -> None:
    answers, _ = run(P, annex_iii_area="employment", annex_iii_exception="no", interacts_with_people="yes")
    # Change the Annex I answer to yes: its follow-up is now the next question; the rest is kept.
    changed = ai_act.clean_answers({**answers, ai_act.ANNEX_I: "yes"}, role=P)
    assert ai_act.next_question(changed, role=P).id == ai_act.ANNEX_I_THIRD_PARTY
    assert changed[ai_act.ANNEX_III] == "employment" and changed[ai_act.INTERACTS] == "yes"
    # Answered "yes": the Annex III route is no longer the provider's to answer.
    done = ai_act.clean_answers({**changed, ai_act.ANNEX_I_THIRD_PARTY: "yes"}, role=P)
    assert ai_act.ANNEX_III not in done and ai_act.PROFILING not in done and ai_act.next_question(done, role=P) is None


@pytest.mark.parametrize(("field", "value"), [
    ("prohibited_manipulation", "maybe"), ("annex_iii_area", "space_travel"), ("annex_iii_area", "yes"),
    ("deployer_organisation", "no"), ("gpai_model", True), ("interacts_with_people", None), ("profiling", "Yes"),
])
def test_clean_answers_refuses_a_value_the_question_does_not_offer(field: str, value: Any) -> None:
    with pytest.raises(AIActError) as caught:
        ai_act.clean_answers({"prohibited_manipulation": "no", field: value})
    assert caught.value.field == field and "Choose one of the answers" in caught.value.message
    with pytest.raises(AIActError):
        ai_act.classify({field: value}, P)
    # next_question treats it as unanswered (asks it again when it is relevant).
    assert ai_act.next_question({field: value}).id == "prohibited_manipulation"


def test_classify_incomplete_answers_gives_the_result_so_far() -> None:
    outcome = ai_act.classify({"prohibited_manipulation": "no"}, P)
    assert not outcome.complete and outcome.result == AIRiskClass.MINIMAL
    assert outcome.rationale[-1].startswith("Not complete for the provider role")
    answers, _ = run(P, annex_iii_area="justice", profiling="yes")
    partial = {k: v for k, v in answers.items() if k != ai_act.GPAI}
    outcome = ai_act.classify(partial, P)
    assert outcome.result == AIRiskClass.HIGH and not outcome.complete
    assert ai_act.QUESTION_BY_ID[ai_act.GPAI].text in outcome.rationale[-1]
    # Answers made for the provider are incomplete for a deployer.
    assert not ai_act.classify(answers, D).complete
    assert ai_act.classify(answers, P).complete


# --- the obligation map against the shipped library -----------------------------------------------------

def test_every_mapped_ref_id_exists_in_the_library_as_an_assessable_control() -> None:
    leaves = library_leaves()
    for tag, refs in ai_act.OBLIGATIONS.items():
        assert refs and len(refs) == len(set(refs)), tag
        missing = [ref for ref in refs if ref not in leaves]
        assert not missing, f"{tag}: {missing} are no assessable control of {LIBRARY_FILE.name}"
    assert set(ai_act.OBLIGATION_LABELS) == set(ai_act.OBLIGATIONS)
    assert ai_act.applicable_refs(["no_such_tag"]) == set()


def test_the_map_covers_each_articles_leaves_as_the_act_assigns_them() -> None:
    leaves = library_leaves()

    def under(*parents: str) -> set[str]:
        return {ref for ref, parent in leaves.items() if parent in parents}

    m = {tag: set(refs) for tag, refs in ai_act.OBLIGATIONS.items()}
    assert m["prohibited_practices"] == under("Article 5") == set(ARTICLE_5)
    assert m["high_risk_provider"] == under(*(f"Article {n}" for n in (*range(9, 18), 72, 73)), "Annex IV")
    assert m["high_risk_deployer"] | m["public_authority_registration"] == under("Article 26")
    assert m["public_authority_registration"] == {"Article 26(8)"}
    assert m["fundamental_rights_impact_assessment"] == under("Article 27")
    assert set().union(*(m[t] for t in (*ai_act.TRANSPARENCY, "transparency_information"))) == under("Article 50")
    assert m["gpai_provider"] == under("Article 53")
    assert m["gpai_open_source_provider"] == {"Article 53(1)(c)", "Article 53(1)(d)", "Article 53(3)"}
    assert m["gpai_authorised_representative"] == under("Article 54")
    assert m["gpai_systemic_risk"] == under("Article 55")
    # Every assessable control of the library is reachable through some obligation.
    assert set().union(*m.values()) == set(leaves)


# --- persistence ------------------------------------------------------------------------------------------

def _system(session: Any, role: AIActRole = P, name: str | None = None) -> AISystem:
    system = AISystem(name=name or f"System {uuid.uuid4().hex[:8]}", purpose="Screens job applications",
                      eu_role=role)
    session.add(system)
    session.flush()
    return system


def _controls(session: Any, system: AISystem, origin: str = "classification") -> dict[str, str | None]:
    rows = session.execute(select(Control.ref_id, AISystemControl.reason)
                           .join(Control, Control.id == AISystemControl.control_id)
                           .where(AISystemControl.system_id == system.id, AISystemControl.origin == origin)).all()
    return {row.ref_id: row.reason for row in rows}


def _entries(session: Any, system: AISystem) -> list[AuditLog]:
    return list(session.scalars(select(AuditLog).where(AuditLog.action == "ai_system.classify",
                                                       AuditLog.object_id == str(system.id))
                                .order_by(AuditLog.seq)))


def _eu_framework(session: Any) -> Framework | None:
    return session.scalars(select(Framework).where(Framework.title == "EU AI Act",
                                                   Framework.version == "2024/1689")).first()


HIGH_EMPLOYMENT = {"annex_iii_area": "employment", "profiling": "yes"}


def test_save_classification_imports_the_library_and_makes_the_controls_applicable(db_session, make_user) -> None:
    session = db_session()
    user = make_user("engineer")
    system = _system(session)
    assert _eu_framework(session) is None  # imported on first use
    answers, _ = run(None, **HIGH_EMPLOYMENT, interacts_with_people="yes")
    with context.acting_as(context.ActionContext(actor_id=user.id, actor_name=user.email)):
        saved = ai_act.save_classification(session, system.id, {**answers, "csrf_token": "x"})
    assert _eu_framework(session) is not None
    assert saved.version == 1 and saved.questionnaire_version == ai_act.QUESTIONNAIRE_VERSION
    assert saved.answers == answers and saved.role == P and saved.result == AIRiskClass.HIGH
    expected = ai_act.classify(answers, P)
    assert saved.obligations == expected.obligations == [BASE, "high_risk_provider", "transparency_interaction",
                                                         "transparency_information"]
    assert saved.rationale == expected.rationale and saved.created_by_id == user.id
    session.refresh(system)
    assert system.risk_class == AIRiskClass.HIGH and system.classified_at is not None
    controls = _controls(session, system)
    assert set(controls) == ai_act.applicable_refs(saved.obligations)
    assert controls["Article 9(1)"] == "high_risk_provider" and controls["Article 5(1)(c)"] == BASE
    assert controls["Article 50(1)"] == "transparency_interaction" and "Article 26(1)" not in controls
    [entry] = _entries(session, system)
    assert entry.actor_id == user.id and entry.object_type == "ai_system"
    assert entry.details["version"] == 1 and entry.details["result"] == "high" and entry.details["role"] == "provider"
    assert entry.details["trigger"] == "questionnaire" and entry.details["answers"] == answers
    assert entry.details["obligations"] == saved.obligations
    assert set(entry.details["controls_added"]) == set(controls) and entry.details["controls_removed"] == []
    assert entry.details["before"] == {"risk_class": None} and entry.details["after"] == {"risk_class": "high"}


def test_a_second_classification_is_version_two_and_replaces_only_classification_controls(db_session) -> None:
    session = db_session()
    libraries.load_library(session, "eu-ai-act")
    system = _system(session)
    manual = session.scalars(select(Control).where(Control.ref_id == "Article 15(1)")).one()
    session.add(AISystemControl(system_id=system.id, control_id=manual.id, origin="manual", reason="by hand"))
    session.flush()
    first = ai_act.save_classification(session, system.id, run(None, **HIGH_EMPLOYMENT)[0])
    second = ai_act.save_classification(session, system.id, run(None, generates_synthetic_content="yes")[0])
    assert (first.version, second.version) == (1, 2)
    assert second.result == AIRiskClass.LIMITED
    assert set(_controls(session, system)) == {*ARTICLE_5, "Article 50(2)", "Article 50(5)"}
    assert _controls(session, system, "manual") == {"Article 15(1)": "by hand"}
    assert [c.version for c in ai_act.history(session, system.id)] == [1, 2]
    assert ai_act.latest(session, system.id).id == second.id
    session.refresh(system)
    assert system.risk_class == AIRiskClass.LIMITED
    entries = _entries(session, system)
    assert [e.details["version"] for e in entries] == [1, 2]
    assert "Article 9(1)" in entries[1].details["controls_removed"]
    assert entries[1].details["controls_added"] == ["Article 50(2)", "Article 50(5)"]
    assert entries[1].details["before"] == {"risk_class": "high"}
    # The first version is kept as it was.
    session.refresh(first)
    assert first.result == AIRiskClass.HIGH and "high_risk_provider" in first.obligations


def test_save_classification_refuses_incomplete_or_bad_answers(db_session) -> None:
    session = db_session()
    system = _system(session)
    with pytest.raises(AIActError) as caught:
        ai_act.save_classification(session, system.id, {"prohibited_manipulation": "no"})
    assert caught.value.field is None and "not complete" in caught.value.message
    assert ai_act.QUESTION_BY_ID["prohibited_vulnerabilities"].text in caught.value.message
    with pytest.raises(AIActError) as caught:
        ai_act.save_classification(session, system.id, {**run(None)[0], "annex_iii_area": "moon"})
    assert caught.value.field == "annex_iii_area"
    with pytest.raises(AIActError) as caught:
        ai_act.save_classification(session, uuid.uuid4(), run(None)[0])
    assert caught.value.field is None
    assert ai_act.history(session, system.id) == [] and ai_act.latest(session, system.id) is None
    assert session.scalars(select(AIClassification).where(AIClassification.system_id == system.id)).all() == []
    assert _entries(session, system) == []


def test_a_prohibited_system_gets_only_the_article_5_controls(db_session) -> None:
    session = db_session()
    system = _system(session, D)
    saved = ai_act.save_classification(session, system.id, {"prohibited_social_scoring": "no",
                                                            "prohibited_manipulation": "no",
                                                            "prohibited_vulnerabilities": "yes"})
    assert saved.result == AIRiskClass.PROHIBITED and saved.answers == {"prohibited_manipulation": "no",
                                                                        "prohibited_vulnerabilities": "yes"}
    assert set(_controls(session, system)) == set(ARTICLE_5)


def test_reclassify_after_a_role_change_makes_a_new_version_with_the_new_roles_obligations(db_session) -> None:
    session = db_session()
    system = _system(session, P)
    assert ai_act.reclassify(session, system.id) is None  # nothing to re-run yet
    answers, _ = run(None, annex_iii_area="essential_services", profiling="yes", deployer_credit_insurance="yes")
    first = ai_act.save_classification(session, system.id, answers)
    assert ai_act.reclassify(session, system.id) is None  # same role, nothing changed
    assert [c.version for c in ai_act.history(session, system.id)] == [1]

    system.eu_role = D
    session.flush()
    second = ai_act.reclassify(session, system.id)
    assert second is not None and second.version == 2 and second.role == D
    assert second.result == AIRiskClass.HIGH and second.answers == first.answers
    assert second.obligations == [BASE, "high_risk_deployer", "fundamental_rights_impact_assessment"]
    controls = _controls(session, system)
    assert "Article 9(1)" not in controls and "Annex IV(1)" not in controls
    assert controls["Article 26(2)"] == "high_risk_deployer"
    assert controls["Article 27(1)"] == "fundamental_rights_impact_assessment"
    entry = _entries(session, system)[-1]
    assert entry.details["trigger"] == "reclassify" and entry.details["role"] == "deployer"
    assert "Article 9(1)" in entry.details["controls_removed"] and "Article 26(1)" in entry.details["controls_added"]

    # Importer -> distributor: the obligations are the same, but the role (and its reasons) changed.
    system.eu_role = IMP
    session.flush()
    third = ai_act.reclassify(session, system.id)
    system.eu_role = DIS
    session.flush()
    fourth = ai_act.reclassify(session, system.id)
    assert third is not None and fourth is not None and third.obligations == fourth.obligations == [BASE]
    assert any("Article 24" in r for r in fourth.rationale)
    assert set(_controls(session, system)) == set(ARTICLE_5)
    assert [c.version for c in ai_act.history(session, system.id)] == [1, 2, 3, 4]


def test_reclassify_for_a_role_whose_questions_were_never_answered(db_session) -> None:
    session = db_session()
    system = _system(session, P)
    answers, _ = run(P, **HIGH_EMPLOYMENT)  # answered for the provider only
    ai_act.save_classification(session, system.id, answers)
    system.eu_role = D
    session.flush()
    second = ai_act.reclassify(session, system.id)
    assert second is not None and second.result == AIRiskClass.HIGH
    assert second.obligations == [BASE, "high_risk_deployer"]
    assert second.rationale[-1].startswith("Not complete for the deployer role")
    assert ai_act.QUESTION_BY_ID[ai_act.DEPLOYER_ORG].text in second.rationale[-1]
    assert _entries(session, system)[-1].details["complete"] is False
    # Answering the rest saves a complete version.
    third = ai_act.save_classification(session, system.id, {**second.answers, ai_act.DEPLOYER_ORG: "public_authority",
                                                            ai_act.EMOTION_BIOMETRIC: "no", ai_act.DEEP_FAKE: "no"})
    assert third.version == 3 and "public_authority_registration" in third.obligations
    assert "Article 26(8)" in _controls(session, system)
