"""AI inventory pages: the list (filters with and without htmx, flags), the streamed and audited CSV
export, the system form (errors beside the field, nothing typed lost), a system's page (risk class
and rationale, impact assessment, score with its formula, controls by origin, models, datasets,
evidence, probes, alerts, tasks, expiring evidence), linking and unlinking (audited), the standard
AI checks, soft delete, models and datasets, who may do what, and CSRF."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta
from html import escape
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from extensions import db
from governance.models.ai import AIClassification, AIModel, AISystem, AISystemControl, Dataset
from governance.models.audit import AuditLog
from governance.models.enums import (
    AIActRole,
    AILifecycleStage,
    AIModelApproval,
    AIRiskClass,
    EvidenceCategory,
    Severity,
)
from governance.models.evidence import EvidenceLink
from governance.models.probes import Check, Probe
from governance.services import ai_act, ai_systems, alerts, tasks
from governance.services.ai_systems import CSV_COLUMNS
from tests.conftest import count_statements

HX = {"HX-Request": "true"}
READERS = ("admin", "compliance_officer", "engineer", "auditor")


def _system(name: str | None = None, *, risk: AIRiskClass | None = None, **fields: Any) -> AISystem:
    fields.setdefault("purpose", "Ranks incoming support tickets by urgency.")
    system = ai_systems.create_system(db.session, name=name or f"System {uuid.uuid4().hex[:6]}", **fields)
    if risk is not None:
        # The classification owns risk_class (the questionnaire's result); set it as it would.
        system.risk_class = risk
    db.session.commit()
    return system


def _token(client: FlaskClient, csrf_token: Any, url: str = "/ai-systems") -> str:
    return str(csrf_token(client.get(url).get_data(as_text=True)))


def _entries(action: str, system_id: Any = None) -> list[AuditLog]:
    stmt = select(AuditLog).where(AuditLog.action == action)
    if system_id is not None:
        stmt = stmt.where(AuditLog.object_id == str(system_id))
    return list(db.session.scalars(stmt.order_by(AuditLog.seq)))


def _ids(html: str) -> set[str]:
    return set(re.findall(r'<tr id="ai-system-([0-9a-f-]{36})"', html))


def _field_error(html: str, name: str) -> str | None:
    match = re.search(rf'<p class="field-error" id="{name}-error">(.*?)</p>', html, re.S)
    return match.group(1).strip() if match else None


def _form_data(token: str, **overrides: str) -> dict[str, str]:
    data = {
        "csrf_token": token, "name": "Ticket triage", "purpose": "Sorts support tickets by urgency.",
        "intended_use": "Support agents see the suggested order; they decide.", "owner_id": "",
        "business_unit": "Customer care", "lifecycle_stage": "development", "eu_role": "deployer",
        "autonomy_level": "assistive", "human_oversight": "Agents can reorder any ticket.",
        "oversight_owner_id": "", "data_categories": "ticket text, customer email\nproduct names",
        "deployment_regions": "DE, FR", "next_review_date": "2027-03-31",
        "provider_name": "Acme AI GmbH", "operating_logic": "A fine-tuned text classifier.",
        "conformity_certificate": "", "eu_database_id": "", "instructions_url": "https://acme.example/manual",
    }
    data.update(overrides)
    return data


# --- every page for every reader ----------------------------------------------------------------


@pytest.mark.parametrize("role", READERS)
def test_every_page_renders_for_each_role_that_may_read(client: FlaskClient, login_as: Any, role: str) -> None:
    user = login_as(role)
    system = _system("Claims assistant", owner_id=user.id, risk=AIRiskClass.HIGH)
    ai_systems.create_model(db.session, name="gpt-test", version="1", approval_status="approved")
    ai_systems.create_dataset(db.session, name="Claims 2025", personal_data=True)
    db.session.commit()

    index = client.get("/ai-systems")
    assert index.status_code == 200
    html = index.get_data(as_text=True)
    assert str(system.id) in _ids(html)
    assert re.search(r'<a href="/ai-systems" aria-current="page">AI systems</a>', html)
    assert "High-risk without an approved impact assessment" in html  # its flag, as a badge

    page = client.get(f"/ai-systems/{system.id}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "<h1 id=\"system-heading\">Claims assistant</h1>" in body
    assert f'href="/ai-systems/{system.id}/classify"' in body
    assert "How the score is computed:" in body
    assert client.get("/ai-systems/models").status_code == 200
    assert "gpt-test" in client.get("/ai-systems/models").get_data(as_text=True)
    datasets = client.get("/ai-systems/datasets").get_data(as_text=True)
    assert "Claims 2025" in datasets and "<td>Yes</td>" in datasets
    assert client.get(f"/ai-systems/{uuid.uuid4()}").status_code == 404


def test_an_auditor_sees_no_edit_controls_and_is_refused_every_change(
        client: FlaskClient, login_as: Any, csrf_token: Any, make_control: Any) -> None:
    login_as("auditor")
    system = _system()
    control = make_control("AI-1", "Model inventory is kept")
    model = ai_systems.create_model(db.session, name="m-audit")
    dataset = ai_systems.create_dataset(db.session, name="d-audit")
    ai_systems.link_control(db.session, system.id, control.id)
    ai_systems.link_model(db.session, system.id, model.id)
    db.session.commit()

    html = client.get(f"/ai-systems/{system.id}").get_data(as_text=True)
    for absent in ("Unlink", "Add standard AI checks", f"/ai-systems/{system.id}/edit",
                   f"/ai-systems/{system.id}/delete", "Link a model", "Link a control", "Link existing evidence"):
        assert absent not in html, absent
    assert "See the classification" in html
    listing = client.get("/ai-systems").get_data(as_text=True)
    assert "/ai-systems/new" not in listing
    assert "/ai-systems/models/new" not in client.get("/ai-systems/models").get_data(as_text=True)
    assert f"/ai-systems/models/{model.id}/edit" not in client.get("/ai-systems/models").get_data(as_text=True)

    token = _token(client, csrf_token)
    sid = system.id
    refused = [
        ("GET", "/ai-systems/new"), ("POST", "/ai-systems/new"), ("GET", f"/ai-systems/{sid}/edit"),
        ("POST", f"/ai-systems/{sid}/edit"), ("GET", f"/ai-systems/{sid}/delete"),
        ("POST", f"/ai-systems/{sid}/delete"),
        ("GET", f"/ai-systems/{sid}/controls/candidates"), ("POST", f"/ai-systems/{sid}/controls"),
        ("POST", f"/ai-systems/{sid}/controls/{control.id}/unlink"), ("POST", f"/ai-systems/{sid}/models"),
        ("POST", f"/ai-systems/{sid}/models/{model.id}/unlink"), ("POST", f"/ai-systems/{sid}/datasets"),
        ("POST", f"/ai-systems/{sid}/datasets/{dataset.id}/unlink"),
        ("GET", f"/ai-systems/{sid}/evidence/candidates"), ("POST", f"/ai-systems/{sid}/evidence"),
        ("POST", f"/ai-systems/{sid}/evidence/{uuid.uuid4()}/unlink"), ("POST", f"/ai-systems/{sid}/checks"),
        ("GET", "/ai-systems/models/new"), ("POST", "/ai-systems/models/new"),
        ("GET", f"/ai-systems/models/{model.id}/edit"), ("POST", f"/ai-systems/models/{model.id}/edit"),
        ("POST", f"/ai-systems/models/{model.id}/delete"), ("GET", "/ai-systems/datasets/new"),
        ("POST", "/ai-systems/datasets/new"), ("GET", f"/ai-systems/datasets/{dataset.id}/edit"),
        ("POST", f"/ai-systems/datasets/{dataset.id}/edit"), ("POST", f"/ai-systems/datasets/{dataset.id}/delete"),
    ]
    for method, url in refused:
        response = client.open(url, method=method, data={"csrf_token": token, "name": "x", "model_id": str(model.id)}
                               if method == "POST" else None)
        assert response.status_code == 403, (method, url)
    db.session.expire_all()
    assert ai_systems.get_system(db.session, sid) is not None
    assert [m.id for m in db.session.get(AISystem, sid).models] == [model.id]  # type: ignore[union-attr]
    assert _entries("access.denied")


# --- the system form -----------------------------------------------------------------------------


def test_an_engineer_registers_and_edits_a_system(client: FlaskClient, login_as: Any, csrf_token: Any,
                                                  make_user: Any) -> None:
    engineer = login_as("engineer")
    overseer = make_user("compliance_officer")
    token = _token(client, csrf_token, "/ai-systems/new")
    new_page = client.get("/ai-systems/new").get_data(as_text=True)
    assert re.search(rf'<option selected value="{engineer.id}">|<option value="{engineer.id}" selected', new_page)

    created = client.post("/ai-systems/new", data=_form_data(token, owner_id=str(engineer.id),
                                                             oversight_owner_id=str(overseer.id)))
    assert created.status_code == 303
    system = db.session.scalars(select(AISystem).where(AISystem.name == "Ticket triage")).one()
    assert created.headers["Location"] == f"/ai-systems/{system.id}"
    assert system.owner_id == engineer.id and system.oversight_owner_id == overseer.id
    assert system.data_categories == ["ticket text", "customer email", "product names"]
    assert system.deployment_regions == ["DE", "FR"]
    assert system.lifecycle_stage == AILifecycleStage.DEVELOPMENT and system.eu_role == AIActRole.DEPLOYER
    assert system.next_review_date is not None and system.next_review_date.isoformat() == "2027-03-31"
    assert system.provider_name == "Acme AI GmbH" and system.instructions_url == "https://acme.example/manual"
    [entry] = _entries("ai_system.create", system.id)
    assert entry.actor_id == engineer.id and entry.details["after"]["name"] == "Ticket triage"
    page = client.get(created.headers["Location"]).get_data(as_text=True)
    assert "AI system “Ticket triage” registered." in page
    assert "ticket text, customer email, product names" in page

    edit = client.get(f"/ai-systems/{system.id}/edit").get_data(as_text=True)
    assert "ticket text\ncustomer email\nproduct names</textarea>" in edit
    assert 'value="2027-03-31"' in edit
    saved = client.post(f"/ai-systems/{system.id}/edit",
                        data=_form_data(token, owner_id=str(engineer.id), oversight_owner_id=str(overseer.id),
                                        lifecycle_stage="validation", business_unit="Support operations"))
    assert saved.status_code == 303 and saved.headers["Location"] == f"/ai-systems/{system.id}"
    db.session.expire_all()
    fresh = db.session.get(AISystem, system.id)
    assert fresh is not None and fresh.lifecycle_stage == AILifecycleStage.VALIDATION
    [change] = _entries("ai_system.update", system.id)
    assert change.details["before"] == {"lifecycle_stage": "development", "business_unit": "Customer care"}
    assert change.details["after"] == {"lifecycle_stage": "validation", "business_unit": "Support operations"}
    # An engineer does not delete systems.
    assert client.post(f"/ai-systems/{system.id}/delete", data={"csrf_token": token}).status_code == 403


def test_validation_errors_appear_beside_the_field_and_keep_what_was_typed(
        client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    login_as("compliance_officer")
    token = _token(client, csrf_token, "/ai-systems/new")

    missing = client.post("/ai-systems/new", data=_form_data(token, name="  "))
    assert missing.status_code == 422
    html = missing.get_data(as_text=True)
    assert _field_error(html, "name") == "Enter the name."
    assert 'aria-invalid="true"' in html and 'aria-describedby="name-error"' in html
    assert "Sorts support tickets by urgency.</textarea>" in html
    assert "ticket text, customer email\nproduct names</textarea>" in html  # typed, not re-formatted
    assert 'value="2027-03-31"' in html and 'value="https://acme.example/manual"' in html
    assert re.search(r'<option selected value="development">|<option value="development" selected', html)

    bad_date = client.post("/ai-systems/new", data=_form_data(token, next_review_date="31/03/2027"))
    assert bad_date.status_code == 422
    assert "YYYY-MM-DD" in (_field_error(bad_date.get_data(as_text=True), "next_review_date") or "")
    assert 'value="31/03/2027"' in bad_date.get_data(as_text=True)

    bad_url = client.post("/ai-systems/new", data=_form_data(token, instructions_url="javascript:alert(1)"))
    assert bad_url.status_code == 422
    assert "https://" in (_field_error(bad_url.get_data(as_text=True), "instructions_url") or "")

    _system("Ticket triage")
    taken = client.post("/ai-systems/new", data=_form_data(token))
    assert taken.status_code == 422
    assert "already exists" in (_field_error(taken.get_data(as_text=True), "name") or "")
    assert db.session.scalars(select(AISystem).where(AISystem.name == "Ticket triage")).all().__len__() == 1
    assert client.post(f"/ai-systems/{uuid.uuid4()}/edit", data=_form_data(token)).status_code == 404


def test_a_compliance_officer_deletes_a_system_after_confirming(client: FlaskClient, login_as: Any,
                                                                csrf_token: Any) -> None:
    login_as("compliance_officer")
    system = _system("Retired scorer")
    confirm = client.get(f"/ai-systems/{system.id}/delete")
    assert confirm.status_code == 200
    assert "Delete Retired scorer?" in confirm.get_data(as_text=True)
    token = str(csrf_token(confirm.get_data(as_text=True)))
    response = client.post(f"/ai-systems/{system.id}/delete", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/ai-systems"
    listing = client.get("/ai-systems").get_data(as_text=True)
    assert "AI system “Retired scorer” deleted." in listing and str(system.id) not in _ids(listing)
    assert client.get(f"/ai-systems/{system.id}").status_code == 404
    db.session.expire_all()
    row = db.session.scalars(select(AISystem).where(AISystem.id == system.id)
                             .execution_options(include_deleted=True)).one()
    assert row.deleted_at is not None
    assert _entries("ai_system.delete", system.id)


# --- the list and the export ---------------------------------------------------------------------


def test_filters_narrow_the_list_with_and_without_htmx(client: FlaskClient, login_as: Any, make_user: Any) -> None:
    me = login_as("engineer")
    other = make_user("engineer")
    high = _system("Credit scoring", risk=AIRiskClass.HIGH, lifecycle_stage="production", owner_id=me.id)
    minimal = _system("Spam filter", risk=AIRiskClass.MINIMAL, lifecycle_stage="production", owner_id=other.id)
    fresh = _system("Meeting summariser", lifecycle_stage="idea", owner_id=me.id,
                    purpose="Summarises meeting transcripts.")
    everyone = {str(high.id), str(minimal.id), str(fresh.id)}

    assert everyone <= _ids(client.get("/ai-systems").get_data(as_text=True))
    cases = [
        ({"risk_class": "high"}, {high.id}), ({"risk_class": "unclassified"}, {fresh.id}),
        ({"stage": "production"}, {high.id, minimal.id}), ({"owner_id": str(other.id)}, {minimal.id}),
        ({"q": "transcripts"}, {fresh.id}), ({"q": "spam"}, {minimal.id}),
        ({"flagged": "yes"}, {high.id}), ({"stage": "production", "owner_id": str(me.id)}, {high.id}),
    ]
    for args, expected in cases:
        html = client.get("/ai-systems", query_string=args).get_data(as_text=True)
        assert _ids(html) & everyone == {str(i) for i in expected}, args

    # htmx gets only the results (same URL, same filters), which carry the export link for them.
    fragment = client.get("/ai-systems", query_string={"risk_class": "minimal"}, headers=HX)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="ai-system-results" aria-live="polite">') and "<html" not in body
    assert _ids(body) & everyone == {str(minimal.id)}
    assert 'href="/ai-systems/export.csv?risk_class=minimal"' in body
    # The form keeps the chosen filters; a bad one is refused beside its field.
    page = client.get("/ai-systems", query_string={"stage": "production"}).get_data(as_text=True)
    assert re.search(r'<option value="production" selected>', page)
    bad = client.get("/ai-systems", query_string={"stage": "launched"})
    assert bad.status_code == 422
    assert re.search(r'<p class="field-error" id="filter-stage-error" role="alert">Choose ', bad.get_data(as_text=True))


def test_the_csv_export_streams_the_filtered_set_neutralised_and_is_audited(client: FlaskClient,
                                                                            login_as: Any) -> None:
    auditor = login_as("auditor")
    evil = _system("=HYPERLINK(\"http://evil\")", lifecycle_stage="production", purpose="+cmd|' /C calc'!A0",
                   data_categories=["health", "-1"])
    plain = _system("Fraud detector", lifecycle_stage="production", risk=AIRiskClass.HIGH)
    _system("Not exported", lifecycle_stage="idea")

    response = client.get("/ai-systems/export.csv", query_string={"stage": "production"})
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="ai-systems-')
    [started] = _entries("ai_system.export")
    assert started.actor_id == auditor.id and started.details["filters"] == {"stage": "production"}
    assert _entries("ai_system.export.finished") == []  # nothing sent yet

    text = "".join(c.decode() if isinstance(c, bytes) else c for c in response.response)
    response.close()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_COLUMNS)
    by_id = {r[0]: r for r in rows[1:]}
    assert set(by_id) == {str(evil.id), str(plain.id)}
    name, purpose, categories = (CSV_COLUMNS.index(c) for c in ("name", "purpose", "data_categories"))
    assert by_id[str(evil.id)][name] == "'=HYPERLINK(\"http://evil\")"
    assert by_id[str(evil.id)][purpose] == "'+cmd|' /C calc'!A0"
    assert by_id[str(plain.id)][CSV_COLUMNS.index("risk_class")] == "high"
    assert "High-risk without an approved impact assessment" in by_id[str(plain.id)][CSV_COLUMNS.index("flags")]
    assert by_id[str(evil.id)][categories] == "health; -1"
    [finished] = _entries("ai_system.export.finished")
    # The exporter's name, IP and user agent ride sealed beside the figures (docs/erasure.md).
    assert finished.details.pop("sealed").startswith("sealed:v1:")
    assert finished.details == {"rows": 2, "complete": True}
    assert finished.object_id == str(started.id) and finished.request_id == started.request_id

    bad = client.get("/ai-systems/export.csv", query_string={"risk_class": "extreme"})
    assert bad.status_code == 422 and "risk_class" in bad.get_data(as_text=True)
    assert "Content-Length" in bad.headers and len(_entries("ai_system.export")) == 1  # no export started


# --- the system page -----------------------------------------------------------------------------


def test_the_system_page_shows_the_risk_class_rationale_score_and_related_work(
        client: FlaskClient, login_as: Any, make_evidence: Any) -> None:
    user = login_as("compliance_officer")
    system = _system("Hiring screener", risk=AIRiskClass.HIGH, owner_id=user.id)
    db.session.add(AIClassification(
        system_id=system.id, version=1, questionnaire_version="2026.1", answers={"annex_iii_area": "employment"},
        role=AIActRole.DEPLOYER, result=AIRiskClass.HIGH, obligations=["high_deployer"], created_by_id=user.id,
        rationale=["It is used for recruitment or selection (Annex III, point 4(a)).",
                   "None of the Article 6(3) exceptions applies."]))
    expiring = make_evidence(user, name="Bias evaluation 2026", category="evaluation_report",
                             expires_on=(tasks.today() + timedelta(days=10)).isoformat())
    ai_systems.link_evidence(db.session, system.id, expiring.id)
    probe = Probe(name=f"AI probe {uuid.uuid4().hex[:6]}", kind="manual_attestation", ai_system_id=system.id)
    db.session.add(probe)
    db.session.commit()
    task = tasks.create(db.session, title="Write the model card", probe_id=probe.id)
    db.session.commit()
    check = _a_check(probe)
    alert = alerts.raise_alert(db.session, rule=alerts.CHECK_FAILING, subject_type="check", subject_id=check.id,
                               title="Model card is missing", severity=Severity.HIGH)
    db.session.commit()

    html = client.get(f"/ai-systems/{system.id}").get_data(as_text=True)
    assert re.search(r'id="system-risk-class">High risk</span>', html)
    assert "It is used for recruitment or selection (Annex III, point 4(a))." in html
    assert "None of the Article 6(3) exceptions applies." in html
    assert "Classify again" in html
    assert "A high-risk system needs an approved impact assessment." in html
    assert re.search(r'<span class="status-badge flag-badge">High-risk without an approved impact assessment</span>',
                     html)
    assert re.search(r'id="system-score-value">\s*Not scored yet', html)
    assert ai_systems.system_score(db.session, system.id).value is None
    expiring_section = html[html.index('id="system-expiring"'):]
    assert "Bias evaluation 2026" in expiring_section and "Evaluation report" in expiring_section
    assert f'href="/tasks/{task.id}"' in html and "Write the model card" in html
    assert f'href="/alerts/{alert.id}"' in html and "Model card is missing" in html
    assert f'href="/probes/{probe.id}"' in html


def _a_check(probe: Probe) -> Check:
    from governance.models.frameworks import Control, Framework

    framework = Framework(title=f"F {uuid.uuid4().hex[:6]}", version="1")
    db.session.add(framework)
    db.session.flush()
    control = Control(framework_id=framework.id, ref_id="X-1", title="Something is done")
    db.session.add(control)
    db.session.flush()
    check = Check(probe_id=probe.id, control_id=control.id, name="Model card present")
    db.session.add(check)
    db.session.commit()
    return check


# --- links ---------------------------------------------------------------------------------------


def test_linking_and_unlinking_a_control_swaps_the_section_and_is_audited(
        client: FlaskClient, login_as: Any, csrf_token: Any, make_control: Any) -> None:
    login_as("engineer")
    system = _system("Chat assistant")
    control = make_control("GOV-7.3", "Third-party model risks are managed")
    classified = make_control("Article 50(1)", "People are told they interact with an AI system")
    db.session.add(AISystemControl(system_id=system.id, control_id=classified.id, origin="classification",
                                   reason="transparency_interaction"))
    db.session.commit()
    token = _token(client, csrf_token, f"/ai-systems/{system.id}")

    found = client.get(f"/ai-systems/{system.id}/controls/candidates", query_string={"control_q": "GOV-7"}, headers=HX)
    assert found.status_code == 200
    hits = found.get_data(as_text=True)
    assert hits.lstrip().startswith('<div id="system-control-candidates"')
    assert f'name="control_id" value="{control.id}"' in hits and "GOV-7.3" in hits

    linked = client.post(f"/ai-systems/{system.id}/controls", data={"control_id": str(control.id)},
                         headers={**HX, "X-CSRFToken": token})
    assert linked.status_code == 200
    body = linked.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="system-controls"')
    assert "Linked GOV-7.3 Third-party model risks are managed." in body
    manual = body[body.index('id="system-controls-manual"'):]
    assert f'/ai-systems/{system.id}/controls/{control.id}/unlink' in manual
    from_classification = body[body.index('id="system-controls-classification"'):body.index("Linked by hand")]
    assert "Article 50(1)" in from_classification
    assert escape(ai_act.OBLIGATION_LABELS["transparency_interaction"]) in from_classification
    assert 'id="system-score" ' in body and 'hx-swap-oob="true"' in body  # the score follows out of band
    assert re.search(r'Applicable controls</dt><dd>2<', body)
    rows = db.session.scalars(select(AISystemControl).where(AISystemControl.system_id == system.id,
                                                            AISystemControl.control_id == control.id)).all()
    assert [r.origin for r in rows] == ["manual"]
    [entry] = _entries("ai_system.link_control", system.id)
    assert entry.details["control_id"] == str(control.id)

    refused = client.post(f"/ai-systems/{system.id}/controls/{classified.id}/unlink",
                          headers={**HX, "X-CSRFToken": token})
    assert refused.status_code == 422
    assert "classification" in refused.get_data(as_text=True) and 'role="alert"' in refused.get_data(as_text=True)

    unlinked = client.post(f"/ai-systems/{system.id}/controls/{control.id}/unlink", data={"csrf_token": token})
    assert unlinked.status_code == 303
    assert unlinked.headers["Location"] == f"/ai-systems/{system.id}#system-controls"
    assert db.session.scalars(select(AISystemControl).where(AISystemControl.control_id == control.id)).all() == []
    assert _entries("ai_system.unlink_control", system.id)
    assert client.post(f"/ai-systems/{system.id}/controls", data={"csrf_token": token, "control_id": "nope"}
                       ).status_code == 422


def test_linking_and_unlinking_models_and_datasets(client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    login_as("engineer")
    system = _system("Document reader")
    model = ai_systems.create_model(db.session, name="ocr-large", version="3.1", approval_status="blocked")
    dataset = ai_systems.create_dataset(db.session, name="Invoices 2024", personal_data=True)
    db.session.commit()
    token = _token(client, csrf_token, f"/ai-systems/{system.id}")
    page = client.get(f"/ai-systems/{system.id}").get_data(as_text=True)
    assert f'<option value="{model.id}">ocr-large 3.1 (Blocked)</option>' in page

    linked = client.post(f"/ai-systems/{system.id}/models", data={"model_id": str(model.id)},
                         headers={**HX, "X-CSRFToken": token})
    assert linked.status_code == 200
    body = linked.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="system-models"') and f'id="system-model-{model.id}"' in body
    # The new flag follows out of band.
    assert re.search(r'<div id="system-flags"[^>]*hx-swap-oob="true"[^>]*>.*Uses a blocked model', body, re.S)
    assert _entries("ai_system.link_model", system.id)

    with_dataset = client.post(f"/ai-systems/{system.id}/datasets", data={"dataset_id": str(dataset.id),
                                                                          "csrf_token": token})
    assert with_dataset.status_code == 303
    assert with_dataset.headers["Location"] == f"/ai-systems/{system.id}#system-datasets"
    page = client.get(with_dataset.headers["Location"]).get_data(as_text=True)
    assert "Linked Invoices 2024." in page and f'id="system-dataset-{dataset.id}"' in page
    assert _entries("ai_system.link_dataset", system.id)

    # A model in use cannot be deleted: the reason shows on its page.
    login = client.post(f"/ai-systems/models/{model.id}/delete", data={"csrf_token": token})
    assert login.status_code == 403  # engineers do not delete

    for kind, item in (("models", model), ("datasets", dataset)):
        gone = client.post(f"/ai-systems/{system.id}/{kind}/{item.id}/unlink", headers={**HX, "X-CSRFToken": token})
        assert gone.status_code == 200
        assert f"id=\"system-{kind[:-1]}-{item.id}\"" not in gone.get_data(as_text=True)
    db.session.expire_all()
    fresh = db.session.get(AISystem, system.id)
    assert fresh is not None and fresh.models == [] and fresh.datasets == []
    assert _entries("ai_system.unlink_model", system.id) and _entries("ai_system.unlink_dataset", system.id)
    assert client.post(f"/ai-systems/{system.id}/models", data={"csrf_token": token}).status_code == 422


def test_linking_and_unlinking_evidence_shows_its_category(client: FlaskClient, login_as: Any, csrf_token: Any,
                                                           make_evidence: Any) -> None:
    user = login_as("engineer")
    system = _system("Voice bot")
    card = make_evidence(user, name="Voice bot model card", category="model_card")
    make_evidence(user, name="Unrelated access review")
    token = _token(client, csrf_token, f"/ai-systems/{system.id}")

    found = client.get(f"/ai-systems/{system.id}/evidence/candidates", query_string={"evidence_q": "model card"},
                       headers=HX).get_data(as_text=True)
    assert found.lstrip().startswith('<div id="system-evidence-candidates"')
    assert f'value="{card.id}"' in found and "Unrelated access review" not in found and "Model card" in found
    # Without JavaScript the search comes back as the page with the hits.
    plain = client.get(f"/ai-systems/{system.id}/evidence/candidates", query_string={"evidence_q": "voice"})
    assert plain.status_code == 200 and "<html" in plain.get_data(as_text=True)
    assert f'value="{card.id}"' in plain.get_data(as_text=True)

    linked = client.post(f"/ai-systems/{system.id}/evidence", data={"evidence_id": str(card.id)},
                         headers={**HX, "X-CSRFToken": token})
    assert linked.status_code == 200
    body = linked.get_data(as_text=True)
    assert re.search(rf'id="system-evidence-{card.id}">.*?Voice bot model card.*?'
                     r'<span class="link-type">Model card</span>', body, re.S)
    link = db.session.scalars(select(EvidenceLink).where(EvidenceLink.ai_system_id == system.id)).one()
    assert link.evidence_id == card.id and link.linked_by_id == user.id
    [entry] = _entries("ai_system.link_evidence", system.id)
    assert entry.details["category"] == EvidenceCategory.MODEL_CARD.value

    gone = client.post(f"/ai-systems/{system.id}/evidence/{card.id}/unlink", headers={**HX, "X-CSRFToken": token})
    assert gone.status_code == 200 and f'id="system-evidence-{card.id}"' not in gone.get_data(as_text=True)
    assert db.session.scalars(select(EvidenceLink).where(EvidenceLink.ai_system_id == system.id)).all() == []
    assert _entries("ai_system.unlink_evidence", system.id)


def test_adding_the_standard_ai_checks_makes_one_probe_for_the_system(client: FlaskClient, login_as: Any,
                                                                       csrf_token: Any) -> None:
    login_as("engineer")
    system = _system("Loan advisor")
    token = _token(client, csrf_token, f"/ai-systems/{system.id}")
    response = client.post(f"/ai-systems/{system.id}/checks", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    probe = db.session.scalars(select(Probe).where(Probe.ai_system_id == system.id)).one()
    assert body.lstrip().startswith('<section id="system-probes"')
    assert f'href="/probes/{probe.id}"' in body and f"The standard AI checks are in “{probe.name}”." in body
    assert len(db.session.scalars(select(Check).where(Check.probe_id == probe.id)).all()) == 4
    assert _entries("ai_system.add_checks", system.id)
    again = client.post(f"/ai-systems/{system.id}/checks", data={"csrf_token": token})
    assert again.status_code == 303
    assert len(db.session.scalars(select(Probe).where(Probe.ai_system_id == system.id)).all()) == 1


# --- models and datasets -------------------------------------------------------------------------


def test_models_and_datasets_are_created_edited_and_deleted_through_their_forms(
        client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    login_as("compliance_officer")
    token = _token(client, csrf_token, "/ai-systems/models/new")
    created = client.post("/ai-systems/models/new", data={
        "csrf_token": token, "name": "whisper", "version": "v3", "provider": "OpenAI", "license": "MIT",
        "approval_status": "restricted", "notes": ""})
    assert created.status_code == 303 and created.headers["Location"] == "/ai-systems/models"
    model = db.session.scalars(select(AIModel).where(AIModel.name == "whisper")).one()
    assert model.approval_status == AIModelApproval.RESTRICTED and model.license == "MIT"
    assert _entries("ai_model.create")
    twin = client.post("/ai-systems/models/new", data={"csrf_token": token, "name": "whisper", "version": "v3",
                                                       "approval_status": "pending", "provider": "Someone"})
    assert twin.status_code == 422
    html = twin.get_data(as_text=True)
    assert "already exists" in (_field_error(html, "name") or "") and 'value="Someone"' in html
    bad = client.post(f"/ai-systems/models/{model.id}/edit", data={"csrf_token": token, "name": "whisper",
                                                                   "version": "v3", "approval_status": "maybe"})
    assert bad.status_code == 422 and _field_error(bad.get_data(as_text=True), "approval_status")
    edited = client.post(f"/ai-systems/models/{model.id}/edit", data={
        "csrf_token": token, "name": "whisper", "version": "v3", "approval_status": "approved"})
    assert edited.status_code == 303
    db.session.expire_all()
    assert db.session.get(AIModel, model.id).approval_status == AIModelApproval.APPROVED  # type: ignore[union-attr]

    made = client.post("/ai-systems/datasets/new", data={"csrf_token": token, "name": "Call recordings",
                                                         "source": "Contact centre", "personal_data": "yes"})
    assert made.status_code == 303
    dataset = db.session.scalars(select(Dataset).where(Dataset.name == "Call recordings")).one()
    assert dataset.personal_data is True
    edit = client.get(f"/ai-systems/datasets/{dataset.id}/edit").get_data(as_text=True)
    assert re.search(r'<option selected value="yes">|<option value="yes" selected', edit)

    system = _system("Call summariser")
    ai_systems.link_model(db.session, system.id, model.id)
    ai_systems.link_dataset(db.session, system.id, dataset.id)
    db.session.commit()
    in_use = client.post(f"/ai-systems/datasets/{dataset.id}/delete", data={"csrf_token": token})
    assert in_use.status_code == 422 and "Call summariser" in in_use.get_data(as_text=True)
    assert client.post(f"/ai-systems/models/{model.id}/delete", data={"csrf_token": token}).status_code == 422
    ai_systems.unlink_model(db.session, system.id, model.id)
    db.session.commit()
    deleted = client.post(f"/ai-systems/models/{model.id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303
    db.session.expire_all()
    assert ai_systems.get_model(db.session, model.id) is None
    assert _entries("ai_model.delete")


# --- CSRF ----------------------------------------------------------------------------------------


def test_every_change_needs_the_csrf_token(client: FlaskClient, login_as: Any, make_control: Any) -> None:
    login_as("admin")
    system = _system("Protected")
    control = make_control("CS-1", "A control")
    model = ai_systems.create_model(db.session, name="m-csrf")
    db.session.commit()
    for path, data in (("/ai-systems/new", {"name": "Forged", "purpose": "x"}),
                       (f"/ai-systems/{system.id}/edit", {"name": "Renamed", "purpose": "x"}),
                       (f"/ai-systems/{system.id}/delete", {}),
                       (f"/ai-systems/{system.id}/controls", {"control_id": str(control.id)}),
                       (f"/ai-systems/{system.id}/models", {"model_id": str(model.id)}),
                       (f"/ai-systems/{system.id}/checks", {}),
                       ("/ai-systems/models/new", {"name": "forged-model"})):
        for headers in (HX, {}):
            response = client.post(path, data=data, headers=headers)
            assert response.status_code == 400, (path, headers)
    db.session.expire_all()
    fresh = db.session.get(AISystem, system.id)
    assert fresh is not None and fresh.name == "Protected" and fresh.deleted_at is None and fresh.models == []
    assert db.session.scalars(select(AISystem).where(AISystem.name == "Forged")).first() is None
    assert db.session.scalars(select(AISystemControl).where(AISystemControl.system_id == system.id)).all() == []
    assert db.session.scalars(select(Probe).where(Probe.ai_system_id == system.id)).all() == []


# --- bounded statements --------------------------------------------------------------------------


def _page_statements(client: FlaskClient, url: str) -> int:
    client.get(url)  # warm: the rules and anything cached per process
    with count_statements() as statements:
        assert client.get(url).status_code == 200
    return len(statements)


def test_the_list_and_the_system_page_run_the_same_statements_whatever_the_row_count(
        client: FlaskClient, login_as: Any, make_control: Any, make_evidence: Any) -> None:
    user = login_as("admin")
    system = _system("Counted", owner_id=user.id, oversight_owner_id=user.id, risk=AIRiskClass.HIGH)

    def add(n: int) -> None:
        for _ in range(n):
            tag = uuid.uuid4().hex[:6]
            model = ai_systems.create_model(db.session, name=f"model-{tag}")
            dataset = ai_systems.create_dataset(db.session, name=f"dataset-{tag}")
            control = make_control(f"C-{tag}", "A control")
            evidence = make_evidence(user, name=f"Card {tag}", category="model_card",
                                     expires_on=(tasks.today() + timedelta(days=5)).isoformat())
            ai_systems.link_model(db.session, system.id, model.id)
            ai_systems.link_dataset(db.session, system.id, dataset.id)
            ai_systems.link_control(db.session, system.id, control.id)
            ai_systems.link_evidence(db.session, system.id, evidence.id)
            tasks.create(db.session, title=f"Task {tag}").ai_system_id = system.id
            _system(f"Listed {tag}", owner_id=user.id, risk=AIRiskClass.HIGH)
        db.session.commit()

    add(1)
    few_detail = _page_statements(client, f"/ai-systems/{system.id}")
    few_list = _page_statements(client, "/ai-systems")
    add(5)
    assert _page_statements(client, f"/ai-systems/{system.id}") == few_detail
    assert _page_statements(client, "/ai-systems") == few_list
    html = client.get(f"/ai-systems/{system.id}").get_data(as_text=True)
    assert html.count('id="system-model-') == 6 and html.count('id="system-evidence-') >= 6
    assert html.count('id="system-task-') == 6 and html.count('<li id="system-expiring-') == 6
