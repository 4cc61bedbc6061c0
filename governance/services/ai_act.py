"""The EU AI Act classification questionnaire (Regulation (EU) 2024/1689) and what it decides.

A guided questionnaire (docs/ai-act.md): one plain yes/no or single-choice question per step, each
with a short help text and its legal reference, asked only when earlier answers make it relevant.
Order: the prohibited practices of Article 5 (the first "yes" ends the questionnaire: prohibited),
high risk through Annex I products (Article 6(1)) or Annex III areas (Article 6(2)) with the
Article 6(3) exceptions, the deployer's questions for Article 26(8) and Article 27, the transparency
obligations of Article 50 and general-purpose AI models (Articles 53-55).

The answers are role-independent data; the organisation's role (provider, deployer, importer,
distributor) decides which questions matter and which obligations follow. Passing role=None to the
question functions asks every role's questions, so the answers serve any role (a role change can
then be re-run without asking again). Result precedence: prohibited > high > limited (the
organisation has an Article 50 obligation) > minimal.

Obligations are tags (OBLIGATIONS) that name EU AI Act library controls (ref_ids of
governance/libraries/eu-ai-act-2024-1689.json); saving a classification makes exactly those
controls applicable to the system (ai_system_controls rows of origin 'classification').

This is a guide to the Regulation, not legal advice. Functions flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance import context
from governance.models.ai import AIClassification, AISystem, AISystemControl
from governance.models.enums import AIActRole, AIRiskClass, ControlStatus
from governance.models.frameworks import Control, Framework
from governance.services import audit, framework_io, libraries

QUESTIONNAIRE_VERSION = "2026.1"
EU_LIBRARY = "eu-ai-act"
ORIGIN = "classification"

YES, NO = "yes", "no"
YES_NO: tuple[tuple[str, str], ...] = ((YES, "Yes"), (NO, "No"))
NONE_OF_THESE = "none"

QuestionKind = Literal["yes_no", "choice"]


class AIActError(ValueError):
    """An answer or a request the questionnaire refuses; `field` is the question id it is about
    (None: about the whole questionnaire, e.g. it is not complete)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    help: str
    kind: QuestionKind
    options: tuple[tuple[str, str], ...]
    legal_ref: str


@dataclass(frozen=True)
class Classification:
    result: AIRiskClass
    rationale: list[str]
    obligations: list[str]
    complete: bool


# --- the questions ------------------------------------------------------------------------------------

# Article 5(1)(a)-(g): id -> (point, what the practice is, for the rationale).
PROHIBITIONS: dict[str, tuple[str, str]] = {
    "prohibited_manipulation": (
        "Article 5(1)(a)", "uses subliminal, manipulative or deceptive techniques that distort behaviour "
                           "and can cause significant harm"),
    "prohibited_vulnerabilities": (
        "Article 5(1)(b)", "exploits vulnerabilities due to age, disability or a social or economic situation"),
    "prohibited_social_scoring": (
        "Article 5(1)(c)", "scores people by their social behaviour or personal characteristics (social scoring)"),
    "prohibited_crime_prediction": (
        "Article 5(1)(d)", "predicts criminal offences based solely on profiling or personality traits"),
    "prohibited_face_scraping": (
        "Article 5(1)(e)", "builds facial recognition databases by untargeted scraping of facial images"),
    "prohibited_emotion_workplace": (
        "Article 5(1)(f)", "infers emotions at work or in education for reasons other than medical or safety ones"),
    "prohibited_biometric_categorisation": (
        "Article 5(1)(g)", "infers sensitive characteristics such as race, political opinions, beliefs or "
                           "sexual orientation from biometric data"),
}
RBI = "realtime_biometric_identification"
RBI_AUTHORISED = "realtime_biometric_authorised"
ANNEX_I = "annex_i_product"
ANNEX_I_THIRD_PARTY = "annex_i_third_party"
ANNEX_III = "annex_iii_area"
PROFILING = "profiling"
EXCEPTION = "annex_iii_exception"
DEPLOYER_ORG = "deployer_organisation"
CREDIT_INSURANCE = "deployer_credit_insurance"
INTERACTS = "interacts_with_people"
SYNTHETIC = "generates_synthetic_content"
EMOTION_BIOMETRIC = "emotion_or_biometric_categorisation"
DEEP_FAKE = "deep_fake_or_public_text"
GPAI = "gpai_model"
GPAI_SYSTEMIC = "gpai_systemic_risk"
GPAI_OPEN_SOURCE = "gpai_open_source"
GPAI_OUTSIDE_EU = "gpai_outside_eu"

# Annex III points 1-8: value -> (point, label shown as the option).
ANNEX_III_AREAS: dict[str, tuple[str, str]] = {
    "biometrics": ("1", "Biometrics: remote biometric identification, biometric categorisation by sensitive "
                        "attributes, emotion recognition"),
    "critical_infrastructure": ("2", "Critical infrastructure: safety components in the management and operation "
                                     "of digital infrastructure, road traffic, or the supply of water, gas, "
                                     "heating or electricity"),
    "education": ("3", "Education and vocational training: admission, assessing learning outcomes, deciding the "
                       "level of education, monitoring behaviour during tests"),
    "employment": ("4", "Employment and workers' management: recruitment and selection, decisions on working "
                        "conditions, promotion or termination, allocating tasks, monitoring performance"),
    "essential_services": ("5", "Essential private and public services: eligibility for public benefits, "
                                "creditworthiness, life and health insurance pricing, emergency call triage"),
    "law_enforcement": ("6", "Law enforcement: risk of becoming a victim, polygraphs, reliability of evidence, "
                             "risk of offending, profiling in criminal investigations"),
    "migration": ("7", "Migration, asylum and border control: polygraphs, risk assessments, examining "
                       "applications, detecting or identifying people"),
    "justice": ("8", "Administration of justice and democratic processes: assisting judicial authorities, "
                     "influencing elections or referendums"),
}
ORGANISATIONS: tuple[tuple[str, str], ...] = (
    ("public_authority", "A public authority, or an EU institution, body, office or agency"),
    ("public_law_body", "Another body governed by public law"),
    ("public_services", "A private organisation providing public services"),
    ("private", "A private organisation that provides no public services"),
)
FRIA_ORGANISATION_NAMES = {"public_authority": "a public authority", "public_law_body": "a body governed by public law",
                           "public_services": "a private organisation providing public services"}
FRIA_ORGANISATIONS = frozenset(FRIA_ORGANISATION_NAMES)


def _yes_no(qid: str, text: str, help_text: str, legal_ref: str) -> Question:
    return Question(qid, text, help_text, "yes_no", YES_NO, legal_ref)


QUESTIONS: tuple[Question, ...] = (
    _yes_no("prohibited_manipulation",
            "Does the system use subliminal, manipulative or deceptive techniques that can change how people "
            "behave and cause them significant harm?",
            "Techniques beyond a person's awareness, or purposely manipulative or deceptive ones, that materially "
            "impair people's ability to make an informed decision, so that they take a decision they would "
            "otherwise have avoided, causing or likely to cause significant harm.",
            "Article 5(1)(a)"),
    _yes_no("prohibited_vulnerabilities",
            "Does the system exploit people's vulnerabilities due to their age, a disability or their social or "
            "economic situation, in a way that can change how they behave and cause them significant harm?",
            "For example targeting children, people with a disability or people in extreme poverty so that their "
            "behaviour is materially distorted in a way that causes or is likely to cause significant harm.",
            "Article 5(1)(b)"),
    _yes_no("prohibited_social_scoring",
            "Does the system score or rank people by their social behaviour or personal characteristics, leading "
            "to unfavourable treatment in unrelated contexts or treatment out of proportion to that behaviour?",
            "Social scoring: evaluating or classifying people over time by their social behaviour or known, "
            "inferred or predicted personal or personality characteristics, where the score leads to detrimental "
            "treatment in contexts unrelated to where the data came from, or to unjustified or disproportionate "
            "treatment.",
            "Article 5(1)(c)"),
    _yes_no("prohibited_crime_prediction",
            "Does the system predict whether a person will commit a criminal offence based only on profiling "
            "them or on their personality traits?",
            "Allowed: systems that support a human assessment of a person's involvement in a criminal activity "
            "that is already based on objective and verifiable facts directly linked to that activity.",
            "Article 5(1)(d)"),
    _yes_no("prohibited_face_scraping",
            "Does the system create or expand facial recognition databases by untargeted scraping of facial "
            "images from the internet or CCTV footage?",
            "Untargeted: collecting facial images in bulk, without focusing on specific people.",
            "Article 5(1)(e)"),
    _yes_no("prohibited_emotion_workplace",
            "Does the system infer the emotions of people at work or in education, for reasons other than medical "
            "or safety reasons?",
            "Emotion recognition in the workplace and in education institutions is prohibited; systems put in "
            "place for medical or safety reasons (for example detecting a pilot's fatigue) are allowed.",
            "Article 5(1)(f)"),
    _yes_no("prohibited_biometric_categorisation",
            "Does the system sort individual people by their biometric data to deduce or infer their race, "
            "political opinions, trade union membership, religious or philosophical beliefs, sex life or sexual "
            "orientation?",
            "Allowed: labelling or filtering lawfully acquired biometric datasets (such as images), and "
            "categorising biometric data in the area of law enforcement.",
            "Article 5(1)(g)"),
    _yes_no(RBI,
            "Is the system used for real-time remote biometric identification of people in publicly accessible "
            "spaces for the purpose of law enforcement?",
            "Real-time: capture, comparison and identification happen without significant delay. Identification "
            "after the event (post remote biometric identification) and biometric verification (confirming that "
            "a person is who they claim to be) are other uses.",
            "Article 5(1)(h)"),
    _yes_no(RBI_AUTHORISED,
            "Is every such use authorised by national law and strictly limited to one of these objectives: "
            "searching for specific victims of abduction, trafficking in human beings or sexual exploitation, or "
            "for missing persons; preventing a specific, substantial and imminent threat to life or physical "
            "safety, or a genuine threat of a terrorist attack; locating or identifying a person suspected of a "
            "serious criminal offence listed in Annex II?",
            "Annex II offences are those punishable by a custodial sentence of at least four years. Each use also "
            "needs prior authorisation by a judicial or independent administrative authority, a fundamental "
            "rights impact assessment and registration (Article 5(2)-(5)).",
            "Article 5(1)(h)(i)-(iii)"),
    _yes_no(ANNEX_I,
            "Is the system a product, or a safety component of a product, covered by the EU product legislation "
            "listed in Annex I?",
            "Annex I lists the Union harmonisation legislation: for example machinery, toys, recreational craft, "
            "lifts, equipment for explosive atmospheres, radio equipment, pressure equipment, cableways, personal "
            "protective equipment, gas appliances, medical devices and in vitro diagnostic medical devices "
            "(Section A), and civil aviation, motor vehicles, agricultural vehicles, marine equipment and rail "
            "(Section B).",
            "Article 6(1)(a), Annex I"),
    _yes_no(ANNEX_I_THIRD_PARTY,
            "Does that legislation require a third-party conformity assessment of the product (by a notified "
            "body) before it is placed on the market or put into service?",
            "Only Annex I products that need a third-party conformity assessment make the system high-risk under "
            "Article 6(1). Self-assessed products are then checked against Annex III like any other system.",
            "Article 6(1)(b)"),
    Question(ANNEX_III,
             "Is the system intended to be used in one of these areas?",
             "Choose the area of the system's intended purpose, only if its use is one of the uses Annex III lists "
             "for that area (read Annex III). Biometric uses count only as far as Union or national law permits "
             "them.",
             "choice",
             (*((value, label) for value, (_, label) in ANNEX_III_AREAS.items()),
              (NONE_OF_THESE, "None of these")),
             "Article 6(2), Annex III"),
    _yes_no(PROFILING,
            "Does the system profile people, that is, evaluate personal aspects such as their work performance, "
            "economic situation, health, preferences, interests, reliability, behaviour, location or movements "
            "by automated processing of personal data?",
            "Profiling as defined in Article 4(4) of Regulation (EU) 2016/679 (GDPR). A system listed in Annex III "
            "that profiles people is always high-risk.",
            "Article 6(3), last subparagraph"),
    _yes_no(EXCEPTION,
            "Does the system only perform one of these tasks: a narrow procedural task; improving the result of "
            "an activity a person has already completed; detecting decision-making patterns or deviations from "
            "earlier patterns, without replacing or influencing the completed human assessment without proper "
            "human review; a preparatory task to an assessment for one of the Annex III uses?",
            "Answer yes only if, because of this, the system poses no significant risk of harm to health, safety "
            "or fundamental rights and does not materially influence the outcome of decisions. The provider must "
            "then document this assessment (Article 6(4)) and register the system (Article 49(2)).",
            "Article 6(3)(a)-(d)"),
    Question(DEPLOYER_ORG,
             "Which describes your organisation?",
             "Public authorities and EU institutions must register their use of a high-risk system (Article 26(8), "
             "Article 49). Bodies governed by public law and private organisations providing public services (for "
             "example in education, healthcare, social services or housing) must assess the impact on fundamental "
             "rights before using an Annex III system (Article 27).",
             "choice", ORGANISATIONS, "Article 26(8), Article 27(1)"),
    _yes_no(CREDIT_INSURANCE,
            "Do you use the system to assess the creditworthiness of people or set their credit score, or to "
            "assess risks and set prices for their life or health insurance?",
            "These uses (Annex III point 5(b) and (c)) need a fundamental rights impact assessment before first "
            "use, whatever the organisation. Systems used only to detect financial fraud are not in point 5(b).",
            "Article 27(1), Annex III 5(b)-(c)"),
    _yes_no(INTERACTS,
            "Is the system designed to interact directly with people, for example as a chatbot or a voice "
            "assistant?",
            "Answer no if it is obvious to a reasonably well-informed, observant person that they are dealing "
            "with an AI system, or if the system is authorised by law to detect, prevent, investigate or "
            "prosecute criminal offences (unless the public can use it to report an offence).",
            "Article 50(1)"),
    _yes_no(SYNTHETIC,
            "Does the system generate synthetic audio, images, video or text?",
            "Including through a general-purpose AI model. Answer no if it only assists standard editing, does "
            "not substantially alter the input or its meaning, or is authorised by law to detect, prevent, "
            "investigate or prosecute criminal offences.",
            "Article 50(2)"),
    _yes_no(EMOTION_BIOMETRIC,
            "Does the system recognise people's emotions, or sort people into categories from their biometric "
            "data?",
            "Answer no for systems permitted by law to detect, prevent or investigate criminal offences, used "
            "with safeguards for third parties' rights.",
            "Article 50(3)"),
    _yes_no(DEEP_FAKE,
            "Do you use the system to create deep fakes, or to generate or change text published to inform the "
            "public on matters of public interest?",
            "A deep fake is AI-generated or manipulated image, audio or video content that resembles existing "
            "persons, objects, places or events and would falsely appear authentic. Answer no for text that a "
            "person reviews editorially and that a person or organisation holds editorial responsibility for.",
            "Article 50(4)"),
    _yes_no(GPAI,
            "Does the system include a general-purpose AI model that your organisation provides, that is, "
            "develops (or has developed) and places on the market under its own name?",
            "A general-purpose AI model can competently perform a wide range of distinct tasks, such as a large "
            "language model. Answer no if you only use a model another organisation provides (for example through "
            "its API). Substantially modifying another provider's model can make you the provider of the result.",
            "Article 3(63), Article 53"),
    _yes_no(GPAI_SYSTEMIC,
            "Does the model have systemic risk, that is, high-impact capabilities (presumed when training used "
            "more than 10^25 floating-point operations) or a designation by the Commission?",
            "Providers of such models must notify the Commission (Article 52) and meet Article 55 in addition to "
            "Article 53.",
            "Article 51, Article 55"),
    _yes_no(GPAI_OPEN_SOURCE,
            "Is the model released under a free and open-source licence, with its weights, architecture and usage "
            "information made public?",
            "Such models are exempt from the technical documentation duties of Article 53(1)(a) and (b) and from "
            "appointing an authorised representative (Article 54(6)), unless they have systemic risk.",
            "Article 53(2), Article 54(6)"),
    _yes_no(GPAI_OUTSIDE_EU,
            "Is your organisation established outside the European Union?",
            "Providers established in third countries must appoint an authorised representative in the Union "
            "before placing the model on the EU market.",
            "Article 54(1)"),
)
QUESTION_BY_ID: dict[str, Question] = {q.id: q for q in QUESTIONS}


# --- what the answers mean -----------------------------------------------------------------------------

def _yes(a: Mapping[str, str], qid: str) -> bool:
    return a.get(qid) == YES


def _prohibited(a: Mapping[str, str]) -> bool:
    return any(_yes(a, qid) for qid in PROHIBITIONS) or (_yes(a, RBI) and a.get(RBI_AUTHORISED) == NO)


def _rbi_high(a: Mapping[str, str]) -> bool:
    return _yes(a, RBI) and _yes(a, RBI_AUTHORISED)


def _annex_i_high(a: Mapping[str, str]) -> bool:
    return _yes(a, ANNEX_I) and _yes(a, ANNEX_I_THIRD_PARTY)


def _listed(a: Mapping[str, str]) -> bool:
    return a.get(ANNEX_III) in ANNEX_III_AREAS


def _annex_iii_high(a: Mapping[str, str]) -> bool:
    """Annex III makes it high-risk: the 5(1)(h) exception (point 1(a)), or a listed area without the
    Article 6(3) exception (the exception is moot for a system already high-risk under Annex I)."""
    return _rbi_high(a) or (_listed(a) and (_annex_i_high(a) or _yes(a, PROFILING) or a.get(EXCEPTION) == NO))


def _high(a: Mapping[str, str]) -> bool:
    return _annex_i_high(a) or _annex_iii_high(a)


def _asks_deployer(role: AIActRole | None) -> bool:
    return role in (None, AIActRole.DEPLOYER)


def _asks_provider(role: AIActRole | None) -> bool:
    return role in (None, AIActRole.PROVIDER)


def _fria(a: Mapping[str, str], role: AIActRole) -> bool:
    """Article 27(1): deployers of Annex III systems (not point 2) that are public bodies or provide
    public services, or use them for credit scoring or life/health insurance pricing; Article 5(2)
    for the authorised uses of real-time remote biometric identification."""
    if role != AIActRole.DEPLOYER or not _annex_iii_high(a) or a.get(ANNEX_III) == "critical_infrastructure":
        return False
    return _rbi_high(a) or a.get(DEPLOYER_ORG) in FRIA_ORGANISATIONS or _yes(a, CREDIT_INSURANCE)


Relevance = Callable[[Mapping[str, str], AIActRole | None], bool]


def _open(a: Mapping[str, str], role: AIActRole | None) -> bool:
    return not _prohibited(a)


_RELEVANT: dict[str, Relevance] = {
    **dict.fromkeys(PROHIBITIONS, _open),
    RBI: _open,
    RBI_AUTHORISED: lambda a, r: _yes(a, RBI),
    ANNEX_I: lambda a, r: not _prohibited(a) and not _rbi_high(a),
    ANNEX_I_THIRD_PARTY: lambda a, r: _yes(a, ANNEX_I),
    # Already high-risk through Annex I: the area still decides a deployer's Article 27 duty.
    ANNEX_III: lambda a, r: not _prohibited(a) and not _rbi_high(a) and (not _annex_i_high(a) or _asks_deployer(r)),
    PROFILING: lambda a, r: _listed(a) and not _annex_i_high(a),
    EXCEPTION: lambda a, r: a.get(PROFILING) == NO,
    DEPLOYER_ORG: lambda a, r: _asks_deployer(r) and not _prohibited(a) and _high(a),
    CREDIT_INSURANCE: lambda a, r: (_asks_deployer(r) and _annex_iii_high(a)
                                    and a.get(ANNEX_III) == "essential_services" and a.get(DEPLOYER_ORG) == "private"),
    INTERACTS: lambda a, r: not _prohibited(a) and _asks_provider(r),
    SYNTHETIC: lambda a, r: not _prohibited(a) and _asks_provider(r),
    EMOTION_BIOMETRIC: lambda a, r: not _prohibited(a) and _asks_deployer(r),
    DEEP_FAKE: lambda a, r: not _prohibited(a) and _asks_deployer(r),
    GPAI: _open,
    GPAI_SYSTEMIC: lambda a, r: _yes(a, GPAI),
    GPAI_OPEN_SOURCE: lambda a, r: a.get(GPAI_SYSTEMIC) == NO,
    GPAI_OUTSIDE_EU: lambda a, r: _yes(a, GPAI_SYSTEMIC) or a.get(GPAI_OPEN_SOURCE) == NO,
}
assert set(_RELEVANT) == set(QUESTION_BY_ID), "every question needs a relevance rule"


def _role(role: AIActRole | str | None) -> AIActRole | None:
    return None if role is None else AIActRole(role)


def _valid(question: Question, value: Any) -> bool:
    return isinstance(value, str) and value in {v for v, _ in question.options}


def _walk(answers: Mapping[str, Any], role: AIActRole | None) -> tuple[dict[str, str], list[Question]]:
    """In questionnaire order: the valid answers to the relevant questions, and the relevant questions
    still unanswered. Relevance depends only on earlier answers; an unanswered question counts as not
    answered "yes" (later answers are kept, so going back and changing one answer keeps the rest)."""
    seen: dict[str, str] = {}
    pending: list[Question] = []
    for question in QUESTIONS:
        if not _RELEVANT[question.id](seen, role):
            continue
        value = answers.get(question.id)
        if isinstance(value, str) and _valid(question, value):
            seen[question.id] = value
        else:
            pending.append(question)
    return seen, pending


def next_question(answers: Mapping[str, Any], *, role: AIActRole | str | None = None) -> Question | None:
    """The first relevant question without a valid answer; None when the questionnaire is complete.
    role=None asks every role's questions."""
    _, pending = _walk(answers, _role(role))
    return pending[0] if pending else None


def relevant_questions(answers: Mapping[str, Any], *, role: AIActRole | str | None = None) -> list[Question]:
    """The path so far, in questionnaire order: the relevant questions answered, and the next one."""
    seen, pending = _walk(answers, _role(role))
    upcoming = pending[0].id if pending else None
    return [q for q in QUESTIONS if q.id in seen or q.id == upcoming]


def clean_answers(answers: Mapping[str, Any], *, role: AIActRole | str | None = None) -> dict[str, str]:
    """The answers to the relevant questions, in questionnaire order; answers to questions the path no
    longer reaches (and keys that are no question) are dropped. A value a question does not offer is
    refused: AIActError(field=question id)."""
    for qid, value in answers.items():
        question = QUESTION_BY_ID.get(qid)
        if question is not None and not _valid(question, value):
            allowed = ", ".join(f'"{v}"' for v, _ in question.options)
            raise AIActError(qid, f"Choose one of the answers offered ({allowed}).")
    seen, _ = _walk(answers, _role(role))
    return seen


# --- obligations: tags -> EU AI Act library controls -----------------------------------------------------

def _points(article: str, *points: int | str) -> tuple[str, ...]:
    return tuple(f"{article}({p})" for p in points)


OBLIGATIONS: dict[str, tuple[str, ...]] = {
    "prohibited_practices": _points("Article 5(1)", *"abcdefgh"),
    "high_risk_provider": (
        *_points("Article 9", 1, 2, 3, 4, 5, 6, 8, 9),
        *_points("Article 10", 1, 2, 3, 4, 5, 6),
        *_points("Article 11", 1, 2),
        *_points("Article 12", 1, 2, 3),
        *_points("Article 13", 1, 2, 3),
        *_points("Article 14", 1, 2, 3, 4, 5),
        *_points("Article 15", 1, 3, 4, 5),
        *_points("Article 16", *"abcdefghijkl"),
        *_points("Article 17", 1, 2),
        *_points("Article 72", 1, 2, 3),
        *_points("Article 73", 1, 2, 3, 4, 5, 6),
        *_points("Annex IV", *range(1, 10)),
    ),
    "high_risk_deployer": _points("Article 26", 1, 2, 4, 5, 6, 7, 9, 11, 12),
    "public_authority_registration": ("Article 26(8)",),
    "fundamental_rights_impact_assessment": _points("Article 27", 1, 2, 3, 4),
    "transparency_interaction": ("Article 50(1)",),
    "transparency_synthetic_content": ("Article 50(2)",),
    "transparency_emotion_biometric": ("Article 50(3)",),
    "transparency_deep_fake": ("Article 50(4)",),
    "transparency_information": ("Article 50(5)",),
    "gpai_provider": (*_points("Article 53(1)", *"abcd"), "Article 53(3)"),
    "gpai_open_source_provider": ("Article 53(1)(c)", "Article 53(1)(d)", "Article 53(3)"),
    "gpai_authorised_representative": _points("Article 54", 1, 3),
    "gpai_systemic_risk": _points("Article 55(1)", *"abcd"),
}
OBLIGATION_LABELS: dict[str, str] = {
    "prohibited_practices": "Prohibited practices (Article 5)",
    "high_risk_provider": "High-risk system provider (Articles 9-17, 72, 73, Annex IV)",
    "high_risk_deployer": "High-risk system deployer (Article 26)",
    "public_authority_registration": "Public-authority deployer registration (Article 26(8))",
    "fundamental_rights_impact_assessment": "Fundamental rights impact assessment (Article 27)",
    "transparency_interaction": "Tell people they interact with AI (Article 50(1))",
    "transparency_synthetic_content": "Mark synthetic content (Article 50(2))",
    "transparency_emotion_biometric": "Inform people exposed to emotion recognition (Article 50(3))",
    "transparency_deep_fake": "Disclose deep fakes and AI-generated text (Article 50(4))",
    "transparency_information": "Clear information at first interaction (Article 50(5))",
    "gpai_provider": "General-purpose AI model provider (Article 53)",
    "gpai_open_source_provider": "Open-source general-purpose AI model provider (Article 53(1)(c)-(d), 53(3))",
    "gpai_authorised_representative": "Authorised representative in the Union (Article 54)",
    "gpai_systemic_risk": "General-purpose AI model with systemic risk (Article 55)",
}
TRANSPARENCY = ("transparency_interaction", "transparency_synthetic_content", "transparency_emotion_biometric",
                "transparency_deep_fake")


def applicable_refs(obligations: Iterable[str]) -> set[str]:
    """The EU AI Act control ref_ids the obligation tags make applicable (unknown tags add nothing)."""
    return {ref for tag in obligations for ref in OBLIGATIONS.get(tag, ())}


# --- classification --------------------------------------------------------------------------------------

ROLE_NAMES = {AIActRole.PROVIDER: "provider", AIActRole.DEPLOYER: "deployer",
              AIActRole.IMPORTER: "importer", AIActRole.DISTRIBUTOR: "distributor"}


def _prohibited_reasons(a: Mapping[str, str]) -> list[str]:
    must_not = "a prohibited practice: the system must not be placed on the market, put into service or used in the EU."
    for qid, (ref, what) in PROHIBITIONS.items():
        if _yes(a, qid):
            return [f"{ref}: the system {what}, {must_not}"]
    return [f"Article 5(1)(h): real-time remote biometric identification in publicly accessible spaces for law "
            f"enforcement, not limited to the objectives of Article 5(1)(h)(i)-(iii), is {must_not}"]


def _high_reasons(a: Mapping[str, str], role: AIActRole) -> list[str]:
    reasons: list[str] = []
    provider = role == AIActRole.PROVIDER
    if _rbi_high(a):
        reasons.append("Article 5(1)(h): real-time remote biometric identification for law enforcement is used only "
                       "for the objectives of Article 5(1)(h)(i)-(iii), so it is not prohibited; each use needs prior "
                       "authorisation (Article 5(2)-(3)), and the system is high-risk (Article 6(2), Annex III point "
                       "1(a)).")
    if _yes(a, ANNEX_I):
        if _annex_i_high(a):
            reasons.append("Article 6(1): the system is a product, or a safety component of a product, under the "
                           "Union harmonisation legislation of Annex I that requires a third-party conformity "
                           "assessment, so it is high-risk.")
        else:
            reasons.append("Article 6(1)(b): the Annex I product needs no third-party conformity assessment, so "
                           "Article 6(1) does not make the system high-risk.")
    if _listed(a):
        point, label = ANNEX_III_AREAS[a[ANNEX_III]]
        area = label.split(":")[0].lower()
        if _annex_i_high(a):
            reasons.append(f"Annex III point {point} ({area}) also lists the system's use.")
        elif _yes(a, PROFILING):
            reasons.append(f"Article 6(2) and Annex III point {point} ({area}): the system profiles natural persons, "
                           "so it is high-risk whatever its task (Article 6(3), last subparagraph).")
        elif a.get(EXCEPTION) == NO:
            reasons.append(f"Article 6(2) and Annex III point {point} ({area}): the system is high-risk; it does more "
                           "than the tasks the Article 6(3) exceptions allow.")
        elif a.get(EXCEPTION) == YES:
            who = "Document" if provider else "The provider must document"
            reasons.append(f"Article 6(3): the system is listed in Annex III point {point} ({area}) but only performs "
                           "a task of Article 6(3)(a)-(d), so it is not high-risk. "
                           f"{who} this assessment before it is placed on the market or put into service "
                           "(Article 6(4)) and register the system in the EU database (Article 49(2)).")
    elif a.get(ANNEX_III) == NONE_OF_THESE and not _annex_i_high(a):
        reasons.append("Article 6(2): the system's use is in none of the Annex III areas.")
    return reasons


def _role_reasons(a: Mapping[str, str], role: AIActRole, tags: list[str]) -> list[str]:
    reasons: list[str] = []
    if role == AIActRole.PROVIDER:
        reasons.append("As provider of a high-risk system: meet the requirements of Articles 9-15, the provider "
                       "obligations of Articles 16-17, post-market monitoring (Article 72), serious incident "
                       "reporting (Article 73) and keep the technical documentation of Annex IV.")
    elif role == AIActRole.DEPLOYER:
        reasons.append("As deployer of a high-risk system: use it according to its instructions, assign human "
                       "oversight, monitor it and keep its logs (Article 26).")
        if "public_authority_registration" in tags:
            reasons.append("Article 26(8): as a public authority, register your use of the system in the EU database "
                           "(Article 49) before using it.")
        if "fundamental_rights_impact_assessment" in tags:
            if _rbi_high(a):
                why = "each authorised use of real-time remote biometric identification needs one (Article 5(2))"
            elif a.get(DEPLOYER_ORG) in FRIA_ORGANISATIONS:
                why = f"your organisation is {FRIA_ORGANISATION_NAMES[a[DEPLOYER_ORG]]}"
            else:
                why = ("the system is used for credit scoring or life or health insurance pricing "
                       "(Annex III point 5(b)-(c))")
            reasons.append("Article 27: carry out a fundamental rights impact assessment before first use and notify "
                           f"the market surveillance authority of its results: {why}.")
        elif a.get(ANNEX_III) == "critical_infrastructure":
            reasons.append("Article 27(1): no fundamental rights impact assessment is required for Annex III point 2 "
                           "(critical infrastructure).")
        elif _annex_iii_high(a):
            reasons.append("Article 27(1): no fundamental rights impact assessment is required: your organisation is "
                           "not a public body or a provider of public services, and the use is not credit scoring or "
                           "life or health insurance pricing.")
    else:
        article, duty = (("Article 23", "verify, before placing it on the market, that the provider carried out the "
                          "conformity assessment, drew up the technical documentation, affixed the CE marking and "
                          "appointed an authorised representative") if role == AIActRole.IMPORTER else
                         ("Article 24", "verify, before making it available, that it bears the CE marking and comes "
                          "with the EU declaration of conformity and instructions for use"))
        reasons.append(f"{article}: as {ROLE_NAMES[role]} of a high-risk system, {duty}. The EU AI Act library has no "
                       f"controls for {article}, so this classification makes none applicable for it: track it by "
                       "hand (controls linked manually count as for any system).")
    return reasons


def _transparency_reasons(a: Mapping[str, str], role: AIActRole, tags: list[str]) -> list[str]:
    reasons: list[str] = []
    if "transparency_interaction" in tags:
        reasons.append("Article 50(1): the system interacts directly with people; as provider, design it so that "
                       "they are told they are interacting with an AI system.")
    if "transparency_synthetic_content" in tags:
        reasons.append("Article 50(2): the system generates synthetic audio, images, video or text; as provider, "
                       "mark its outputs in a machine-readable format as artificially generated or manipulated.")
    if "transparency_emotion_biometric" in tags:
        reasons.append("Article 50(3): the system recognises emotions or categorises people biometrically; as "
                       "deployer, inform the people exposed to it and process their personal data lawfully.")
    if "transparency_deep_fake" in tags:
        reasons.append("Article 50(4): as deployer, disclose that the deep fake content or the text published to "
                       "inform the public was artificially generated or manipulated.")
    if "transparency_information" in tags:
        reasons.append("Article 50(5): give this information clearly and distinguishably, at the latest at the "
                       "first interaction or exposure, meeting accessibility requirements.")
    if role in (AIActRole.IMPORTER, AIActRole.DISTRIBUTOR):
        reasons.append("Article 50 places its transparency obligations on providers and deployers; as "
                       f"{ROLE_NAMES[role]} your organisation has none of its own for this system.")
    return reasons


def _gpai_reasons(a: Mapping[str, str], tags: list[str]) -> list[str]:
    reasons: list[str] = []
    if "gpai_provider" in tags:
        reasons.append("Article 53: as provider of a general-purpose AI model, keep its technical documentation, "
                       "inform downstream providers, put a copyright policy in place and publish a summary of its "
                       "training content.")
    if "gpai_open_source_provider" in tags:
        reasons.append("Article 53(2): the model is free and open-source without systemic risk, so only the copyright "
                       "policy, the training content summary (Article 53(1)(c)-(d)) and cooperation (Article 53(3)) "
                       "apply; no authorised representative is needed (Article 54(6)).")
    if "gpai_systemic_risk" in tags:
        reasons.append("Article 55: the model has systemic risk: evaluate it and test it adversarially, assess and "
                       "mitigate systemic risks, report serious incidents and protect its cybersecurity; notify the "
                       "Commission (Article 52).")
    if "gpai_authorised_representative" in tags:
        reasons.append("Article 54: as a provider established outside the EU, appoint an authorised representative "
                       "in the Union by written mandate before placing the model on the EU market.")
    return reasons


def _obligations(a: Mapping[str, str], role: AIActRole) -> list[str]:
    tags = {"prohibited_practices"}
    if _prohibited(a):
        return ["prohibited_practices"]
    if _high(a):
        if role == AIActRole.PROVIDER:
            tags.add("high_risk_provider")
        elif role == AIActRole.DEPLOYER:
            tags.add("high_risk_deployer")
            if a.get(DEPLOYER_ORG) == "public_authority":
                tags.add("public_authority_registration")
            if _fria(a, role):
                tags.add("fundamental_rights_impact_assessment")
    if role == AIActRole.PROVIDER:
        if _yes(a, INTERACTS):
            tags.add("transparency_interaction")
        if _yes(a, SYNTHETIC):
            tags.add("transparency_synthetic_content")
    if role == AIActRole.DEPLOYER:
        if _yes(a, EMOTION_BIOMETRIC):
            tags.add("transparency_emotion_biometric")
        if _yes(a, DEEP_FAKE):
            tags.add("transparency_deep_fake")
    if tags.intersection(TRANSPARENCY):
        tags.add("transparency_information")
    if _yes(a, GPAI):
        tags.add("gpai_open_source_provider" if _yes(a, GPAI_OPEN_SOURCE) else "gpai_provider")
        if _yes(a, GPAI_SYSTEMIC):
            tags.add("gpai_systemic_risk")
        if _yes(a, GPAI_OUTSIDE_EU):
            tags.add("gpai_authorised_representative")
    return [tag for tag in OBLIGATIONS if tag in tags]


def tags_limited(tags: Iterable[str]) -> bool:
    """An Article 50 obligation is among the tags (what makes a system limited risk)."""
    return any(tag in TRANSPARENCY for tag in tags)


def classify(answers: Mapping[str, Any], role: AIActRole | str) -> Classification:
    """The result for the organisation's role, its reasons (plain sentences citing the articles) and
    its obligations. Incomplete answers give the result so far (unanswered questions count as "no")
    with complete=False. A value a question does not offer raises AIActError."""
    chosen = AIActRole(role)
    clean_answers(answers)
    a, pending = _walk(answers, chosen)
    tags = _obligations(a, chosen)
    rationale: list[str] = []
    if _prohibited(a):
        result = AIRiskClass.PROHIBITED
        rationale = _prohibited_reasons(a)
    else:
        if all(a.get(qid) == NO for qid in PROHIBITIONS) and RBI in a:
            rationale.append("Article 5(1)(a)-(h): none of the prohibited practices applies; the prohibitions remain "
                             "obligations for the system.")
        rationale += _high_reasons(a, chosen)
        if _high(a):
            result = AIRiskClass.HIGH
            rationale += _role_reasons(a, chosen, tags)
        elif tags_limited(tags):
            result = AIRiskClass.LIMITED
        else:
            result = AIRiskClass.MINIMAL
        rationale += _transparency_reasons(a, chosen, tags)
        rationale += _gpai_reasons(a, tags)
        if result == AIRiskClass.MINIMAL:
            gpai = any(t.startswith("gpai") for t in tags)
            model = " (the model's obligations above are the model's)" if gpai else ""
            rationale.append(f"Minimal risk: the EU AI Act sets no obligations for this system{model} beyond the "
                             "prohibitions of Article 5 and AI literacy (Article 4); voluntary codes of conduct may "
                             "apply (Article 95).")
        elif result == AIRiskClass.LIMITED:
            rationale.append("Limited risk: the transparency obligations of Article 50 apply.")
    if pending:
        rationale.append(f'Not complete for the {ROLE_NAMES[chosen]} role: answer "{pending[0].text}" '
                         f"({pending[0].legal_ref}); until then unanswered questions count as no.")
    return Classification(result=result, rationale=rationale, obligations=tags, complete=not pending)


# --- persistence -----------------------------------------------------------------------------------------

def _system(session: Session, system_id: uuid.UUID) -> AISystem:
    system = session.scalars(select(AISystem).where(AISystem.id == system_id).with_for_update()).first()
    if system is None:
        raise AIActError(None, "That AI system does not exist or was deleted.")
    return system


def _eu_framework(session: Session) -> Framework:
    """The live EU AI Act framework, imported from the shipped library when it is missing."""
    lib = libraries.get(EU_LIBRARY)
    framework = session.scalars(
        select(Framework).where(Framework.title == lib.title, Framework.version == lib.version)).first()
    if framework is not None:
        return framework
    try:
        return libraries.load_library(session, EU_LIBRARY).framework
    except framework_io.FrameworkIOError as exc:
        raise AIActError(None, f"The EU AI Act framework could not be imported: {exc}") from exc


def _apply(session: Session, system: AISystem, obligations: list[str]) -> tuple[list[str], list[str]]:
    """Replace the system's classification controls with those the obligations name; returns the
    ref_ids added and removed."""
    reasons: dict[str, list[str]] = {}
    for tag in obligations:
        for ref in OBLIGATIONS[tag]:
            reasons.setdefault(ref, []).append(tag)
    framework = _eu_framework(session)
    controls = session.execute(
        select(Control.id, Control.ref_id).where(
            Control.framework_id == framework.id, Control.ref_id.in_(list(reasons)),
            Control.status != ControlStatus.WITHDRAWN)).all()
    wanted = {row.id: (row.ref_id, ", ".join(reasons[row.ref_id])) for row in controls}
    existing = session.execute(
        select(AISystemControl, Control.ref_id).join(Control, Control.id == AISystemControl.control_id)
        .where(AISystemControl.system_id == system.id, AISystemControl.origin == ORIGIN)
        .execution_options(include_deleted=True)).all()
    removed: list[str] = []
    kept: set[uuid.UUID] = set()
    for row, ref_id in existing:
        if row.control_id in wanted:
            row.reason = wanted[row.control_id][1]
            kept.add(row.control_id)
        else:
            removed.append(ref_id)
            session.delete(row)
    added: list[str] = []
    for control_id, (ref_id, reason) in wanted.items():
        if control_id not in kept:
            session.add(AISystemControl(system_id=system.id, control_id=control_id, origin=ORIGIN, reason=reason))
            added.append(ref_id)
    session.flush()
    return sorted(added), sorted(removed)


def _store(session: Session, system: AISystem, answers: dict[str, str], result: Classification,
           trigger: str) -> AIClassification:
    version = (session.scalar(select(func.max(AIClassification.version))
                              .where(AIClassification.system_id == system.id)) or 0) + 1
    before = None if system.risk_class is None else system.risk_class.value
    row = AIClassification(system_id=system.id, version=version, questionnaire_version=QUESTIONNAIRE_VERSION,
                           answers=answers, role=system.eu_role, result=result.result,
                           rationale=list(result.rationale), obligations=list(result.obligations),
                           created_by_id=context.current().actor_id)
    session.add(row)
    system.risk_class = result.result
    system.classified_at = datetime.now(UTC)
    session.flush()
    added, removed = _apply(session, system, result.obligations)
    audit.record(session, "ai_system.classify", object_type="ai_system", object_id=system.id,
                 details={"version": version, "trigger": trigger, "questionnaire_version": QUESTIONNAIRE_VERSION,
                          "role": system.eu_role, "result": result.result, "complete": result.complete,
                          "obligations": result.obligations, "answers": answers,
                          "controls_added": added, "controls_removed": removed},
                 before={"risk_class": before}, after={"risk_class": result.result.value})
    return row


def save_classification(session: Session, system_id: uuid.UUID, answers: Mapping[str, Any]) -> AIClassification:
    """Store a complete questionnaire as the system's next classification version (for its eu_role),
    mirror the result on the system and make the obligations' EU AI Act controls applicable to it.
    The answers stored are the relevant ones for any role (so a role change can be re-run)."""
    system = _system(session, system_id)
    cleaned = clean_answers(answers)
    result = classify(cleaned, system.eu_role)
    if not result.complete:
        question = next_question(cleaned, role=system.eu_role)
        assert question is not None
        raise AIActError(None, f'The questionnaire is not complete: answer "{question.text}" first.')
    return _store(session, system, cleaned, result, "questionnaire")


def reclassify(session: Session, system_id: uuid.UUID) -> AIClassification | None:
    """Re-run the newest classification's answers for the system's current role (e.g. after eu_role
    changed). A new version when the role, the result or the obligations differ; None when there is no
    classification yet or nothing changed. Answers the questionnaire no longer knows are left out; if
    the new role needs questions never answered, the version is stored anyway (those count as "no",
    the rationale names the next one) so that applicability follows the role at once."""
    system = _system(session, system_id)
    newest = latest(session, system.id)
    if newest is None:
        return None
    usable = {qid: value for qid, value in (newest.answers or {}).items()
              if qid in QUESTION_BY_ID and _valid(QUESTION_BY_ID[qid], value)}
    answers = clean_answers(usable)
    result = classify(answers, system.eu_role)
    if (newest.role, newest.result, list(newest.obligations)) == (system.eu_role, result.result, result.obligations):
        return None
    return _store(session, system, answers, result, "reclassify")


def latest(session: Session, system_id: uuid.UUID) -> AIClassification | None:
    return session.scalars(select(AIClassification).where(AIClassification.system_id == system_id)
                           .order_by(AIClassification.version.desc()).limit(1)).first()


def history(session: Session, system_id: uuid.UUID) -> list[AIClassification]:
    """Every classification version of the system, oldest (version 1) first."""
    return list(session.scalars(select(AIClassification).where(AIClassification.system_id == system_id)
                                .order_by(AIClassification.version)))
