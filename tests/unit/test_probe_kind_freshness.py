"""The evidence_freshness probe kind on real evidence rows, reviewed through evidence_review:
approved and fresh, expired (by date and by the sweep), stale, in review, missing, deleted; partial
checks over several controls; one query for the whole run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from governance.models.enums import EvidenceStatus, ResultOutcome
from governance.models.evidence import Evidence, EvidenceRevision
from governance.probes import CheckSpec, ConfigError, RunContext, get
from governance.services import evidence_review
from tests.conftest import count_statements

KIND = get("evidence_freshness")


@pytest.fixture
def approve(db_session: Any, storage: Any, make_user: Any) -> Any:
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


def _run(db_session: Any, checks: list[CheckSpec], config: dict[str, Any] | None = None,
         now: datetime | None = None) -> list[Any]:
    ctx = RunContext(session=db_session(), storage=None, settings=None, now=now or datetime.now(UTC),
                     probe_id=uuid.uuid4(), probe_name="freshness")
    return KIND.run(ctx, KIND.validate_config(config or {}), checks)


def _check(*controls: Any, **params: Any) -> CheckSpec:
    return CheckSpec(id=uuid.uuid4(), name="fresh", parameters=KIND.validate_parameters(params),
                     control_ids=tuple(c.id for c in controls))


def test_fresh_expired_stale_in_review_and_missing(db_session: Any, make_user: Any, make_control: Any,
                                                   make_evidence: Any, approve: Any) -> None:
    engineer = make_user("engineer")
    fresh, expired, swept, stale, waiting, missing, deleted = (
        make_control(ref) for ref in ("FR-1", "EX-1", "EX-2", "ST-1", "RV-1", "NO-1", "DL-1"))
    approve(make_evidence(engineer, control=fresh), uploaded_days_ago=10)
    approve(make_evidence(engineer, control=fresh), uploaded_days_ago=200)  # an older one does not matter
    approve(make_evidence(engineer, control=expired), expires_at=datetime.now(UTC) - timedelta(days=1))
    approve(make_evidence(engineer, control=swept)).status = EvidenceStatus.EXPIRED
    approve(make_evidence(engineer, control=stale), uploaded_days_ago=120)
    make_evidence(engineer, control=waiting)
    approve(make_evidence(engineer, control=deleted)).deleted_at = datetime.now(UTC)
    db_session.commit()

    checks = [_check(c) for c in (fresh, expired, swept, stale, waiting, missing, deleted)]
    got = _run(db_session, checks)
    assert [o.outcome for o in got] == [ResultOutcome.COMPLIANT] + [ResultOutcome.NON_COMPLIANT] * 6
    assert got[0].message == "FR-1 has approved evidence uploaded within 90 days."
    assert got[0].observed == {"fresh": 1, "controls": 1, "lacking": []}
    assert got[0].expected == {"max_age_days": 90, "controls": 1}
    reasons = [o.observed["lacking"][0]["reason"] for o in got[1:]]
    assert reasons == ["its evidence expired", "its evidence expired", "newest approved evidence is 120 days old",
                       "evidence awaits review", "no approved evidence", "no approved evidence"]
    assert "ST-1: newest approved evidence is 120 days old" in got[3].message

    # The age limit is the check's, else the probe's: 150 days makes the stale one fresh.
    assert _run(db_session, [_check(stale, max_age_days="150")])[0].outcome == ResultOutcome.COMPLIANT
    assert _run(db_session, [_check(stale)], {"max_age_days": "150"})[0].outcome == ResultOutcome.COMPLIANT
    assert _run(db_session, [_check(fresh, max_age_days=5)])[0].outcome == ResultOutcome.NON_COMPLIANT
    # Expiry is judged on the run's clock: the same evidence, a day before it lapsed.
    earlier = datetime.now(UTC) - timedelta(days=2)
    assert _run(db_session, [_check(expired)], now=earlier)[0].outcome == ResultOutcome.COMPLIANT


def test_a_check_on_several_controls_is_partial_when_only_some_have_fresh_evidence(
        db_session: Any, make_user: Any, make_control: Any, make_evidence: Any, approve: Any) -> None:
    engineer = make_user("engineer")
    a, b, c = make_control("GV-1"), make_control("GV-2"), make_control("GV-3")
    approve(make_evidence(engineer, control=a))
    approve(make_evidence(engineer, control=b))
    got = _run(db_session, [_check(a, b, c), _check(a, b), _check(c)])
    assert [o.outcome for o in got] == [ResultOutcome.PARTIAL, ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT]
    assert got[0].message == ("2 of 3 controls have approved evidence uploaded within 90 days. "
                              "Lacking: GV-3: no approved evidence.")
    assert got[0].observed == {"fresh": 2, "controls": 3,
                               "lacking": [{"control": "GV-3", "reason": "no approved evidence"}]}
    assert got[1].message == "All 2 controls have approved evidence uploaded within 90 days."
    assert got[0].resource == "GV-1, GV-2, GV-3"


def test_one_query_answers_every_check(db_session: Any, make_user: Any, make_control: Any, make_evidence: Any,
                                       approve: Any) -> None:
    engineer = make_user("engineer")
    controls = [make_control(f"C-{i}") for i in range(12)]
    for control in controls[::2]:
        approve(make_evidence(engineer, control=control))
    checks = [_check(control) for control in controls] + [_check(*controls)]
    with count_statements() as statements:
        got = _run(db_session, checks)
    assert len(statements) == 1
    assert [o.outcome for o in got[:4]] == [ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT] * 2
    assert got[-1].outcome == ResultOutcome.PARTIAL
    with count_statements() as statements:
        assert _run(db_session, []) == []
    assert statements == []


@pytest.mark.parametrize("value", ["0", "-3", "ninety", "3651", "1.5"])
def test_bad_max_age_is_refused_beside_the_field(value: str) -> None:
    for validate in (KIND.validate_parameters, KIND.validate_config):
        with pytest.raises(ConfigError) as refused:
            validate({"max_age_days": value})
        assert refused.value.field == "max_age_days"
    assert KIND.validate_parameters({"max_age_days": ""}) == {}
    assert KIND.validate_parameters({"max_age_days": " 30 "}) == {"max_age_days": 30}
