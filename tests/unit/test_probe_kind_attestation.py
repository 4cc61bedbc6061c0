"""The manual_attestation probe kind on real Attestation rows: the latest statement within its period
decides; an overdue or missing one is non-compliant; one query for the run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from governance.models.enums import ResultOutcome
from governance.models.probes import Attestation, Check, Probe
from governance.probes import CheckSpec, ConfigError, RunContext, get
from tests.conftest import count_statements

KIND = get("manual_attestation")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _run(db_session: Any, checks: list[CheckSpec]) -> list[Any]:
    ctx = RunContext(session=db_session(), storage=None, settings=None, now=NOW, probe_id=uuid.uuid4(),
                     probe_name="attest")
    return KIND.run(ctx, KIND.validate_config({}), checks)


@pytest.fixture
def make_check(db_session: Any, make_control: Any, make_user: Any) -> Any:
    probe = Probe(name=f"Attestations {uuid.uuid4().hex[:6]}", kind="manual_attestation", config={})
    db_session.add(probe)
    db_session.flush()
    attester = make_user("compliance_officer")

    def make(every_days: int, *attestations: tuple[str, int, str]) -> CheckSpec:
        """A check with attestations (outcome, days before NOW, comment)."""
        control = make_control()
        params = KIND.validate_parameters({"attester_id": str(attester.id), "every_days": str(every_days)})
        check = Check(probe_id=probe.id, control_id=control.id, name=f"check {uuid.uuid4().hex[:6]}",
                      parameters=params)
        db_session.add(check)
        db_session.flush()
        for outcome, days_ago, comment in attestations:
            db_session.add(Attestation(check_id=check.id, attested_by_id=attester.id, outcome=ResultOutcome(outcome),
                                       comment=comment, created_at=NOW - timedelta(days=days_ago)))
        db_session.commit()
        return CheckSpec(id=check.id, name=check.name, parameters=params, control_ids=(control.id,))

    make.attester = attester  # type: ignore[attr-defined]
    return make


def test_the_latest_attestation_within_its_period_decides(db_session: Any, make_check: Any) -> None:
    checks = [
        make_check(90, ("non_compliant", 200, "Gaps found"), ("compliant", 10, "Reviewed the model card")),
        make_check(30, ("compliant", 40, "old"), ("partial", 3, "Two of three teams trained")),
        make_check(30, ("compliant", 5, "fine then"), ("non_compliant", 1, "Training lapsed")),
        make_check(30, ("compliant", 31, "Last quarter's review")),
        make_check(7),
    ]
    with count_statements() as statements:
        got = _run(db_session, checks)
    assert len(statements) == 1
    assert [o.outcome for o in got] == [ResultOutcome.COMPLIANT, ResultOutcome.PARTIAL, ResultOutcome.NON_COMPLIANT,
                                        ResultOutcome.NON_COMPLIANT, ResultOutcome.NON_COMPLIANT]
    name = make_check.attester.name
    assert got[0].message == f"Reviewed the model card — {name}, 2026-10-23 (due again 2027-01-21)"
    assert got[0].observed == {"outcome": "compliant", "attested_at": (NOW - timedelta(days=10)).isoformat(),
                               "attested_by": name, "due": (NOW + timedelta(days=80)).isoformat()}
    assert got[0].expected == {"every_days": 90}
    assert got[1].message.startswith("Two of three teams trained")
    assert got[2].message.startswith("Training lapsed")
    assert got[3].message == f"Attestation overdue since 2026-11-01 (last by {name} on 2026-10-02)."
    assert got[4].message == "Never attested."
    assert _run(db_session, []) == []


@pytest.mark.parametrize(("params", "field"), [
    ({"every_days": "30"}, "attester_id"),
    ({"attester_id": "bob", "every_days": "30"}, "attester_id"),
    ({"attester_id": str(uuid.uuid4())}, "every_days"),
    ({"attester_id": str(uuid.uuid4()), "every_days": "0"}, "every_days"),
    ({"attester_id": str(uuid.uuid4()), "every_days": "monthly"}, "every_days"),
])
def test_bad_parameters_are_refused_beside_their_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        KIND.validate_parameters(params)
    assert refused.value.field == field


def test_form_text_becomes_typed_values() -> None:
    user_id = uuid.uuid4()
    assert KIND.validate_parameters({"attester_id": f" {user_id} ", "every_days": "90"}) == {
        "attester_id": str(user_id), "every_days": 90}
    assert KIND.validate_config({"anything": "ignored"}) == {}
