"""The ai_system probe kind on real rows (systems, evidence reviewed through evidence_review and stored
in the test bucket, impact assessments): each rule compliant, non-compliant and in error, thresholds,
the model card's age, the production gate, the system a check reads, and a bounded number of queries
per run. Then add_standard_checks (the probe, its checks and their EU AI Act controls; idempotent,
audited), and the whole path through the real run engine: a failing model-card check raises its
alert and, being high severity, a task for the system."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from extensions import db
from governance import probes
from governance.models.ai import AISystem, ImpactAssessment
from governance.models.audit import Alert, AuditLog
from governance.models.enums import (
    AILifecycleStage,
    AlertStatus,
    AssessmentStatus,
    ResultOutcome,
    Severity,
)
from governance.models.evidence import Evidence, EvidenceLink, EvidenceRevision
from governance.models.frameworks import Control, Framework
from governance.models.probes import Check, CheckControl, Probe
from governance.models.tasks import Task
from governance.probes import CheckSpec, ConfigError, RunContext, TransientProbeError
from governance.probes import ai_system as ai_kind
from governance.services import ai_checks, alerts, evidence_review, probe_runs
from tests.conftest import count_statements

KIND = probes.get("ai_system")
REPORT = {"model": "credit-v3", "metrics": {"accuracy": 0.93, "auc": 0.81}, "label": "n/a"}


# --- helpers ---------------------------------------------------------------------------------------

def _system(session: Any, *, stage: AILifecycleStage = AILifecycleStage.DEVELOPMENT, owner: Any = None,
            oversight: Any = None, name: str | None = None) -> AISystem:
    system = AISystem(name=name or f"System {uuid.uuid4().hex[:6]}", purpose="Scores credit applications.",
                      lifecycle_stage=stage, owner_id=owner.id if owner is not None else None,
                      oversight_owner_id=oversight.id if oversight is not None else None)
    session.add(system)
    session.commit()
    return system


def _probe(session: Any, system: AISystem | None) -> Probe:
    probe = Probe(name=f"ai-{uuid.uuid4().hex[:8]}", kind="ai_system", config={},
                  ai_system_id=system.id if system is not None else None)
    session.add(probe)
    session.commit()
    return probe


def _check(**params: Any) -> CheckSpec:
    return CheckSpec(id=uuid.uuid4(), name=str(params.get("rule")), parameters=KIND.validate_parameters(params),
                     control_ids=(uuid.uuid4(),))


def _run(db_session: Any, probe: Probe, checks: list[CheckSpec], *, storage: Any = None,
         now: datetime | None = None) -> list[Any]:
    ctx = RunContext(session=db_session(), storage=storage, settings=None, now=now or datetime.now(UTC),
                     probe_id=probe.id, probe_name=probe.name)
    return KIND.run(ctx, KIND.validate_config({}), checks)


def _link(session: Any, evidence: Evidence, system: AISystem) -> Evidence:
    session.add(EvidenceLink(evidence_id=evidence.id, ai_system_id=system.id))
    session.commit()
    return evidence


@pytest.fixture
def approve(db_session: Any, storage: Any, make_user: Any) -> Callable[..., Evidence]:
    auditor = make_user("auditor")

    def decide(evidence: Evidence, *, uploaded_days_ago: int = 0, expires_at: datetime | None = None) -> Evidence:
        revision = db_session.scalars(select(EvidenceRevision).where(
            EvidenceRevision.evidence_id == evidence.id,
            EvidenceRevision.number == evidence.revision_number)).one()
        evidence_review.review_revision(db_session(), storage, evidence, revision, reviewer_id=auditor.id,
                                        decision="approve", comment="ok", lock_days=1, lock_mode="GOVERNANCE")
        if uploaded_days_ago:
            db_session.execute(update(EvidenceRevision).where(EvidenceRevision.id == revision.id).values(
                created_at=datetime.now(UTC) - timedelta(days=uploaded_days_ago)))
        if expires_at is not None:
            evidence.expires_at = expires_at
        db_session.commit()
        return evidence

    return decide


@pytest.fixture
def card(db_session: Any, make_user: Any, make_evidence: Any) -> Callable[..., Evidence]:
    """card(system, name=..., category="model_card"): evidence in review linked to the system."""
    engineer = make_user("engineer")

    def make(system: AISystem, *, name: str = "Model card", category: str = "model_card") -> Evidence:
        evidence = make_evidence(engineer, b"# Model card\nIntended use: credit scoring.\n", name=name,
                                 filename="card.md", content_type="text/markdown", category=category)
        return _link(db_session, evidence, system)

    return make


@pytest.fixture
def report(db_session: Any, make_user: Any, make_evidence: Any) -> Callable[..., Evidence]:
    """report(system, document, filename="eval.json"): an evaluation report in review linked to the system."""
    engineer = make_user("engineer")

    def make(system: AISystem, document: Any = None, *, filename: str = "eval.json",
             name: str = "Evaluation report") -> Evidence:
        data = document if isinstance(document, bytes) else json.dumps(document or REPORT).encode()
        content_type = "text/csv" if filename.endswith(".csv") else "application/json"
        evidence = make_evidence(engineer, data, name=name, filename=filename, content_type=content_type,
                                 category="evaluation_report")
        return _link(db_session, evidence, system)

    return make


def _assessment(session: Any, system: AISystem, version: int, status: AssessmentStatus, decider: Any = None) -> None:
    decided = status in (AssessmentStatus.APPROVED, AssessmentStatus.REJECTED)
    session.add(ImpactAssessment(
        system_id=system.id, version=version, template_version="test", answers={}, status=status,
        decided_by_id=decider.id if decided else None,
        decided_at=datetime(2026, 10, 1, 9, 0, tzinfo=UTC) if decided else None))
    session.commit()


# --- the kind's interface and parameters --------------------------------------------------------------

def test_the_kind_is_registered_with_the_built_in_shape() -> None:
    assert KIND is ai_kind.KIND and KIND.name == "ai_system" and KIND.label == "AI system checks"
    assert "ai_system" in [k.name for k in probes.kinds()]
    assert KIND.description.endswith(".")
    for fields in (KIND.config_fields, KIND.parameter_fields):
        for f in fields:
            assert len(f) == 4 and all(isinstance(part, str) and part for part in f[:3]) and isinstance(f[3], bool)
    assert KIND.validate_config({"anything": "x"}) == {}
    assert KIND.public_config({}) == {} and KIND.restore_secrets({}, {"x": 1}) == {}


def test_parameters_are_validated_per_rule_and_refused_beside_the_field() -> None:
    system = str(uuid.uuid4())
    assert KIND.validate_parameters({"rule": " Model_Card ", "system": f" {system} ", "max_age_days": " 30 "}) == \
        {"rule": "model_card", "system": system, "max_age_days": 30}
    assert KIND.validate_parameters({"rule": "model_card"}) == {"rule": "model_card"}
    # Fields of other rules are dropped.
    assert KIND.validate_parameters({"rule": "oversight_owner", "max_age_days": "5", "field": "x"}) == \
        {"rule": "oversight_owner"}
    assert KIND.validate_parameters({"rule": "evaluation_metric", "field": "$.metrics.accuracy", "operator": ">=",
                                     "threshold": "0.9", "max_age_days": "3"}) == \
        {"rule": "evaluation_metric", "field": "metrics.accuracy", "operator": ">=", "threshold": 0.9}
    assert KIND.validate_parameters({"rule": "evaluation_metric", "format": "CSV", "field": "accuracy",
                                     "row": "model=prod", "operator": "<", "threshold": "1"}) == \
        {"rule": "evaluation_metric", "format": "csv", "field": "accuracy", "row": "model=prod",
         "operator": "<", "threshold": 1}
    for params, field in (
            ({}, "rule"), ({"rule": "model_cards"}, "rule"),
            ({"rule": "model_card", "system": "not-an-id"}, "system"),
            ({"rule": "model_card", "max_age_days": "0"}, "max_age_days"),
            ({"rule": "model_card", "max_age_days": "3651"}, "max_age_days"),
            ({"rule": "model_card", "max_age_days": "soon"}, "max_age_days"),
            ({"rule": "evaluation_metric", "operator": ">=", "threshold": "1"}, "field"),
            ({"rule": "evaluation_metric", "field": "accuracy", "threshold": "1"}, "operator"),
            ({"rule": "evaluation_metric", "field": "accuracy", "operator": ">="}, "threshold"),
            ({"rule": "evaluation_metric", "field": "accuracy", "operator": "~", "threshold": "1"}, "operator"),
            ({"rule": "evaluation_metric", "field": "accuracy", "operator": ">=", "threshold": "high"}, "threshold"),
            ({"rule": "evaluation_metric", "format": "json", "field": "a", "row": "m=p", "operator": ">=",
              "threshold": "1"}, "row"),
            ({"rule": "evaluation_metric", "format": "xml", "field": "a", "operator": ">=", "threshold": "1"},
             "format"),
    ):
        with pytest.raises(ConfigError) as refused:
            KIND.validate_parameters(params)
        assert refused.value.field == field, params


# --- model_card ------------------------------------------------------------------------------------------

def test_model_card_fresh_stale_expired_in_review_missing_and_the_wrong_kind(db_session: Any, card: Any,
                                                                            approve: Any) -> None:
    fresh, stale, expired, waiting, none, general, deleted = (_system(db_session) for _ in range(7))
    approve(card(fresh, name="Card v2"), uploaded_days_ago=10)
    approve(card(fresh, name="Card v1"), uploaded_days_ago=300)  # an older one does not matter
    approve(card(stale, name="Old card"), uploaded_days_ago=200)
    approve(card(expired), expires_at=datetime.now(UTC) - timedelta(days=1))
    card(waiting)
    approve(card(general, category="general"))  # linked, approved, but not a model card
    approve(card(deleted)).deleted_at = datetime.now(UTC)
    # A model card of another system counts for that one only.
    approve(card(_system(db_session)))
    db_session.commit()
    probe = _probe(db_session, None)

    systems = (fresh, stale, expired, waiting, none, general, deleted)
    got = _run(db_session, probe, [_check(rule="model_card", system=str(s.id)) for s in systems])
    assert [o.outcome for o in got] == [ResultOutcome.COMPLIANT] + [ResultOutcome.NON_COMPLIANT] * 6
    assert got[0].message == "Model card \u201cCard v2\u201d is approved and was uploaded 10 days ago (limit 180 days)."
    assert got[0].observed["name"] == "Card v2" and got[0].observed["age_days"] == 10
    assert got[0].expected == {"rule": "model_card", "max_age_days": 180} and got[0].resource == fresh.name
    assert got[1].message == ("The newest approved model card, \u201cOld card\u201d, is 200 days old (limit 180 days): "
                              "upload a current one.")
    assert got[2].message == f"The model card of {expired.name} has expired."
    assert got[2].observed == {"model_cards": 1, "expired": 1, "in_review": 0}
    assert got[3].message == f"The model card of {waiting.name} awaits review: none is approved yet."
    assert got[4].message == f"No model card is linked to {none.name}."
    assert got[4].observed == {"model_cards": 0, "expired": 0, "in_review": 0}
    assert got[5].message == f"No model card is linked to {general.name}."
    assert got[6].message == f"No model card is linked to {deleted.name}."

    # The age limit is the check's: 250 days makes the stale card do, 5 days the fresh one not.
    assert _run(db_session, probe, [_check(rule="model_card", system=str(stale.id), max_age_days="250")])[0] \
        .outcome == ResultOutcome.COMPLIANT
    assert _run(db_session, probe, [_check(rule="model_card", system=str(fresh.id), max_age_days=5)])[0] \
        .outcome == ResultOutcome.NON_COMPLIANT
    # Expiry is judged on the run's clock.
    earlier = datetime.now(UTC) - timedelta(days=2)
    assert _run(db_session, probe, [_check(rule="model_card", system=str(expired.id))], now=earlier)[0] \
        .outcome == ResultOutcome.COMPLIANT


# --- evaluation_metric -------------------------------------------------------------------------------------

def test_evaluation_metric_reads_the_newest_approved_report(db_session: Any, storage: Any, report: Any,
                                                            approve: Any) -> None:
    system = _system(db_session)
    approve(report(system, {"metrics": {"accuracy": 0.70}}, name="Old evaluation"), uploaded_days_ago=30)
    newest = approve(report(system, name="Q4 evaluation"), uploaded_days_ago=1)
    report(system, {"metrics": {"accuracy": 0.10}}, name="Not reviewed yet")  # in review: not read
    probe = _probe(db_session, system)

    def metric(**params: Any) -> Any:
        return _run(db_session, probe, [_check(rule="evaluation_metric", **params)], storage=storage)[0]

    met = metric(field="metrics.accuracy", operator=">=", threshold="0.9")
    assert met.outcome == ResultOutcome.COMPLIANT and met.observed == 0.93
    assert met.message == "Evaluation report \u201cQ4 evaluation\u201d: metrics.accuracy = 0.93 (threshold >= 0.9)."
    assert met.expected == {"rule": "evaluation_metric", "operator": ">=", "threshold": 0.9,
                            "field": "metrics.accuracy"}
    assert met.resource == f"{system.name}: evidence:{newest.id} revision 1"
    missed = metric(field="metrics.accuracy", operator=">=", threshold="0.95")
    assert missed.outcome == ResultOutcome.NON_COMPLIANT and missed.message.endswith("(threshold >= 0.95): not met.")
    assert metric(field="metrics.auc", operator="<", threshold="0.8").outcome == ResultOutcome.NON_COMPLIANT
    assert metric(field="metrics.auc", operator="==", threshold="0.81").outcome == ResultOutcome.COMPLIANT

    # A field the report lacks, or that is not a number: the probe could not measure (error).
    lacking = metric(field="metrics.recall", operator=">=", threshold="0.9")
    assert lacking.outcome == ResultOutcome.ERROR
    assert lacking.message == "Evaluation report \u201cQ4 evaluation\u201d: The JSON has no field metrics.recall."
    text_value = metric(field="label", operator=">=", threshold="0.9")
    assert text_value.outcome == ResultOutcome.ERROR and "label is \"n/a\", not a number" in text_value.message


def test_evaluation_metric_without_a_report_is_non_compliant_and_csv_reports_read_rows(
        db_session: Any, storage: Any, report: Any, approve: Any) -> None:
    bare, expired, csv_system, broken = (_system(db_session) for _ in range(4))
    approve(report(expired), expires_at=datetime.now(UTC) - timedelta(hours=1))
    approve(report(csv_system, b"model,accuracy\nbaseline,0.80\nprod,0.91\ncandidate,0.95\n", filename="eval.csv"))
    approve(report(broken, b"{not json", name="Broken"))
    probe = _probe(db_session, None)
    checks = [
        _check(rule="evaluation_metric", system=str(bare.id), field="accuracy", operator=">=", threshold="0.9"),
        _check(rule="evaluation_metric", system=str(expired.id), field="metrics.accuracy", operator=">=",
               threshold="0.9"),
        _check(rule="evaluation_metric", system=str(csv_system.id), field="accuracy", row="model=prod",
               operator=">=", threshold="0.9"),
        _check(rule="evaluation_metric", system=str(csv_system.id), field="accuracy", operator=">=",
               threshold="0.96"),
        _check(rule="evaluation_metric", system=str(broken.id), field="accuracy", operator=">=", threshold="0.9"),
    ]
    got = _run(db_session, probe, checks, storage=storage)
    assert [o.outcome for o in got] == [ResultOutcome.NON_COMPLIANT, ResultOutcome.NON_COMPLIANT,
                                        ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT, ResultOutcome.ERROR]
    assert got[0].message == (f"{bare.name} has no evaluation report: link an approved, unexpired one "
                              f"(evidence of kind evaluation report).")
    assert "has no evaluation report" in got[1].message
    assert got[2].observed == 0.91 and got[3].observed == 0.95  # the prod row; the last row
    assert got[4].message.startswith("Evaluation report \u201cBroken\u201d: The document is not valid JSON")


def test_an_unreachable_store_makes_the_run_retry(db_session: Any, storage: Any, report: Any, approve: Any) -> None:
    from governance.storage import Storage

    system = _system(db_session)
    approve(report(system))
    probe = _probe(db_session, system)
    unreachable = Storage("127.0.0.1:9", "k", "s", bucket=storage.bucket)
    check = _check(rule="evaluation_metric", field="metrics.accuracy", operator=">=", threshold="0.9")
    with pytest.raises(TransientProbeError):
        _run(db_session, probe, [check], storage=unreachable)
    # With a check that could be answered, the run goes on: the unreadable one is an error.
    got = _run(db_session, probe, [check, _check(rule="oversight_owner")], storage=unreachable)
    assert [o.outcome for o in got] == [ResultOutcome.ERROR, ResultOutcome.NON_COMPLIANT]


# --- oversight_owner ----------------------------------------------------------------------------------------

def test_oversight_owner_must_be_a_live_active_user(db_session: Any, make_user: Any) -> None:
    overseer, leaver = make_user("engineer"), make_user("engineer")
    owned, unowned, orphaned = _system(db_session, oversight=overseer), _system(db_session), \
        _system(db_session, oversight=leaver)
    leaver.is_active = False
    db_session.commit()
    probe = _probe(db_session, None)
    got = _run(db_session, probe, [_check(rule="oversight_owner", system=str(s.id))
                                   for s in (owned, unowned, orphaned)])
    assert [o.outcome for o in got] == [ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT,
                                        ResultOutcome.NON_COMPLIANT]
    assert got[0].message == f"{overseer.name} answers for the human oversight of {owned.name}."
    assert got[0].observed == {"oversight_owner_id": str(overseer.id)}
    assert got[1].message == f"Nobody is assigned to the human oversight of {unowned.name}: name an oversight owner."
    assert "no longer an active user" in got[2].message


# --- impact_assessment: the production gate ---------------------------------------------------------------------

def test_an_impact_assessment_must_be_approved_before_production(db_session: Any, make_user: Any) -> None:
    decider = make_user("compliance_officer")
    prod_bare = _system(db_session, stage=AILifecycleStage.PRODUCTION)
    prod_draft = _system(db_session, stage=AILifecycleStage.PRODUCTION)
    prod_approved = _system(db_session, stage=AILifecycleStage.PRODUCTION)
    developing = _system(db_session, stage=AILifecycleStage.DEVELOPMENT)
    retired = _system(db_session, stage=AILifecycleStage.RETIRED)
    _assessment(db_session, prod_draft, 1, AssessmentStatus.REJECTED, decider)
    _assessment(db_session, prod_draft, 2, AssessmentStatus.SUBMITTED)
    _assessment(db_session, prod_approved, 1, AssessmentStatus.APPROVED, decider)
    _assessment(db_session, prod_approved, 2, AssessmentStatus.DRAFT)  # a newer draft keeps the approval
    probe = _probe(db_session, None)
    systems = (prod_bare, prod_draft, prod_approved, developing, retired)
    got = _run(db_session, probe, [_check(rule="impact_assessment", system=str(s.id)) for s in systems])
    assert [o.outcome for o in got] == [ResultOutcome.NON_COMPLIANT, ResultOutcome.NON_COMPLIANT,
                                        ResultOutcome.COMPLIANT, ResultOutcome.COMPLIANT, ResultOutcome.COMPLIANT]
    assert got[0].message == (f"{prod_bare.name} is in production but it has no impact assessment yet: an impact "
                              f"assessment must be approved before production.")
    assert got[1].message.startswith(f"{prod_draft.name} is in production but its newest impact assessment "
                                     f"(version 2) is submitted, none is approved")
    assert got[1].observed == {"stage": "production", "approved_version": None, "newest_version": 2,
                               "newest_status": "submitted"}
    assert got[2].message == (f"{prod_approved.name} is in production and its impact assessment version 1 was "
                              f"approved on 2026-10-01.")
    assert got[3].message == (f"{developing.name} is not in production yet (stage: development); it has no impact "
                              f"assessment yet.")
    assert got[4].message.startswith(f"{retired.name} is retired, no longer in production")

    # Moving to production without an approval turns the check non-compliant.
    developing.lifecycle_stage = AILifecycleStage.PRODUCTION
    db_session.commit()
    assert _run(db_session, probe, [_check(rule="impact_assessment", system=str(developing.id))])[0].outcome == \
        ResultOutcome.NON_COMPLIANT


# --- which system, and how many queries -------------------------------------------------------------------------

def test_the_system_is_the_probes_unless_the_check_names_one(db_session: Any, make_user: Any) -> None:
    overseer = make_user("engineer")
    mine, other = _system(db_session), _system(db_session, oversight=overseer)
    gone = _system(db_session, oversight=overseer)
    gone.deleted_at = datetime.now(UTC)
    db_session.commit()
    probe = _probe(db_session, mine)
    got = _run(db_session, probe, [
        _check(rule="oversight_owner"), _check(rule="oversight_owner", system=str(other.id)),
        _check(rule="oversight_owner", system=str(gone.id)),
        _check(rule="model_card", system=str(uuid.UUID(int=7)))])
    assert [o.outcome for o in got] == [ResultOutcome.NON_COMPLIANT, ResultOutcome.COMPLIANT,
                                        ResultOutcome.ERROR, ResultOutcome.ERROR]
    assert mine.name in got[0].message and got[1].resource == other.name
    assert got[2].message == f"AI system {gone.id} does not exist (any more)."
    assert got[3].message == f"AI system {uuid.UUID(int=7)} does not exist (any more)."
    # A probe that checks no system, and a check that names none: an error that says what to do.
    [lost] = _run(db_session, _probe(db_session, None), [_check(rule="impact_assessment")])
    assert lost.outcome == ResultOutcome.ERROR and "names no AI system" in lost.message


def test_a_run_takes_a_bounded_number_of_queries(db_session: Any, storage: Any, make_user: Any, card: Any,
                                                 report: Any, approve: Any) -> None:
    decider = make_user("compliance_officer")

    def checks_for(n: int) -> list[CheckSpec]:
        specs: list[CheckSpec] = []
        for _ in range(n):
            system = _system(db_session, stage=AILifecycleStage.PRODUCTION)
            approve(card(system))
            approve(report(system))
            _assessment(db_session, system, 1, AssessmentStatus.APPROVED, decider)
            specs += [_check(rule="model_card", system=str(system.id)),
                      _check(rule="evaluation_metric", system=str(system.id), field="metrics.accuracy",
                             operator=">=", threshold="0.9"),
                      _check(rule="oversight_owner", system=str(system.id)),
                      _check(rule="impact_assessment", system=str(system.id))]
        return [*specs, _check(rule="oversight_owner")]  # one check of the probe's own system

    probe = _probe(db_session, _system(db_session))
    counts = []
    for n in (1, 4):
        checks = checks_for(n)
        db_session.refresh(probe)  # (its attributes expired with the commits above)
        with count_statements() as statements:
            got = _run(db_session, probe, checks, storage=storage)
        assert [o.outcome for o in got[:4]] == [ResultOutcome.COMPLIANT, ResultOutcome.COMPLIANT,
                                                ResultOutcome.NON_COMPLIANT, ResultOutcome.COMPLIANT]
        counts.append(len(statements))
    # The probe's system, the systems, two for model cards, one for reports, one for assessments.
    assert counts == [6, 6]
    with count_statements() as statements:
        assert _run(db_session, probe, []) == []
    assert statements == []


# --- add_standard_checks -------------------------------------------------------------------------------------

def _eu_ai_act(session: Any) -> list[Framework]:
    return list(session.scalars(select(Framework).where(Framework.title == "EU AI Act",
                                                        Framework.version == "2024/1689")))


def test_add_standard_checks_makes_the_probe_and_links_the_eu_ai_act_controls(db_session: Any,
                                                                              make_user: Any) -> None:
    owner = make_user("engineer")
    system = _system(db_session, owner=owner, name="Credit scoring")
    assert _eu_ai_act(db_session) == []  # not imported yet: the call imports it

    probe = ai_checks.add_standard_checks(db_session(), system.id)
    db_session.commit()
    [framework] = _eu_ai_act(db_session)
    assert (probe.name, probe.kind, probe.ai_system_id, probe.owner_id) == \
        ("AI checks \u2014 Credit scoring", "ai_system", system.id, owner.id)
    assert probe.schedule == "0 6 * * *" and probe.enabled and probe.next_run_at is not None
    checks = {c.parameters["rule"]: c for c in db_session.scalars(select(Check).where(Check.probe_id == probe.id))}
    assert set(checks) == {"model_card", "evaluation_metric", "oversight_owner", "impact_assessment"}
    assert {c.severity for c in checks.values()} == {Severity.HIGH}
    assert checks["model_card"].parameters == {"rule": "model_card", "max_age_days": 180}
    assert checks["evaluation_metric"].parameters == {"rule": "evaluation_metric", "field": "accuracy",
                                                      "operator": ">=", "threshold": 0.9}

    def refs(check: Check) -> list[str]:
        return sorted(db_session.scalars(
            select(Control.ref_id).join(CheckControl, CheckControl.control_id == Control.id)
            .where(CheckControl.check_id == check.id, Control.framework_id == framework.id)))

    assert refs(checks["model_card"]) == ["Annex IV(1)", "Article 11(1)"]
    assert refs(checks["evaluation_metric"]) == ["Article 15(3)", "Article 9(8)"]
    assert refs(checks["oversight_owner"]) == ["Article 14(1)", "Article 26(2)"]
    assert refs(checks["impact_assessment"]) == ["Article 27(1)"]
    primary = db_session.get(Control, checks["model_card"].control_id)
    assert primary.ref_id == "Article 11(1)"

    [entry] = db_session.scalars(select(AuditLog).where(AuditLog.action == "ai_system.add_checks")).all()
    assert (entry.object_type, entry.object_id) == ("ai_system", str(system.id))
    assert entry.details["probe_created"] is True and entry.details["after"]["probe_id"] == str(probe.id)
    assert sorted(c["rule"] for c in entry.details["after"]["checks"]) == sorted(checks)
    actions = db_session.scalars(select(AuditLog.action).where(AuditLog.action.in_(("probe.create",
                                                                                    "check.create")))).all()
    assert sorted(actions) == ["check.create"] * 4 + ["probe.create"]


def test_add_standard_checks_is_idempotent_and_adds_only_what_is_missing(db_session: Any, make_user: Any) -> None:
    system = _system(db_session, name="Chat assistant")
    first = ai_checks.add_standard_checks(db_session(), system.id, severity=Severity.CRITICAL)
    db_session.commit()
    ids = {c.parameters["rule"]: c.id for c in db_session.scalars(select(Check).where(Check.probe_id == first.id))}
    frameworks = _eu_ai_act(db_session)

    # Again: the same probe, nothing new, nothing audited, the framework not imported twice.
    again = ai_checks.add_standard_checks(db_session(), system.id)
    assert again.id == first.id
    assert db_session.scalar(select(func.count()).select_from(Check).where(Check.probe_id == first.id)) == 4
    assert db_session.scalar(select(func.count()).select_from(AuditLog)
                             .where(AuditLog.action == "ai_system.add_checks")) == 1
    assert _eu_ai_act(db_session) == frameworks

    # A renamed check still counts as present (by its rule); a removed one comes back, at the given severity.
    db_session.execute(update(Check).where(Check.id == ids["oversight_owner"]).values(name="Who oversees it"))
    db_session.execute(delete(Check).where(Check.id == ids["model_card"]))
    db_session.commit()
    ai_checks.add_standard_checks(db_session(), system.id, severity=Severity.MEDIUM)
    db_session.commit()
    now = {c.parameters["rule"]: c for c in db_session.scalars(select(Check).where(Check.probe_id == first.id))}
    assert set(now) == set(ids)
    assert now["model_card"].id != ids["model_card"] and now["model_card"].severity == Severity.MEDIUM
    assert all(now[r].id == ids[r] and now[r].severity == Severity.CRITICAL
               for r in ("evaluation_metric", "oversight_owner", "impact_assessment"))
    assert now["oversight_owner"].name == "Who oversees it"
    entries = db_session.scalars(select(AuditLog).where(AuditLog.action == "ai_system.add_checks")
                                 .order_by(AuditLog.seq)).all()
    assert len(entries) == 2 and entries[1].details["probe_created"] is False
    assert [c["rule"] for c in entries[1].details["after"]["checks"]] == ["model_card"]


def test_add_standard_checks_refuses_unknown_systems_and_avoids_taken_names(db_session: Any, make_user: Any) -> None:
    with pytest.raises(ai_checks.AIChecksError) as refused:
        ai_checks.add_standard_checks(db_session(), uuid.uuid4())
    assert "does not exist" in refused.value.message
    leaver = make_user("engineer")
    system = _system(db_session, name="Fraud model", owner=leaver)
    leaver.is_active = False
    db_session.add(Probe(name="AI checks \u2014 fraud model", kind="http_endpoint", config={}))
    db_session.commit()
    probe = ai_checks.add_standard_checks(db_session(), system.id)
    # The name was taken (names are unique whatever their case), and an inactive owner owns no probe.
    assert probe.name == "AI checks \u2014 Fraud model (2)" and probe.owner_id is None


# --- the whole path: a run, its alert and its task ------------------------------------------------------------

@pytest.fixture
def factory(app: Any, clean_database: Any) -> Iterator[sessionmaker[Session]]:
    with db.engine.connect() as conn:
        first_job = conn.execute(text("SELECT coalesce(max(id), 0) FROM procrastinate_jobs")).scalar_one()
    yield sessionmaker(db.engine, expire_on_commit=False)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE id > :id"), {"id": first_job})


def test_a_failing_model_card_check_raises_an_alert_and_a_task_for_the_system(app: Any, factory: Any,
                                                                              storage: Any) -> None:
    from governance.services import identity

    with factory() as session:
        owner = identity.create_user(session, email=f"o-{uuid.uuid4().hex[:6]}@example.test", name="System Owner",
                                     role_name="engineer", password="Correct-Horse-9-battery")
        system = AISystem(name="Loan approvals", purpose="Decides loans.", owner_id=owner.id,
                          oversight_owner_id=owner.id, lifecycle_stage=AILifecycleStage.DEVELOPMENT)
        session.add(system)
        session.flush()
        probe = ai_checks.add_standard_checks(session, system.id)
        session.commit()
        probe_id, system_id = probe.id, system.id
        run = probe_runs.request_run(session, session.get_one(Probe, probe_id), trigger="manual",
                                     requested_by_id=None)
        session.commit()
    assert probe_runs.execute_run(factory, storage, app.config["SETTINGS"], run.id) == "succeeded"

    with factory() as session:
        checks = {c.parameters["rule"]: c for c in session.scalars(select(Check).where(Check.probe_id == probe_id))}
        outcomes = {rule: c.last_outcome for rule, c in checks.items()}
        assert outcomes == {"model_card": ResultOutcome.NON_COMPLIANT,
                            "evaluation_metric": ResultOutcome.NON_COMPLIANT,
                            "oversight_owner": ResultOutcome.COMPLIANT,
                            "impact_assessment": ResultOutcome.COMPLIANT}
        assert checks["model_card"].last_message == "No model card is linked to Loan approvals."
        failing = session.scalars(select(Alert).where(Alert.rule == alerts.CHECK_FAILING,
                                                      Alert.source_id == str(checks["model_card"].id))).one()
        assert (failing.status, failing.severity, failing.owner_id) == (AlertStatus.OPEN, Severity.HIGH, owner.id)
        task = session.scalars(select(Task).where(Task.alert_id == failing.id)).one()
        assert (task.ai_system_id, task.probe_id, task.assignee_id) == (system_id, probe_id, owner.id)
        assert task.control_id == checks["model_card"].control_id
        entry = session.scalars(select(AuditLog).where(AuditLog.action == "task.create",
                                                       AuditLog.object_id == str(task.id))).one()
        assert entry.details["ai_system_id"] == str(system_id)
        # Passing checks raise nothing; both failing checks opened a task for the system.
        assert session.scalar(select(func.count()).select_from(Alert).where(
            Alert.source_id == str(checks["oversight_owner"].id))) == 0
        assert session.scalar(select(func.count()).select_from(Task).where(
            Task.ai_system_id == system_id)) == 2
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE queueing_lock = :l"),
                     {"l": probe_runs.lock_name(probe_id)})


def test_tasks_of_alerts_on_other_checks_name_no_system(db_session: Any, make_control: Any, make_user: Any) -> None:
    from governance.services import tasks

    control = make_control("GV-9")
    probe = Probe(name=f"plain-{uuid.uuid4().hex[:6]}", kind="http_endpoint", config={})
    db_session.add(probe)
    db_session.flush()
    check = Check(probe_id=probe.id, control_id=control.id, name="up", severity=Severity.HIGH)
    db_session.add(check)
    db_session.flush()
    alert = Alert(rule=alerts.CHECK_FAILING, severity=Severity.HIGH, status=AlertStatus.OPEN, title="failing",
                  source_type="check", source_id=str(check.id), dedup_key=f"check.failing:{check.id}")
    db_session.add(alert)
    db_session.flush()
    [task] = tasks.open_for_alerts(db_session(), [alert])
    assert task.ai_system_id is None and task.probe_id == probe.id

