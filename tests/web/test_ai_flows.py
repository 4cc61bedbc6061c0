"""The EU AI Act questionnaire, the impact assessment and the register pages: who may read and who
may change them, the questionnaire walked by HTTP to "high" (Annex III employment) and saved as
version 1, re-classified (pre-filled, one answer changed) as version 2, "Back" and "Change", bad
answers refused with 400 beside their question; an assessment written, submitted and approved by
another person, the author's own approval refused, a rejection without a reason refused, a new
version after approval; the register listing a high-risk system with its missing items and leaving
out a minimal-risk one."""

from __future__ import annotations

import html as html_lib
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from extensions import db
from governance import context
from governance.models.ai import AIClassification, AISystem, AISystemControl
from governance.models.audit import AuditLog
from governance.models.enums import AIActRole, AIRiskClass, AssessmentStatus
from governance.models.frameworks import Control
from governance.services import ai_act, ai_systems, impact_assessments
from tests.conftest import TEST_PASSWORD, IsolatedClient, _csrf_token

HX = {"HX-Request": "true"}
PROHIBITIONS_NO = dict.fromkeys(ai_act.PROHIBITIONS, "no")
# A deployer's CV screening in recruitment: Annex III point 4, profiling people -> high risk.
EMPLOYMENT_DEPLOYER = {
    **PROHIBITIONS_NO, "realtime_biometric_identification": "no", "annex_i_product": "no",
    "annex_iii_area": "employment", "profiling": "yes", "deployer_organisation": "private",
    "emotion_or_biometric_categorisation": "no", "deep_fake_or_public_text": "no", "gpai_model": "no",
}
MINIMAL_DEPLOYER = {
    **PROHIBITIONS_NO, "realtime_biometric_identification": "no", "annex_i_product": "no",
    "annex_iii_area": "none", "emotion_or_biometric_categorisation": "no", "deep_fake_or_public_text": "no",
    "gpai_model": "no",
}
ASSESSMENT_ANSWERS = {q.id: f"Answer to {q.title.lower()}." for q in impact_assessments.QUESTIONS if q.required}


def _system(name: str | None = None, role: AIActRole = AIActRole.DEPLOYER, **fields: Any) -> AISystem:
    system = ai_systems.create_system(db.session, name=name or f"CV screening {uuid.uuid4().hex[:6]}",
                                      purpose="Ranks job applications for recruiters.", eu_role=role, **fields)
    db.session.commit()
    return system


def _as(user: Any) -> Any:
    return context.acting_as(context.ActionContext(actor_id=user.id, actor_name=user.name))


def _page(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _token(page: str) -> str:
    return _csrf_token(page)


def _carried(page: str) -> dict[str, str]:
    """The answers the questionnaire form carries (its hidden a-<id> inputs)."""
    pairs = re.findall(r'<input type="hidden" name="a-([a-z_]+)" value="([^"]*)"', page)
    return {k: html_lib.unescape(v) for k, v in pairs}


def _asked(page: str) -> str | None:
    match = re.search(r'<input type="hidden" name="question" value="([a-z_]+)"', page)
    return match.group(1) if match else None


def _checked(page: str) -> str | None:
    match = re.search(r'<input type="radio" name="answer" id="[^"]+" value="([^"]+)" checked', page)
    return match.group(1) if match else None


def _form(page: str, **extra: str) -> dict[str, str]:
    data = {"csrf_token": _token(page), **{f"a-{k}": v for k, v in _carried(page).items()}}
    asked = _asked(page)
    if asked:
        data["question"] = asked
    data.update(extra)
    return data


def _walk(client: FlaskClient, url: str, page: str, plan: Mapping[str, str], *,
          htmx: bool = True) -> tuple[str, list[str]]:
    """Answer each asked question from `plan` until the result shows; returns (page, questions asked)."""
    asked: list[str] = []
    for _ in range(len(ai_act.QUESTIONS) + 1):
        question = _asked(page)
        if question is None:
            return page, asked
        asked.append(question)
        assert question in plan, f"unexpected question {question}"
        response = client.post(url, data=_form(page, answer=plan[question], action="answer"),
                               headers=HX if htmx else {})
        assert response.status_code == 200, _page(response)
        page = _page(response)
    raise AssertionError("the questionnaire did not end")


@pytest.fixture
def second_client(app: Flask, db_session: Any,
                  make_user: Callable[..., Any]) -> Callable[[str], tuple[FlaskClient, Any]]:
    """second_client(role): another browser (client) signed in as a new user with that role."""

    def make(role: str) -> tuple[FlaskClient, Any]:
        other = IsolatedClient(app, app.response_class, use_cookies=True)
        user = make_user(role)
        with other.session_transaction():
            pass  # a session cookie exists before the first form, as in a browser
        login = _page(other.get("/login"))
        response = other.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                                              "csrf_token": _token(login), "next": ""})
        assert response.status_code == 303
        return other, user

    return make


# --- who may do what ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "compliance_officer", "engineer", "auditor"])
def test_every_role_reads_the_pages(client: FlaskClient, login_as: Any, role: str) -> None:
    login_as(role)
    system = _system()
    for url in (f"/ai-systems/{system.id}/classify", f"/ai-systems/{system.id}/assessment", "/ai-systems/register"):
        response = client.get(url)
        assert response.status_code == 200, url
    classify = _page(client.get(f"/ai-systems/{system.id}/classify"))
    assessment = _page(client.get(f"/ai-systems/{system.id}/assessment"))
    if role == "auditor":  # reads, but is offered nothing to change
        assert 'name="answer"' not in classify and "Not classified yet." in classify
        assert "Start the impact assessment" not in assessment
    else:
        assert _asked(classify) == "prohibited_manipulation"
        assert "Start the impact assessment" in assessment


def test_an_auditor_cannot_post_and_an_engineer_cannot_decide(
        client: FlaskClient, login_as: Any, make_user: Callable[..., Any]) -> None:
    auditor = login_as("auditor")
    system = _system()
    author = make_user("compliance_officer")
    with _as(author):
        draft = impact_assessments.start(db.session, system.id)
        impact_assessments.save_answers(db.session, draft.id, ASSESSMENT_ANSWERS)
        impact_assessments.submit(db.session, draft.id)
    db.session.commit()
    token = _token(_page(client.get(f"/ai-systems/{system.id}/assessment")))
    refused = [
        client.post(f"/ai-systems/{system.id}/classify",
                    data={"csrf_token": token, "question": "prohibited_manipulation", "answer": "no"}),
        client.post(f"/ai-systems/{system.id}/classify", data={"csrf_token": token, "action": "save",
                                                              **{f"a-{k}": v for k, v in EMPLOYMENT_DEPLOYER.items()}}),
        client.post(f"/ai-systems/{system.id}/assessment/start", data={"csrf_token": token}),
        client.post(f"/ai-systems/{system.id}/impact-assessments/{draft.id}/answers",
                    data={"csrf_token": token, "q-processes": "Changed", "action": "save"}),
        client.post(f"/ai-systems/{system.id}/impact-assessments/{draft.id}/decision",
                    data={"csrf_token": token, "action": "approve"}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    db.session.expire_all()
    assert ai_act.latest(db.session, system.id) is None
    assert impact_assessments.latest(db.session, system.id).status == AssessmentStatus.SUBMITTED  # type: ignore[union-attr]
    assert db.session.scalars(select(AuditLog).where(AuditLog.action == "access.denied",
                                                     AuditLog.actor_id == auditor.id)).all()


def test_an_engineer_writes_but_cannot_decide(client: FlaskClient, login_as: Any) -> None:
    login_as("engineer")
    system = _system()
    token = _token(_page(client.get(f"/ai-systems/{system.id}/assessment")))
    assert client.post(f"/ai-systems/{system.id}/assessment/start", data={"csrf_token": token}).status_code == 303
    draft = impact_assessments.latest(db.session, system.id)
    assert draft is not None
    page = _page(client.get(f"/ai-systems/{system.id}/assessment"))
    assert "Save draft" in page and "Approve" not in page
    response = client.post(f"/ai-systems/{system.id}/impact-assessments/{draft.id}/decision",
                           data={"csrf_token": token, "action": "approve"})
    assert response.status_code == 403


# --- the questionnaire -----------------------------------------------------------------------------------


def test_the_questionnaire_reaches_high_for_an_employment_system_and_saves_version_1(
        client: FlaskClient, login_as: Any) -> None:
    engineer = login_as("engineer")
    system = _system()
    url = f"/ai-systems/{system.id}/classify"
    first = _page(client.get(url))
    assert _asked(first) == "prohibited_manipulation"
    assert '<fieldset class="question' in first and "<legend" in first and "Article 5(1)(a)" in first

    # One question at a time, htmx swapping only the questionnaire; no answer is stored yet.
    step = client.post(url, data=_form(first, answer="no", action="answer"), headers=HX)
    assert step.status_code == 200 and "HX-Request" in step.headers["Vary"]
    fragment = _page(step)
    assert fragment.lstrip().startswith('<section id="ai-questionnaire"') and "<html" not in fragment
    assert _asked(fragment) == "prohibited_vulnerabilities"
    assert _carried(fragment) == {"prohibited_manipulation": "no"}
    assert 'id="answered-prohibited_manipulation"' in fragment  # the summary, with its "Change" button

    result, asked = _walk(client, url, first, EMPLOYMENT_DEPLOYER)
    assert set(asked) == set(EMPLOYMENT_DEPLOYER)  # the exception is not asked: profiling makes it high
    assert "annex_iii_exception" not in asked and "interacts_with_people" not in asked  # provider-only
    assert 'id="result-class">High risk<' in result
    assert "Annex III point 4 (employment and workers&#39; management)" in result
    assert ai_act.OBLIGATION_LABELS["high_risk_deployer"] in result and "Article 26(1)" in result
    assert "Save classification" in result
    assert db.session.scalars(select(AIClassification).where(AIClassification.system_id == system.id)).all() == []

    saved = client.post(url, data=_form(result, action="save"))
    assert saved.status_code == 303 and saved.headers["Location"].endswith(f"/ai-systems/{system.id}")
    db.session.expire_all()
    version = ai_act.latest(db.session, system.id)
    assert version is not None and version.version == 1 and version.result == AIRiskClass.HIGH
    assert version.created_by_id == engineer.id and version.role == AIActRole.DEPLOYER
    assert version.answers == ai_act.clean_answers(EMPLOYMENT_DEPLOYER)
    assert db.session.get(AISystem, system.id).risk_class == AIRiskClass.HIGH  # type: ignore[union-attr]
    refs = set(db.session.scalars(select(Control.ref_id).join(AISystemControl, AISystemControl.control_id == Control.id)
                                  .where(AISystemControl.system_id == system.id,
                                         AISystemControl.origin == "classification")))
    assert "Article 26(1)" in refs and "Article 5(1)(a)" in refs and "Article 9(1)" not in refs
    notice = _page(client.get(saved.headers["Location"]))
    assert "Classified as high risk (version 1)." in notice


def test_reclassifying_starts_from_the_newest_answers_and_saves_version_2(
        client: FlaskClient, login_as: Any) -> None:
    login_as("compliance_officer")
    system = _system()
    ai_act.save_classification(db.session, system.id, EMPLOYMENT_DEPLOYER)
    db.session.commit()
    url = f"/ai-systems/{system.id}/classify"

    # Pre-filled: the result at once, with every answer ready to change.
    page = _page(client.get(url))
    assert _asked(page) is None and 'id="result-class">High risk<' in page
    assert _carried(page) == ai_act.clean_answers(EMPLOYMENT_DEPLOYER)
    assert 'name="change" value="profiling"' in page

    # Change one answer: that question comes back with its answer chosen; the rest ride along.
    page = _page(client.post(url, data=_form(page, change="profiling"), headers=HX))
    assert _asked(page) == "profiling" and _checked(page) == "yes"
    assert "profiling" not in _carried(page) and _carried(page)["annex_iii_area"] == "employment"
    page = _page(client.post(url, data=_form(page, answer="no", action="answer"), headers=HX))
    assert _asked(page) == "annex_iii_exception"  # not profiling: the Article 6(3) exceptions are asked
    page = _page(client.post(url, data=_form(page, answer="no", action="answer"), headers=HX))
    assert _asked(page) is None and "does more than the tasks the Article 6(3) exceptions allow" in page

    response = client.post(url, data=_form(page, action="save"), headers=HX)
    assert response.status_code == 204 and response.headers["HX-Location"] == f"/ai-systems/{system.id}"
    db.session.expire_all()
    versions = ai_act.history(db.session, system.id)
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].answers["profiling"] == "no" and versions[1].answers["annex_iii_exception"] == "no"
    assert versions[1].result == AIRiskClass.HIGH
    history = _page(client.get(url))
    assert 'id="classification-1"' in history and 'id="classification-2"' in history
    assert history.index('id="classification-2"') < history.index('id="classification-1"')  # newest first

    # An exception that applies takes the system out of high risk (minimal for this deployer).
    page = _page(client.post(url, data=_form(history, change="annex_iii_exception")))
    assert _asked(page) == "annex_iii_exception" and _checked(page) == "no"
    page = _page(client.post(url, data=_form(page, answer="yes", action="answer")))
    assert _asked(page) is None and 'id="result-class">Minimal risk<' in page
    assert client.post(url, data=_form(page, action="save")).status_code == 303
    assert ai_act.latest(db.session, system.id).result == AIRiskClass.MINIMAL  # type: ignore[union-attr]


def test_back_asks_the_previous_question_again_with_its_answer(client: FlaskClient, login_as: Any) -> None:
    login_as("engineer")
    system = _system()
    url = f"/ai-systems/{system.id}/classify"
    page = _page(client.get(url))
    page = _page(client.post(url, data=_form(page, answer="no", action="answer")))
    page = _page(client.post(url, data=_form(page, answer="no", action="answer")))
    assert _asked(page) == "prohibited_social_scoring"

    back = client.post(url, data=_form(page, action="back"))  # no JavaScript: the whole page again
    assert back.status_code == 200 and "<html" in _page(back)
    page = _page(back)
    assert _asked(page) == "prohibited_vulnerabilities" and _checked(page) == "no"
    assert _carried(page) == {"prohibited_manipulation": "no"}
    page = _page(client.post(url, data=_form(page, answer="no", action="answer")))
    assert _asked(page) == "prohibited_social_scoring"

    # A "yes" to a prohibited practice ends the questionnaire: prohibited.
    page = _page(client.post(url, data=_form(page, answer="yes", action="answer")))
    assert _asked(page) is None and 'id="result-class">Prohibited<' in page and "Article 5(1)(c)" in page


def test_bad_answers_get_400_with_the_message_beside_the_question(client: FlaskClient, login_as: Any) -> None:
    login_as("engineer")
    system = _system()
    url = f"/ai-systems/{system.id}/classify"
    page = _page(client.get(url))

    wrong = client.post(url, data=_form(page, answer="maybe", action="answer"))
    assert wrong.status_code == 400
    body = _page(wrong)
    assert _asked(body) == "prohibited_manipulation"
    error = re.search(r'<p class="field-error" id="question-error-prohibited_manipulation" role="alert">([^<]+)</p>',
                      body)
    assert error and "Choose one of the answers offered" in error.group(1)
    assert 'aria-describedby="question-help-prohibited_manipulation question-error-prohibited_manipulation"' in body

    empty = client.post(url, data=_form(page, action="answer"), headers=HX)
    assert empty.status_code == 400 and empty.headers["HX-Retarget"] == "#ai-questionnaire"
    assert "Choose an answer to go on." in _page(empty)

    # A carried answer tampered with is refused beside its own question.
    tampered = {**_form(page, answer="no", action="answer"), "a-annex_iii_area": "mars"}
    response = client.post(url, data=tampered)
    assert response.status_code == 400
    assert _asked(_page(response)) == "annex_iii_area" and 'id="question-error-annex_iii_area"' in _page(response)

    unknown = client.post(url, data=_form(page, question="no_such_question", answer="yes", action="answer"))
    assert unknown.status_code == 400 and "not part of the questionnaire" in _page(unknown)

    # Saving before the end is refused too, and nothing is stored.
    early = client.post(url, data={"csrf_token": _token(page), "action": "save", "a-prohibited_manipulation": "no"})
    assert early.status_code == 400 and "The questionnaire is not complete" in _page(early)
    assert ai_act.latest(db.session, system.id) is None


# --- the impact assessment ---------------------------------------------------------------------------------


def test_an_assessment_is_drafted_submitted_and_approved_by_another_person(
        client: FlaskClient, login_as: Any, second_client: Callable[[str], tuple[FlaskClient, Any]]) -> None:
    engineer = login_as("engineer")
    system = _system()
    ai_act.save_classification(db.session, system.id, EMPLOYMENT_DEPLOYER)
    db.session.commit()
    url = f"/ai-systems/{system.id}/assessment"
    page = _page(client.get(url))
    assert "This high-risk system has no approved impact assessment yet." in page
    assert client.post(f"{url}/start", data={"csrf_token": _token(page)}).status_code == 303
    draft = impact_assessments.latest(db.session, system.id)
    assert draft is not None and draft.version == 1 and draft.created_by_id == engineer.id
    save_url = f"/ai-systems/{system.id}/impact-assessments/{draft.id}/answers"

    page = _page(client.get(url))
    assert 'id="q-processes"' in page and "Article 27(1)(a)" in page
    saved = client.post(save_url, data={"csrf_token": _token(page), "action": "save",
                                        "q-processes": "Screening CVs for engineering roles."})
    assert saved.status_code == 303
    page = _page(client.get(saved.headers["Location"]))
    assert "Draft of version 1 saved." in page and "Screening CVs for engineering roles." in page

    # Submitting with answers missing keeps the draft saved, and says what is missing, beside each.
    refused = client.post(save_url, data={"csrf_token": _token(page), "action": "submit",
                                          "q-processes": "Screening CVs for all roles."}, headers=HX)
    assert refused.status_code == 422
    body = _page(refused)
    assert "Draft saved, not submitted. Answer every required question before submitting" in body
    assert 'id="q-risks_of_harm-error"' in body and 'id="q-processes-error"' not in body
    db.session.expire_all()
    draft = impact_assessments.latest(db.session, system.id)
    assert draft is not None and draft.status == AssessmentStatus.DRAFT
    assert draft.answers["processes"] == "Screening CVs for all roles."

    submitted = client.post(save_url, data={"csrf_token": _token(page), "action": "submit",
                                            **{f"q-{k}": v for k, v in ASSESSMENT_ANSWERS.items()}})
    assert submitted.status_code == 303
    db.session.expire_all()
    assert impact_assessments.latest(db.session, system.id).status == AssessmentStatus.SUBMITTED  # type: ignore[union-attr]
    page = _page(client.get(url))
    assert "Submitted for approval" in page and "Save draft" not in page

    # A compliance officer (not the author) approves it with a comment.
    officer_client, officer = second_client("compliance_officer")
    page = _page(officer_client.get(url))
    assert "Approve" in page and "You wrote this version" not in page
    decided = officer_client.post(f"/ai-systems/{system.id}/impact-assessments/{draft.id}/decision",
                                  data={"csrf_token": _token(page), "action": "approve",
                                        "comment": "Residual risk accepted by HR leadership."}, headers=HX)
    assert decided.status_code == 204 and decided.headers["HX-Location"] == url
    db.session.expire_all()
    approved = impact_assessments.latest(db.session, system.id)
    assert approved is not None and approved.status == AssessmentStatus.APPROVED
    assert approved.decided_by_id == officer.id and approved.decided_at is not None
    page = _page(officer_client.get(url))
    assert "Version 1 approved." in page and f"{officer.name}," in page
    assert "Residual risk accepted by HR leadership." in page
    assert "This high-risk system has no approved impact assessment yet." not in page
    assert re.search(r'id="assessment-version-1">.*?Approved.*?' + re.escape(officer.name), page, re.S)

    # A change after approval is a new version, starting from these answers.
    assert "Start a new version" in page
    assert officer_client.post(f"{url}/start", data={"csrf_token": _token(page)}).status_code == 303
    db.session.expire_all()
    versions = impact_assessments.history(db.session, system.id)
    assert [(v.version, v.status) for v in versions] == [(2, AssessmentStatus.DRAFT), (1, AssessmentStatus.APPROVED)]
    assert versions[0].answers == versions[1].answers
    old = _page(officer_client.get(f"/ai-systems/{system.id}/impact-assessments/{versions[1].id}"))
    assert "(the newest is 2)" in old and 'id="q-processes"' not in old  # an old version only reads


def test_the_author_cannot_approve_and_a_rejection_needs_a_reason(
        client: FlaskClient, login_as: Any, second_client: Callable[[str], tuple[FlaskClient, Any]]) -> None:
    officer = login_as("compliance_officer")
    system = _system()
    with _as(officer):
        draft = impact_assessments.start(db.session, system.id)
        impact_assessments.save_answers(db.session, draft.id, ASSESSMENT_ANSWERS)
        impact_assessments.submit(db.session, draft.id)
    db.session.commit()
    url = f"/ai-systems/{system.id}/assessment"
    decide = f"/ai-systems/{system.id}/impact-assessments/{draft.id}/decision"
    page = _page(client.get(url))
    assert "You wrote this version" in page

    own = client.post(decide, data={"csrf_token": _token(page), "action": "approve", "comment": "Fine by me."},
                      headers=HX)
    assert own.status_code == 422
    assert re.search(r'id="assessment-decision-error">You wrote this assessment, so someone else must approve or '
                     r'reject it.<', _page(own))
    db.session.expire_all()
    assert impact_assessments.latest(db.session, system.id).status == AssessmentStatus.SUBMITTED  # type: ignore[union-attr]

    admin_client, _ = second_client("admin")
    page = _page(admin_client.get(url))
    no_reason = admin_client.post(decide, data={"csrf_token": _token(page), "action": "reject", "comment": " "})
    assert no_reason.status_code == 422
    assert re.search(r'id="assessment-comment-error">Say what must change', _page(no_reason))
    rejected = admin_client.post(decide, data={"csrf_token": _token(page), "action": "reject",
                                               "comment": "Name the groups compared in the bias evaluation."})
    assert rejected.status_code == 303
    db.session.expire_all()
    decided = impact_assessments.latest(db.session, system.id)
    assert decided is not None and decided.status == AssessmentStatus.REJECTED
    page = _page(admin_client.get(url))
    assert "What must change" in page and "Name the groups compared" in page
    again = admin_client.post(decide, data={"csrf_token": _token(page), "action": "approve"})
    assert again.status_code == 422 and "Only a submitted assessment can be decided" in _page(again)


# --- the register -----------------------------------------------------------------------------------------


def test_the_register_lists_high_risk_systems_with_their_missing_items(client: FlaskClient, login_as: Any) -> None:
    login_as("auditor")
    high = _system("Register CV screening", deployment_regions=["DE", "FR"])
    provided = _system("Register exam proctoring", role=AIActRole.PROVIDER, provider_name="Acme Proctoring GmbH",
                       instructions_url="https://docs.example.test/proctoring")
    minimal = _system("Register spam filter")
    ai_act.save_classification(db.session, high.id, EMPLOYMENT_DEPLOYER)
    ai_act.save_classification(db.session, provided.id, {
        **PROHIBITIONS_NO, "realtime_biometric_identification": "no", "annex_i_product": "no",
        "annex_iii_area": "education", "profiling": "yes", "interacts_with_people": "no",
        "generates_synthetic_content": "no", "gpai_model": "no"})
    ai_act.save_classification(db.session, minimal.id, MINIMAL_DEPLOYER)
    db.session.commit()
    assert minimal.risk_class == AIRiskClass.MINIMAL

    page = _page(client.get("/ai-systems/register"))

    assert f'id="register-{high.id}"' in page and f'id="register-{provided.id}"' in page
    assert f'id="register-{minimal.id}"' not in page and "Register spam filter" not in page
    section = re.search(rf'<section class="section register-entry" id="register-{high.id}".*?</section>', page, re.S)
    assert section is not None
    entry = section.group(0)
    assert f'href="/ai-systems/{high.id}"' in entry and "Annex VIII, Section C" in entry
    missing = re.search(rf'id="register-missing-{high.id}">\s*Missing (\d+) items?: ([^<]+)</p>', entry)
    assert missing is not None
    row = next(r for r in ai_systems.register_rows(db.session) if r.system.id == high.id)
    assert int(missing.group(1)) == len(row.missing) and row.missing
    assert "Summary of the fundamental rights impact assessment (Article 27)" in html_lib.unescape(missing.group(2))
    assert re.search(rf'id="register-{high.id}-fria_summary">\s*<dt>[^<]+<span class="legal-ref">\(Annex VIII, '
                     r'Section C, point 4\)</span></dt>\s*<dd><strong class="field-error">Missing</strong>', entry)
    assert re.search(rf'id="register-{high.id}-trade_name">.*?<dd>Register CV screening</dd>', entry, re.S)

    other = re.search(rf'<section class="section register-entry" id="register-{provided.id}".*?</section>', page, re.S)
    assert other is not None and "Annex VIII, Section A" in other.group(0)
    assert "https://docs.example.test/proctoring" in other.group(0)
    assert "Fill in the missing items" not in page  # an auditor reads only
    # ... and reads the classification, without the questionnaire's form.
    classify = _page(client.get(f"/ai-systems/{high.id}/classify"))
    assert "Version 1: <strong>High risk</strong>" in classify and 'name="answer"' not in classify
    assert 'id="classification-1"' in classify and "Save classification" not in classify


def test_an_unknown_system_is_404(client: FlaskClient, login_as: Any, make_user: Callable[..., Any]) -> None:
    login_as("engineer")
    missing = uuid.uuid4()
    assert client.get(f"/ai-systems/{missing}/classify").status_code == 404
    assert client.get(f"/ai-systems/{missing}/assessment").status_code == 404
    system = _system()
    other = _system()
    with _as(make_user("compliance_officer")):
        draft = impact_assessments.start(db.session, other.id)
    db.session.commit()
    # An assessment shown under another system's address is not found.
    assert client.get(f"/ai-systems/{system.id}/impact-assessments/{draft.id}").status_code == 404
