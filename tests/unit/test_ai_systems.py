"""The AI inventory (governance.services.ai_systems): validation with messages a person can act on,
audited changes, re-classification on a role change, models and datasets, links, the filtered list
and its CSV export, the system score's applicability (the dashboard's formula over the system's
controls and checks), alerts and tasks, flags and the EU AI Act register view."""

from __future__ import annotations

import csv
import io
import types
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from governance import context
from governance.models.ai import AISystem, AISystemControl, ImpactAssessment
from governance.models.audit import Alert, AuditLog
from governance.models.enums import (
    AIActRole,
    AILifecycleStage,
    AIModelApproval,
    AIRiskClass,
    AlertStatus,
    AssessmentStatus,
    CheckStatus,
    ResultOutcome,
    Severity,
    TaskStatus,
)
from governance.models.frameworks import Control, Framework
from governance.models.probes import Check, CheckControl, Probe
from governance.models.tasks import Task
from governance.services import ai_systems, alerts, libraries, scoring, tasks
from governance.services.ai_systems import AIInventoryError
from tests.conftest import count_statements

C, P, N, E, NA = (ResultOutcome.COMPLIANT, ResultOutcome.PARTIAL, ResultOutcome.NON_COMPLIANT,
                  ResultOutcome.ERROR, ResultOutcome.NOT_APPLICABLE)


def _acting(user: Any) -> Any:
    return context.acting_as(context.ActionContext(actor_id=user.id, actor_name=user.email))


def _entries(session: Session, object_type: str, object_id: Any, action: str | None = None) -> list[AuditLog]:
    stmt = select(AuditLog).where(AuditLog.object_type == object_type, AuditLog.object_id == str(object_id))
    if action is not None:
        stmt = stmt.where(AuditLog.action == action)
    return list(session.scalars(stmt.order_by(AuditLog.seq)))


def _system(session: Session, name: str = "Credit scoring", **fields: Any) -> AISystem:
    fields.setdefault("purpose", "Scores consumer credit applications.")
    return ai_systems.create_system(session, name=name, **fields)


def _refused(field: str | None, words: str, call: Any, *args: Any, **kwargs: Any) -> AIInventoryError:
    with pytest.raises(AIInventoryError) as err:
        call(*args, **kwargs)
    assert err.value.field == field, err.value.message
    assert words in err.value.message, err.value.message
    return err.value


def _eu_ai_act(session: Session) -> Framework:
    return libraries.load_library(session, "eu-ai-act").framework


def _control(session: Session, framework: Framework, ref_id: str) -> Control:
    return session.scalars(select(Control).where(Control.framework_id == framework.id,
                                                 Control.ref_id == ref_id)).one()


def _classified(session: Session, system: AISystem, controls: list[Control], *,
                risk: AIRiskClass = AIRiskClass.HIGH) -> None:
    """What a classification leaves behind (ai_act's own tests cover how it gets there)."""
    system.risk_class = risk
    for control in controls:
        session.add(AISystemControl(system_id=system.id, control_id=control.id, origin="classification",
                                    reason="high_deployer"))
    session.flush()


def _probe(session: Session, system: AISystem | None = None, owner: Any = None) -> Probe:
    probe = Probe(name=f"probe {uuid.uuid4().hex[:8]}", kind="manual_attestation",
                  ai_system_id=system.id if system is not None else None,
                  owner_id=owner.id if owner is not None else None)
    session.add(probe)
    session.flush()
    return probe


def _check(session: Session, probe: Probe, *controls: Control, outcome: ResultOutcome | None,
           status: CheckStatus = CheckStatus.ACTIVE, severity: Severity = Severity.MEDIUM) -> Check:
    check = Check(probe_id=probe.id, control_id=controls[0].id, name=uuid.uuid4().hex, last_outcome=outcome,
                  status=status, severity=severity)
    session.add(check)
    session.flush()
    for control in controls:
        session.add(CheckControl(check_id=check.id, control_id=control.id))
    session.flush()
    return check


# --- systems: validation and audit -----------------------------------------------------------------

def test_create_system_cleans_every_field_and_audits_it(db_session, make_user) -> None:
    owner, overseer = make_user("engineer"), make_user("compliance_officer")
    session = db_session()
    with _acting(owner):
        system = ai_systems.create_system(
            session, name="  Loan   triage ", purpose="  Sorts loan applications.\n", intended_use="Back office",
            owner_id=str(owner.id), business_unit="Retail", lifecycle_stage="development", eu_role="provider",
            autonomy_level="human_on_the_loop", human_oversight="A credit officer reviews every refusal.",
            oversight_owner_id=overseer.id, data_categories=[" financial ", "Financial", "identity", ""],
            deployment_regions="DE, FR\nde", next_review_date="2027-03-31", provider_name="Acme Bank",
            instructions_url="https://docs.example.org/loan-triage")
    assert system.name == "Loan triage" and system.purpose == "Sorts loan applications."
    assert system.data_categories == ["financial", "identity"] and system.deployment_regions == ["DE", "FR"]
    assert system.next_review_date == date(2027, 3, 31) and system.owner_id == owner.id
    assert system.lifecycle_stage == AILifecycleStage.DEVELOPMENT and system.eu_role == AIActRole.PROVIDER
    assert system.risk_class is None
    [entry] = _entries(session, "ai_system", system.id, "ai_system.create")
    assert entry.actor_id == owner.id
    assert entry.details["after"]["name"] == "Loan triage"
    assert entry.details["after"]["data_categories"] == ["financial", "identity"]
    assert entry.details["after"]["next_review_date"] == "2027-03-31"
    defaults = _system(session, "Chat assistant")
    assert (defaults.lifecycle_stage, defaults.eu_role) == (AILifecycleStage.IDEA, AIActRole.DEPLOYER)


def test_bad_input_is_refused_beside_its_field(db_session, make_user) -> None:
    session = db_session()
    gone = make_user("engineer")
    gone.is_active = False
    session.flush()
    create = ai_systems.create_system
    _refused("name", "Enter the name", create, session, purpose="x")
    _refused("name", "Enter the name", create, session, name="   ", purpose="x")
    _refused("purpose", "Enter the purpose", create, session, name="A")
    _refused("name", "255 characters", create, session, name="n" * 256, purpose="x")
    _refused("purpose", "10000 characters", create, session, name="A", purpose="p" * 10_001)
    _refused("lifecycle_stage", "idea, development, validation, production or retired", create, session,
             name="A", purpose="x", lifecycle_stage="live")
    _refused("eu_role", "provider, deployer, importer or distributor", create, session, name="A", purpose="x",
             eu_role="user")
    _refused("autonomy_level", "human in the loop", create, session, name="A", purpose="x", autonomy_level="full")
    _refused("owner_id", "Choose the owner from the list", create, session, name="A", purpose="x",
             owner_id="not-a-uuid")
    _refused("owner_id", "active user", create, session, name="A", purpose="x", owner_id=uuid.uuid4())
    _refused("oversight_owner_id", "active user", create, session, name="A", purpose="x",
             oversight_owner_id=gone.id)
    _refused("next_review_date", "YYYY-MM-DD", create, session, name="A", purpose="x", next_review_date="31/03/2027")
    _refused("instructions_url", "https://", create, session, name="A", purpose="x",
             instructions_url="javascript:alert(1)")
    _refused("data_categories", "as text", create, session, name="A", purpose="x", data_categories=["ok", 3])
    _refused("data_categories", "as a list", create, session, name="A", purpose="x", data_categories={"a": 1})
    _refused("data_categories", "at most 50", create, session, name="A", purpose="x",
             data_categories=[f"c{i}" for i in range(51)])
    _refused("deployment_regions", "64 characters", create, session, name="A", purpose="x",
             deployment_regions=["r" * 65])
    _refused("risk_class", "cannot be set here", create, session, name="A", purpose="x", risk_class="minimal")
    assert session.scalars(select(AISystem)).all() == []


def test_a_live_name_is_unique_and_a_deleted_ones_can_be_reused(db_session) -> None:
    session = db_session()
    first = _system(session, "Fraud detector")
    _refused("name", "An AI system named \u201cfraud DETECTOR\u201d already exists", ai_systems.create_system,
             session, name="fraud DETECTOR", purpose="x")
    other = _system(session, "Other")
    _refused("name", "already exists", ai_systems.update_system, session, other.id, name="Fraud detector")
    ai_systems.delete_system(session, first.id)
    assert ai_systems.get_system(session, first.id) is None
    again = _system(session, "Fraud detector")
    assert again.id != first.id and ai_systems.get_system(session, again.id) is again
    [entry] = _entries(session, "ai_system", first.id, "ai_system.delete")
    assert entry.details["before"] == {"name": "Fraud detector"}
    _refused("system", "does not exist", ai_systems.update_system, session, first.id, purpose="y")
    assert ai_systems.get_system(session, "nonsense") is None


def test_update_audits_only_what_changed(db_session, make_user) -> None:
    owner = make_user("engineer")
    session = db_session()
    system = _system(session, deployment_regions=["DE"])
    ai_systems.update_system(session, system.id, purpose="Scores consumer credit applications.",
                             deployment_regions=["DE"])
    assert _entries(session, "ai_system", system.id, "ai_system.update") == []
    ai_systems.update_system(session, system.id, owner_id=owner.id, deployment_regions=["DE", "AT"],
                             lifecycle_stage=AILifecycleStage.PRODUCTION, next_review_date=None)
    [entry] = _entries(session, "ai_system", system.id, "ai_system.update")
    assert entry.details["before"] == {"owner_id": None, "deployment_regions": ["DE"], "lifecycle_stage": "idea"}
    assert entry.details["after"] == {"owner_id": str(owner.id), "deployment_regions": ["DE", "AT"],
                                      "lifecycle_stage": "production"}
    _refused("eu_role", "provider, deployer", ai_systems.update_system, session, system.id, eu_role="owner")
    _refused("classified_at", "cannot be set here", ai_systems.update_system, session, system.id,
             classified_at=datetime.now(UTC))


def _path_to(result: AIRiskClass, role: AIActRole) -> dict[str, str]:
    """Answers that lead the questionnaire to `result`, found by walking it (options in order)."""
    from governance.services import ai_act

    def walk(answers: dict[str, str], depth: int) -> dict[str, str] | None:
        question = ai_act.next_question(answers, role=role)
        if question is None:
            return answers if ai_act.classify(answers, role).result == result else None
        if depth > 40:
            return None
        for value, _label in question.options:
            found = walk({**answers, question.id: value}, depth + 1)
            if found is not None:
                return found
        return None

    found = walk({}, 0)
    assert found is not None, f"no path to {result}"
    return found


def test_changing_the_role_re_runs_the_classification_for_the_new_role(db_session, make_user) -> None:
    from governance.services import ai_act

    engineer = make_user("engineer")
    session = db_session()
    with _acting(engineer):
        system = _system(session, eu_role="deployer")
        first = ai_act.save_classification(session, system.id, _path_to(AIRiskClass.HIGH, AIActRole.DEPLOYER))
        assert first.role == AIActRole.DEPLOYER and system.risk_class == AIRiskClass.HIGH
        ai_systems.update_system(session, system.id, eu_role="provider")
    newest = ai_act.latest(session, system.id)
    assert newest is not None and newest.version == first.version + 1
    assert newest.role == AIActRole.PROVIDER and newest.answers == first.answers
    assert set(newest.obligations) != set(first.obligations)
    [entry] = _entries(session, "ai_system", system.id, "ai_system.update")
    assert entry.details["before"] == {"eu_role": "deployer"} and entry.details["after"] == {"eu_role": "provider"}
    # Another change leaves the classification alone.
    ai_systems.update_system(session, system.id, business_unit="Risk")
    assert ai_act.latest(session, system.id).version == newest.version  # type: ignore[union-attr]


# --- models, datasets and links --------------------------------------------------------------------

def test_models_are_unique_by_name_and_version_and_cannot_go_while_used(db_session) -> None:
    session = db_session()
    model = ai_systems.create_model(session, name="gpt-x", version="4", provider="OpenAI", license="proprietary")
    assert model.approval_status == AIModelApproval.PENDING
    _refused("name", "The model \u201cGPT-X\u201d version 4 already exists", ai_systems.create_model, session,
             name="GPT-X", version="4")
    newer = ai_systems.create_model(session, name="gpt-x", version="5")
    _refused("approval_status", "pending, approved, restricted or blocked", ai_systems.update_model, session,
             model.id, approval_status="fine")
    _refused("name", "already exists", ai_systems.update_model, session, newer.id, version="4")
    ai_systems.update_model(session, model.id, approval_status="approved", notes="Reviewed by legal.")
    [entry] = _entries(session, "ai_model", model.id, "ai_model.update")
    assert entry.details["before"] == {"approval_status": "pending", "notes": None}
    assert entry.details["after"] == {"approval_status": "approved", "notes": "Reviewed by legal."}

    system = _system(session)
    ai_systems.link_model(session, system.id, model.id)
    ai_systems.link_model(session, system.id, model.id)  # once
    session.expire(system)
    assert [m.id for m in system.models] == [model.id]
    _refused("model", "used by \u201cCredit scoring\u201d", ai_systems.delete_model, session, model.id)
    assert ai_systems.unlink_model(session, system.id, model.id) is True
    assert ai_systems.unlink_model(session, system.id, model.id) is False
    ai_systems.delete_model(session, model.id)
    assert [m.id for m in ai_systems.list_models(session)] == [newer.id]
    assert [m.id for m in ai_systems.list_models(session, approval_status="pending", q="GPT")] == [newer.id]
    actions = [e.action for e in _entries(session, "ai_system", system.id)]
    assert actions == ["ai_system.create", "ai_system.link_model", "ai_system.unlink_model"]
    _refused("model_id", "does not exist", ai_systems.link_model, session, system.id, model.id)


def test_datasets_link_many_to_many(db_session) -> None:
    session = db_session()
    applications = ai_systems.create_dataset(session, name="Loan applications 2024", source="Core banking",
                                             personal_data="yes", license="internal")
    bureau = ai_systems.create_dataset(session, name="Bureau scores", personal_data=False)
    assert applications.personal_data is True and bureau.personal_data is False
    _refused("name", "A dataset named \u201cbureau scores\u201d already exists", ai_systems.create_dataset,
             session, name="bureau scores")
    _refused("personal_data", "yes or no", ai_systems.update_dataset, session, bureau.id, personal_data="maybe")
    one, two = _system(session, "One"), _system(session, "Two")
    for system in (one, two):
        ai_systems.link_dataset(session, system.id, applications.id)
    ai_systems.link_dataset(session, one.id, bureau.id)
    session.expire_all()
    assert [d.name for d in ai_systems.get_system(session, one.id).datasets] == [  # type: ignore[union-attr]
        "Bureau scores", "Loan applications 2024"]
    _refused("dataset", "used by \u201cOne\u201d, \u201cTwo\u201d: unlink it from them first",
             ai_systems.delete_dataset, session, applications.id)
    assert [d.id for d in ai_systems.list_datasets(session, personal_data=True)] == [applications.id]
    ai_systems.update_dataset(session, bureau.id, description="Scores from the credit bureau.")
    [entry] = _entries(session, "dataset", bureau.id, "dataset.update")
    assert entry.details["after"] == {"description": "Scores from the credit bureau."}


def test_controls_link_by_hand_beside_the_classification(db_session, make_control) -> None:
    session = db_session()
    fw = _eu_ai_act(session)
    article_9 = _control(session, fw, "Article 9(1)")
    iso = make_control("A.6.2.4", "AI system verification and validation")
    system = _system(session)
    _classified(session, system, [article_9])
    ai_systems.link_control(session, system.id, iso.id, reason="Validation is owned by the model team.")
    ai_systems.link_control(session, system.id, article_9.id)  # also by hand
    ai_systems.link_control(session, system.id, article_9.id)  # once
    rows = {row.control.ref_id: row for row in ai_systems.system_controls(session, system.id)}
    assert set(rows) == {"Article 9(1)", "A.6.2.4"}
    assert rows["Article 9(1)"].origins == ["classification", "manual"]
    assert rows["Article 9(1)"].reasons == ["high_deployer"]
    assert rows["A.6.2.4"].origins == ["manual"] and rows["A.6.2.4"].reasons == [
        "Validation is owned by the model team."]
    assert ai_systems.unlink_control(session, system.id, article_9.id) is True
    _refused("control_id", "because of the system's EU AI Act classification", ai_systems.unlink_control,
             session, system.id, article_9.id)
    assert ai_systems.unlink_control(session, system.id, iso.id) is True
    assert [r.control.ref_id for r in ai_systems.system_controls(session, system.id)] == ["Article 9(1)"]
    [entry] = _entries(session, "ai_system", system.id, "ai_system.link_control")[:1]
    assert entry.details["control"] == "A.6.2.4 AI system verification and validation"
    _refused("control_id", "does not exist", ai_systems.link_control, session, system.id, uuid.uuid4())


def test_evidence_links_and_expiring_evidence(db_session, make_user, make_evidence) -> None:
    engineer = make_user("engineer")
    session = db_session()
    system = _system(session)
    card = make_evidence(engineer, name="Model card v3")
    report = make_evidence(engineer, name="Evaluation report")
    stale = make_evidence(engineer, name="Data sheet 2023")
    unlinked = make_evidence(engineer, name="Not ours")
    now = datetime.now(UTC)
    card.expires_at, report.expires_at = now + timedelta(days=10), now + timedelta(days=90)
    stale.expires_at, unlinked.expires_at = now - timedelta(days=1), now + timedelta(days=1)
    session.flush()
    with _acting(engineer):
        for evidence in (card, report, stale):
            link = ai_systems.link_evidence(session, system.id, evidence.id, note="for the register")
        assert ai_systems.link_evidence(session, system.id, stale.id).id == link.id
    assert link.linked_by_id == engineer.id and link.ai_system_id == system.id
    assert [e.name for e in ai_systems.expiring_evidence(session, system.id)] == ["Data sheet 2023",
                                                                                    "Model card v3"]
    assert [e.name for e in ai_systems.expiring_evidence(session, system.id, days=120)][-1] == "Evaluation report"
    assert {e.id for e in ai_systems.system_evidence(session, system.id)} == {card.id, report.id, stale.id}
    assert ai_systems.unlink_evidence(session, system.id, card.id) is True
    assert ai_systems.unlink_evidence(session, system.id, card.id) is False
    assert [e.name for e in ai_systems.expiring_evidence(session, system.id)] == ["Data sheet 2023"]
    actions = [e.action for e in _entries(session, "ai_system", system.id)]
    assert actions.count("ai_system.link_evidence") == 3 and actions[-1] == "ai_system.unlink_evidence"
    _refused("evidence_id", "does not exist", ai_systems.link_evidence, session, system.id, uuid.uuid4())


# --- the list and the CSV export -------------------------------------------------------------------

def test_list_filters_by_risk_class_stage_owner_text_and_flags(db_session, make_user) -> None:
    alice, bob = make_user("engineer"), make_user("engineer")
    session = db_session()
    high = _system(session, "Hiring screener", purpose="Ranks job applicants.", owner_id=alice.id,
                   lifecycle_stage="production")
    limited = _system(session, "Support chatbot", purpose="Answers customer questions (100% online).",
                      owner_id=bob.id)
    _system(session, "Forecasting", purpose="Predicts demand.", owner_id=alice.id)
    high.risk_class, limited.risk_class = AIRiskClass.HIGH, AIRiskClass.LIMITED
    session.flush()

    def names(**kw: Any) -> list[str]:
        return [s.name for s in ai_systems.list_systems(session, **kw)]

    assert names() == ["Forecasting", "Hiring screener", "Support chatbot"]
    assert names(risk_class="high") == ["Hiring screener"]
    assert names(risk_class="unclassified") == ["Forecasting"]
    assert names(stage="production") == ["Hiring screener"]
    assert names(owner_id=str(alice.id)) == ["Forecasting", "Hiring screener"]
    assert names(q="APPLICANT") == ["Hiring screener"]
    assert names(q="100%") == ["Support chatbot"] and names(q="1%0") == [] and names(q="_") == []
    assert names(flagged=True) == ["Hiring screener"]
    assert names(flagged="0") == ["Forecasting", "Support chatbot"]
    page = ai_systems.list_systems(session, risk_class="")
    assert page.total == 3 and not page.has_more
    assert page.flags[high.id] == [ai_systems.HIGH_WITHOUT_ASSESSMENT, ai_systems.HIGH_WITHOUT_OVERSIGHT_OWNER]
    assert page[0].owner is not None and page[0].owner.id == alice.id
    first = ai_systems.list_systems(session, limit=2)
    assert [s.name for s in first] == ["Forecasting", "Hiring screener"] and first.has_more and first.total == 3
    second = ai_systems.list_systems(session, limit=2, offset=2)
    assert [s.name for s in second] == ["Support chatbot"] and not second.has_more and second.total == 3
    _refused("risk_class", "prohibited, high, limited or minimal", ai_systems.list_systems, session,
             risk_class="severe")
    _refused("stage", "idea, development", ai_systems.list_systems, session, stage="beta")
    _refused("owner_id", "Choose the owner", ai_systems.list_systems, session, owner_id="bob")
    _refused("flagged", "yes or no", ai_systems.list_systems, session, flagged="perhaps")
    # Two statements whatever the page holds (the rows with their owners and flags, the total).
    for i in range(5):
        _system(session, f"Extra {i}", owner_id=bob.id)
    with count_statements() as statements:
        page = ai_systems.list_systems(session, limit=3)
        [s.owner.email for s in page if s.owner is not None]
    assert len(statements) == 2


def test_csv_export_streams_rows_and_neutralises_formulas(db_session, make_user) -> None:
    owner = make_user("engineer")
    session = db_session()
    evil = _system(session, "=HYPERLINK(\"http://evil.example\")", purpose="+cmd|' /C calc'!A0",
                   intended_use="@SUM(1+1)", business_unit="-2", owner_id=owner.id,
                   data_categories=["health", "biometric"], next_review_date="2020-01-01")
    plain = _system(session, "Plain", purpose="Nothing, \"quoted\"\nand two lines.")
    model = ai_systems.create_model(session, name="bert", version="base")
    dataset = ai_systems.create_dataset(session, name="=cmd dataset")
    ai_systems.link_model(session, evil.id, model.id)
    ai_systems.link_dataset(session, evil.id, dataset.id)
    plain.risk_class = AIRiskClass.MINIMAL
    session.flush()

    chunks = ai_systems.iter_systems_csv(session)
    assert isinstance(chunks, types.GeneratorType)
    lines = list(chunks)
    assert lines[0] == ",".join(ai_systems.CSV_COLUMNS) + "\r\n"
    assert len(lines) == 3  # each string is one whole row
    rows = list(csv.DictReader(io.StringIO("".join(lines))))
    by_id = {row["id"]: row for row in rows}
    row = by_id[str(evil.id)]
    assert row["name"] == "'=HYPERLINK(\"http://evil.example\")"
    assert row["purpose"] == "'+cmd|' /C calc'!A0" and row["intended_use"] == "'@SUM(1+1)"
    assert row["business_unit"] == "'-2" and row["owner"] == owner.email
    assert row["data_categories"] == "health; biometric" and row["models"] == "bert base"
    assert row["datasets"] == "'=cmd dataset" and row["risk_class"] == ""
    assert row["next_review_date"] == "2020-01-01" and row["flags"] == ai_systems.REVIEW_OVERDUE
    assert by_id[str(plain.id)]["purpose"] == "Nothing, \"quoted\"\nand two lines."
    assert by_id[str(plain.id)]["risk_class"] == "minimal"
    only = list(csv.DictReader(io.StringIO("".join(ai_systems.iter_systems_csv(session, risk_class="minimal")))))
    assert [r["name"] for r in only] == ["Plain"]
    _refused("risk_class", "prohibited, high", ai_systems.iter_systems_csv, session, risk_class="bad")


# --- the score: applicability ----------------------------------------------------------------------

def test_the_score_counts_only_applicable_controls_and_this_systems_checks(db_session, make_control) -> None:
    session = db_session()
    fw = _eu_ai_act(session)
    article_9, article_14, article_26, article_50 = (
        _control(session, fw, ref) for ref in ("Article 9(1)", "Article 14(1)", "Article 26(2)", "Article 50(1)"))
    manual = make_control("GOV-7", "Model inventory is kept")
    system, other = _system(session, "Credit scoring"), _system(session, "Chatbot")
    _classified(session, system, [article_9, article_14, article_26])
    ai_systems.link_control(session, system.id, manual.id)
    _classified(session, other, [article_14, article_50], risk=AIRiskClass.LIMITED)
    assert ai_systems.system_score(session, system.id) == ai_systems.SystemScore(value=None, unassessed=4,
                                                                                 controls=4)

    shared, own, foreign = _probe(session), _probe(session, system), _probe(session, other)
    _check(session, own, article_9, outcome=C)             # applicable, this system's probe: counts
    _check(session, shared, article_14, outcome=N)         # applicable, no system's probe: counts
    _check(session, shared, manual, outcome=P)             # the manual link counts too
    _check(session, own, article_50, outcome=N)            # not applicable to this system: left out
    _check(session, foreign, article_14, outcome=C)        # another system's probe: left out
    _check(session, foreign, article_26, outcome=N)        # (so Article 26(2) stays unassessed)
    _check(session, own, article_26, outcome=C, status=CheckStatus.DISABLED)  # disabled: left out
    _check(session, own, article_9, outcome=E)             # error: counted apart
    score = ai_systems.system_score(session, system.id)
    assert score == ai_systems.SystemScore(value=Decimal("50.00"), compliant=1, partial=1, non_compliant=1,
                                           unassessed=1, error=1, not_applicable=0, controls=4)
    # The other system counts its own probe's check on Article 14(1) beside the shared one (a mean
    # of 0.5: partial), and not the check of this system's probe on Article 50(1).
    assert ai_systems.system_score(session, other.id) == ai_systems.SystemScore(
        value=Decimal("50.00"), partial=1, unassessed=1, controls=2)

    # The same formula as the dashboard: one framework holding the same controls and the same
    # counted checks scores the same.
    states = scoring.control_states(session, [article_9.id, article_14.id, article_26.id, manual.id],
                                    checks=ai_systems.counted_checks(system.id))
    totals = scoring.total(states.values())
    assert scoring.percentage(totals.weight_counted, totals.weighted_points) == score.value

    # Weights count as in the framework score.
    article_9.weight = Decimal("3")
    session.flush()
    assert ai_systems.system_score(session, system.id).value == Decimal("70.00")  # (3 + 0 + 0.5) / 5


def test_the_score_runs_two_statements_whatever_the_number_of_controls_and_checks(db_session) -> None:
    session = db_session()
    fw = _eu_ai_act(session)
    controls = list(session.scalars(select(Control).where(Control.framework_id == fw.id,
                                                          Control.assessable.is_(True)).order_by(Control.ref_id)))
    system = _system(session)
    probe = _probe(session, system)
    _classified(session, system, controls[:2])
    _check(session, probe, controls[0], outcome=C)
    with count_statements() as few:
        small = ai_systems.system_score(session, system.id)
    assert small.controls == 2
    _classified(session, system, controls[2:40])
    for i, control in enumerate(controls[:40]):
        _check(session, probe, control, outcome=(C, N, P)[i % 3])
        _check(session, _probe(session), control, outcome=C)
    with count_statements() as many:
        big = ai_systems.system_score(session, system.id)
    assert big.controls == 40 and big.compliant + big.partial + big.non_compliant == 40
    assert len(few) == len(many) == 2


def test_a_system_without_controls_has_no_score(db_session) -> None:
    session = db_session()
    system = _system(session)
    assert ai_systems.system_score(session, system.id) == ai_systems.SystemScore(value=None)


# --- alerts, tasks and flags -----------------------------------------------------------------------

def test_alerts_and_tasks_of_the_system(db_session, make_user, make_control) -> None:
    owner = make_user("engineer")
    session = db_session()
    control = make_control("AI-1")
    system, other = _system(session, "Mine"), _system(session, "Theirs")
    mine, theirs = _check(session, _probe(session, system, owner), control, outcome=N), \
        _check(session, _probe(session, other, owner), control, outcome=N)
    high = alerts.raise_alert(session, rule=alerts.CHECK_FAILING, subject_type="check", subject_id=mine.id,
                              title="Model card is missing", severity=Severity.HIGH, owner_id=owner.id)
    alerts.raise_alert(session, rule=alerts.CHECK_FAILING, subject_type="check", subject_id=theirs.id,
                       title="Theirs is failing", severity=Severity.HIGH, owner_id=owner.id)
    # No built-in rule is about a system yet: rows as a future rule would write them.
    about, resolved = (Alert(rule="ai_system.review", severity=Severity.LOW, status=status, title=title,
                             source_type="ai_system", source_id=str(system.id), dedup_key=f"{title}:{system.id}")
                       for status, title in ((AlertStatus.OPEN, "Review is due"), (AlertStatus.RESOLVED, "Old")))
    session.add_all([about, resolved])
    session.flush()
    assert {a.id for a in ai_systems.system_alerts(session, system.id)} == {high.id, about.id}

    # The high alert opened a task for the check's probe; a task may also name the system itself.
    [alert_task] = session.scalars(select(Task).where(Task.alert_id == high.id)).all()
    with _acting(owner):
        manual = tasks.create(session, title="Write the model card", due_date=tasks.today())
        done = tasks.create(session, title="Old work")
    manual.ai_system_id = done.ai_system_id = system.id
    session.flush()
    with _acting(owner):
        tasks.change_status(session, done.id, TaskStatus.DONE)
    # Soonest due first: the manual task is due today, the alert's after the high SLA (7 days).
    assert [t.id for t in ai_systems.system_tasks(session, system.id)] == [manual.id, alert_task.id]
    assert {t.id for t in ai_systems.system_tasks(session, system.id, include_closed=True)} == {
        manual.id, alert_task.id, done.id}
    [their_task] = ai_systems.system_tasks(session, other.id)
    assert their_task.probe_id == theirs.probe_id and their_task.status == TaskStatus.OPEN
    assert high.status == AlertStatus.OPEN


def test_flags_name_what_needs_attention(db_session, make_user) -> None:
    author, approver = make_user("engineer"), make_user("compliance_officer")
    session = db_session()
    system = _system(session, next_review_date=date.today() + timedelta(days=30))
    assert ai_systems.flags(session, system) == [] and not ai_systems.needs_assessment(system)
    system.risk_class = AIRiskClass.HIGH
    session.flush()
    assert ai_systems.needs_assessment(system)
    assert ai_systems.flags(session, system) == [ai_systems.HIGH_WITHOUT_ASSESSMENT,
                                                 ai_systems.HIGH_WITHOUT_OVERSIGHT_OWNER]
    ai_systems.update_system(session, system.id, oversight_owner_id=approver.id)
    blocked = ai_systems.create_model(session, name="old-model", approval_status="blocked")
    ai_systems.link_model(session, system.id, blocked.id)
    assert ai_systems.flags(session, system) == [ai_systems.HIGH_WITHOUT_ASSESSMENT, ai_systems.BLOCKED_MODEL]
    assert ai_systems.flags(session, system, on=date.today() + timedelta(days=31))[-1] == ai_systems.REVIEW_OVERDUE

    # A submitted assessment is not enough; an approved one clears the flag.
    assessment = ImpactAssessment(system_id=system.id, version=1, template_version="t", answers={},
                                  status=AssessmentStatus.SUBMITTED, created_by_id=author.id)
    session.add(assessment)
    session.flush()
    assert ai_systems.HIGH_WITHOUT_ASSESSMENT in ai_systems.flags(session, system)
    assessment.status, assessment.decided_by_id, assessment.decided_at = (
        AssessmentStatus.APPROVED, approver.id, datetime.now(UTC))
    session.flush()
    assert ai_systems.flags(session, system) == [ai_systems.BLOCKED_MODEL]
    system.risk_class = AIRiskClass.PROHIBITED
    session.flush()
    assert ai_systems.flags(session, system)[0].startswith("Classified as a prohibited practice")


# --- the EU AI Act register ------------------------------------------------------------------------

def test_the_register_lists_high_risk_systems_with_annex_viii_items(db_session, make_user) -> None:
    owner, approver = make_user("engineer"), make_user("compliance_officer")
    session = db_session()
    provided = _system(session, "Exam proctoring", purpose="Flags suspected cheating in online exams.",
                       eu_role="provider", owner_id=owner.id, lifecycle_stage="production")
    deployed = _system(session, "CV ranking", purpose="Ranks job applications.", eu_role="deployer",
                       owner_id=owner.id, business_unit="HR", provider_name="HireTech GmbH")
    minimal = _system(session, "Spam filter")
    gone = _system(session, "Retired high")
    for system in (provided, deployed, gone):
        system.risk_class = AIRiskClass.HIGH
    minimal.risk_class = AIRiskClass.MINIMAL
    session.flush()
    ai_systems.delete_system(session, gone.id)

    rows = {row.system.name: row for row in ai_systems.register_rows(session)}
    assert set(rows) == {"Exam proctoring", "CV ranking"}
    a = rows["Exam proctoring"]
    assert a.section == "A"
    items = {item.key: item for item in a.items}
    assert items["trade_name"].value == "Exam proctoring"
    assert items["trade_name"].ref == "Annex VIII, Section A, point 4"
    assert items["status"].value == "In service"
    assert a.missing == ["Provider's name and contact details", "Information used (data, inputs) and operating logic",
                         "Notified body's certificate (type, number, expiry, body)",
                         "Member States where it is placed on the market or in service",
                         "Electronic instructions for use", "EU database registration number"]
    ai_systems.update_system(session, provided.id, provider_name="Acme Exams BV", operating_logic="A CNN on webcam "
                             "frames.", data_categories=["biometric"], conformity_certificate="NB 1234 / 2027-12",
                             deployment_regions=["NL", "BE"], instructions_url="https://acme.example/ifu",
                             eu_database_id="EU-HR-000123")
    a = next(r for r in ai_systems.register_rows(session) if r.system.id == provided.id)
    assert a.missing == []
    items = {item.key: item for item in a.items}
    assert items["provider"].value == f"Acme Exams BV — {owner.name} <{owner.email}>"
    assert items["member_states"].value == "NL, BE"
    assert items["operating_logic"].value == "A CNN on webcam frames. — Data: biometric"

    c = rows["CV ranking"]
    assert c.section == "C"
    assert c.missing == ["The provider's entry in the EU database",
                         "Summary of the fundamental rights impact assessment (Article 27)",
                         "Summary of the data protection impact assessment (Article 26(9))"]
    answers = {"affected_persons": "Job applicants", "risks_of_harm": "Indirect discrimination by age.",
               "mitigation": "A recruiter reviews every rejection; applicants may appeal.",
               "residual_risk": "Low", "risk_acceptance": "The HR director accepts it",
               "dpia_reference": "DPIA-2027-04: acceptable with safeguards"}
    for version, status in ((1, AssessmentStatus.APPROVED), (2, AssessmentStatus.DRAFT)):
        session.add(ImpactAssessment(
            system_id=deployed.id, version=version, template_version="t", status=status,
            answers={**answers, "residual_risk": "Low" if version == 1 else "Draft: medium"},
            created_by_id=owner.id, decided_by_id=approver.id if version == 1 else None,
            decided_at=datetime.now(UTC) if version == 1 else None))
    session.flush()
    c = next(r for r in ai_systems.register_rows(session) if r.system.id == deployed.id)
    items = {item.key: item for item in c.items}
    assert c.missing == ["The provider's entry in the EU database"]
    summary = items["fria_summary"].value or ""
    assert summary.startswith("Version 1. People and groups affected: Job applicants.")
    assert "Residual risk: Low." in summary and "Draft" not in summary
    assert items["dpia_summary"].value == "DPIA-2027-04: acceptable with safeguards"
    assert items["deployer"].value == f"{owner.name} <{owner.email}>, HR"

    for i in range(6):
        extra = _system(session, f"High {i}", eu_role=("provider", "deployer")[i % 2], owner_id=owner.id)
        extra.risk_class = AIRiskClass.HIGH
    session.flush()
    with count_statements() as statements:
        rows_now = ai_systems.register_rows(session)
        [item.value for row in rows_now for item in row.items]
    assert len(rows_now) == 8 and len(statements) == 2
