"""A framework and an AI system with everything a statement of applicability shows: controls
(one withdrawn), an owner, evidence (direct and linked), checks with results, an open alert and
open tasks. Shared by tests/unit/test_reports*.py and tests/web/test_report_pages.py.

The evidence was added and the checks' results recorded inside PERIOD (IN_PERIOD), so a report of
PERIOD shows them (the period filters: docs/reports.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from governance.models import (
    AISystem,
    AISystemControl,
    Alert,
    Check,
    CheckControl,
    ControlStatus,
    EvidenceLink,
    Framework,
    Probe,
    Result,
    ResultOutcome,
    Task,
)

PERIOD = (date(2026, 9, 1), date(2026, 11, 30))
IN_PERIOD = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)


@dataclass
class Scene:
    framework: Any
    system: Any
    controls: list[Any]
    withdrawn: Any
    evidence: Any
    linked_evidence: Any
    checks: list[Any]
    alert: Any
    task: Any
    owner: Any


def build(db_session: Any, make_user: Any, make_control: Any, make_evidence: Any,
          *, title_extra: str = "") -> Scene:
    owner = make_user("compliance_officer")
    framework = Framework(title=f"Report framework {uuid.uuid4().hex[:6]}", version="2.0")
    db_session.add(framework)
    db_session.flush()
    controls = [make_control(ref_id=f"RP-{i}", title=f"Report control {i}{title_extra if i == 1 else ''}",
                             framework=framework) for i in (1, 2, 3)]
    withdrawn = make_control(ref_id="RP-9", title="An old control", framework=framework)
    withdrawn.status = ControlStatus.WITHDRAWN
    controls[0].owner_id = owner.id
    evidence = make_evidence(owner, b"%PDF-1.4 policy\n", name="Policy document", control=controls[0])
    linked = make_evidence(owner, b"%PDF-1.4 access review\n", name="Access review")
    db_session.add(EvidenceLink(evidence_id=linked.id, control_id=controls[1].id))
    evidence.created_at = linked.created_at = IN_PERIOD
    probe = Probe(name=f"report-probe-{uuid.uuid4().hex[:6]}", kind="attestation")
    db_session.add(probe)
    db_session.flush()
    now = IN_PERIOD
    checks = []
    for control, outcome in ((controls[0], ResultOutcome.COMPLIANT), (controls[1], ResultOutcome.NON_COMPLIANT)):
        check = Check(probe_id=probe.id, control_id=control.id, name=f"check {control.ref_id}",
                      last_outcome=outcome, last_result_at=now, last_message=f"{outcome.value} observed")
        db_session.add(check)
        db_session.flush()
        db_session.add(CheckControl(check_id=check.id, control_id=control.id))
        db_session.add(Result(check_id=check.id, outcome=outcome, message=f"{outcome.value} observed",
                              created_at=IN_PERIOD))
        checks.append(check)
    alert = Alert(rule="check_failing", title="Check RP-2 is failing", source_type="check",
                  source_id=str(checks[1].id))
    db_session.add(alert)
    db_session.flush()
    task = Task(title="Fix RP-2", control_id=controls[1].id, alert_id=alert.id)
    system = AISystem(name=f"Report system {uuid.uuid4().hex[:6]}", purpose="Triage support tickets")
    db_session.add_all([task, system])
    db_session.flush()
    db_session.add_all([
        AISystemControl(system_id=system.id, control_id=controls[0].id, origin="manual",
                        reason="Tickets carry personal data"),
        AISystemControl(system_id=system.id, control_id=controls[1].id, origin="manual", reason=None),
    ])
    db_session.flush()
    db_session.commit()
    return Scene(framework, system, controls, withdrawn, evidence, linked, checks, alert, task, owner)
