"""governance.services.probes: validation with the field each error belongs beside, audit entries
with before/after (secrets masked), enable/disable and the schedule, checks on several controls,
attestation rules."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, scoped_session

from governance import context
from governance.models.audit import AuditLog
from governance.models.enums import CheckStatus, ResultOutcome
from governance.models.probes import Attestation, Check, CheckControl, Probe, ProbeRun
from governance.services import probes as service
from governance.services.probes import ProbeServiceError

SECRET = "Sup3r-secret-pw"
DSN = f"postgresql://reader:{SECRET}@db.example:5432/app"


def _entries(db: Session, action: str, object_id: Any) -> list[AuditLog]:
    return list(db.scalars(select(AuditLog).where(AuditLog.action == action, AuditLog.object_id == str(object_id))))


def _probe(db: Session, kind: str = "sql_query", **overrides: Any) -> Probe:
    args: dict[str, Any] = {"name": f"P {uuid.uuid4().hex[:6]}", "kind": kind, "description": None,
                            "config": {"dsn": DSN} if kind == "sql_query" else {}, "schedule": "0 6 * * *",
                            "owner_id": None, "enabled": True}
    args.update(overrides)
    return service.create_probe(db, **args)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"kind": "nope"}, "kind"),
    ({"name": ""}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"schedule": "* * *"}, "schedule"),
    ({"schedule": "0 25 * * *"}, "schedule"),
    ({"config": {"dsn": ""}}, "dsn"),
    ({"config": {"dsn": DSN, "statement_timeout_ms": "lots"}}, "statement_timeout_ms"),
    ({"owner_id": uuid.uuid4()}, "owner_id"),
])
def test_create_probe_refuses_bad_input_beside_the_field(
    db_session: scoped_session[Session], overrides: dict[str, Any], field: str,
) -> None:
    with pytest.raises(ProbeServiceError) as refused:
        _probe(db_session(), **overrides)
    assert refused.value.field == field and refused.value.status == 422 and refused.value.message
    assert db_session.scalar(select(func.count()).select_from(Probe)) == 0


def test_create_probe_cleans_values_sets_next_run_and_audits_without_secrets(
    db_session: scoped_session[Session], make_user: Callable[..., Any],
) -> None:
    owner = make_user("engineer")
    probe = _probe(db_session(), name="  Orders   replica ", schedule=" */15  * * * * ", owner_id=owner.id,
                   config={"dsn": DSN, "statement_timeout_ms": "1500"})
    assert probe.name == "Orders replica" and probe.schedule == "*/15 * * * *"
    assert probe.config == {"dsn": DSN, "statement_timeout_ms": 1500}
    assert probe.next_run_at is not None and probe.next_run_at > datetime.now(UTC)
    assert probe.next_run_at.minute % 15 == 0
    [entry] = _entries(db_session(), "probe.create", probe.id)
    assert SECRET not in json.dumps(entry.details)
    assert entry.details["after"]["config"]["dsn"] == "postgresql://reader:********@db.example:5432/app"
    # Names are unique regardless of case.
    with pytest.raises(ProbeServiceError) as taken:
        _probe(db_session(), name="ORDERS REPLICA")
    assert taken.value.field == "name"


def test_without_a_schedule_or_while_disabled_nothing_is_scheduled(db_session: scoped_session[Session]) -> None:
    manual = _probe(db_session(), schedule="")
    off = _probe(db_session(), enabled=False)
    assert manual.schedule is None and manual.next_run_at is None
    assert off.next_run_at is None


def test_update_probe_audits_only_what_changed_and_keeps_masked_secrets(db_session: scoped_session[Session]) -> None:
    db = db_session()
    probe = _probe(db, name="Before")
    shown = service.config_as_form(service.kind_of("sql_query"), probe.config)
    assert SECRET not in json.dumps(shown) and shown["password"] == ""
    assert service.update_probe(db, probe, name="Before", description=None, config=shown,
                                schedule="0 6 * * *", owner_id=None) is False
    assert _entries(db, "probe.update", probe.id) == []

    assert service.update_probe(db, probe, name="After", description=None, config=shown, schedule="0 7 * * *",
                                owner_id=None) is True
    assert probe.config["dsn"] == DSN and probe.next_run_at is not None and probe.next_run_at.hour == 7
    [entry] = _entries(db, "probe.update", probe.id)
    assert entry.details["before"] == {"name": "Before", "schedule": "0 6 * * *"}
    assert entry.details["after"] == {"name": "After", "schedule": "0 7 * * *"}

    # A new secret: the entry names it, never its value.
    new_dsn = "postgresql://reader:An0ther-pw@db.example:5432/app"
    service.update_probe(db, probe, name="After", description=None, config={"dsn": new_dsn},
                         schedule="0 7 * * *", owner_id=None)
    entries = _entries(db, "probe.update", probe.id)
    assert len(entries) == 2 and probe.config["dsn"] == new_dsn
    assert "An0ther-pw" not in json.dumps(entries[-1].details)
    assert entries[-1].details["secrets_changed"] == ["dsn"]


def test_set_enabled_is_audited_once_per_change(db_session: scoped_session[Session]) -> None:
    db = db_session()
    probe = _probe(db)
    assert service.set_enabled(db, probe, False) is True
    assert probe.next_run_at is None
    assert service.set_enabled(db, probe, False) is False
    assert service.set_enabled(db, probe, True) is True and probe.next_run_at is not None
    assert len(_entries(db, "probe.disable", probe.id)) == 1 and len(_entries(db, "probe.enable", probe.id)) == 1


def test_run_now_refuses_a_disabled_probe_and_queues_one_run(
    db_session: scoped_session[Session], make_user: Callable[..., Any],
) -> None:
    db = db_session()
    user = make_user("engineer")
    probe = _probe(db, kind="metric_threshold", config={})
    first = service.run_now(db, probe, requested_by_id=user.id)
    second = service.run_now(db, probe, requested_by_id=user.id)
    assert first.created and not second.created and first.run.id == second.run.id
    assert db.scalar(select(func.count()).select_from(ProbeRun)) == 1
    service.set_enabled(db, probe, False)
    with pytest.raises(ProbeServiceError) as refused:
        service.run_now(db, probe, requested_by_id=user.id)
    assert refused.value.status == 409


def test_checks_assess_one_or_more_controls_validated_by_the_kind(
    db_session: scoped_session[Session], make_control: Callable[..., Any],
) -> None:
    db = db_session()
    a, b = make_control("A-1"), make_control("B-1")
    probe = _probe(db, kind="metric_threshold", config={})
    params = {"key": "m.json", "field": "accuracy", "operator": ">=", "threshold": "0.9"}
    for controls, parameters, field in (([], params, "control_ids"), ([uuid.uuid4()], params, "control_ids"),
                                        ([a.id], {**params, "operator": "~"}, "operator"),
                                        ([a.id], {**params, "threshold": ""}, "threshold")):
        with pytest.raises(ProbeServiceError) as refused:
            service.create_check(db, probe, name="C", description=None, severity="low", control_ids=controls,
                                 parameters=parameters)
        assert refused.value.field == field
    with pytest.raises(ProbeServiceError) as bad_severity:
        service.create_check(db, probe, name="C", description=None, severity="dire", control_ids=[a.id],
                             parameters=params)
    assert bad_severity.value.field == "severity"

    check = service.create_check(db, probe, name="C", description=None, severity="low",
                                 control_ids=[b.id, a.id, b.id], parameters=params)
    assert check.control_id == b.id and check.parameters["threshold"] == 0.9
    assert service.check_control_ids(db, check) == [b.id, a.id]
    with pytest.raises(ProbeServiceError) as duplicate:
        service.create_check(db, probe, name="C", description=None, severity="low", control_ids=[a.id],
                             parameters=params)
    assert duplicate.value.field == "name"

    assert service.update_check(db, check, name="C", description=None, severity="low", control_ids=[a.id],
                                parameters=params) is True
    assert check.control_id == a.id
    assert list(db.scalars(select(CheckControl.control_id).where(CheckControl.check_id == check.id))) == [a.id]
    [entry] = _entries(db, "check.update", check.id)
    assert entry.details["before"] == {"control_ids": [str(b.id), str(a.id)]}
    assert entry.details["after"] == {"control_ids": [str(a.id)]}
    assert service.set_check_enabled(db, check, False) is True and check.status == CheckStatus.DISABLED
    assert service.set_check_enabled(db, check, False) is False
    rows, count = service.control_checks(db, a.id)
    assert count == 1 and rows[0].check.id == check.id and rows[0].probe.id == probe.id
    assert service.control_checks(db, b.id) == ([], 0)


def test_attest_only_by_the_named_active_attester_with_a_comment(
    db_session: scoped_session[Session], make_user: Callable[..., Any], make_control: Callable[..., Any],
) -> None:
    db = db_session()
    attester, someone = make_user("auditor"), make_user("admin")
    control = make_control()
    probe = _probe(db, kind="manual_attestation", config={}, schedule=None)
    with pytest.raises(ProbeServiceError) as unknown:
        service.create_check(db, probe, name="Review", description=None, severity="medium", control_ids=[control.id],
                             parameters={"attester_id": str(uuid.uuid4()), "every_days": "90"})
    assert unknown.value.field == "attester_id"
    check = service.create_check(db, probe, name="Review", description=None, severity="medium",
                                 control_ids=[control.id],
                                 parameters={"attester_id": str(attester.id), "every_days": "90"})
    with context.acting_as(context.ActionContext(actor_id=someone.id, actor_name=someone.name)), \
            pytest.raises(ProbeServiceError) as other:
        service.attest(db, check, user=someone, outcome="compliant", comment="ok")
    assert other.value.status == 409
    with pytest.raises(ProbeServiceError) as no_comment:
        service.attest(db, check, user=attester, outcome="compliant", comment="  ")
    assert no_comment.value.field == "comment"
    with pytest.raises(ProbeServiceError) as bad_outcome:
        service.attest(db, check, user=attester, outcome="error", comment="x")
    assert bad_outcome.value.field == "outcome"
    assert db.scalar(select(func.count()).select_from(Attestation)) == 0

    attestation = service.attest(db, check, user=attester, outcome="non_compliant", comment="Two stale accounts")
    assert attestation.outcome == ResultOutcome.NON_COMPLIANT
    assert len(_entries(db, "check.attest", check.id)) == 1
    [run] = db.scalars(select(ProbeRun).where(ProbeRun.probe_id == probe.id)).all()
    assert run.trigger == "manual" and run.requested_by_id == attester.id

    service.set_check_enabled(db, check, False)
    with pytest.raises(ProbeServiceError) as disabled:
        service.attest(db, check, user=attester, outcome="compliant", comment="again")
    assert disabled.value.status == 409
    other_kind = _probe(db, kind="metric_threshold", config={})
    metric = service.create_check(db, other_kind, name="M", description=None, severity="low", control_ids=[control.id],
                                  parameters={"key": "m.json", "field": "a", "operator": ">=", "threshold": "1"})
    with pytest.raises(ProbeServiceError) as wrong_kind:
        service.attest(db, metric, user=attester, outcome="compliant", comment="x")
    assert wrong_kind.value.status == 409
    assert db.scalar(select(func.count()).select_from(Check)) == 2


def test_public_config_masks_what_the_kind_declares_secret() -> None:
    sql = service.kind_of("sql_query")
    http = service.kind_of("http_endpoint")
    shown = service.public_config(sql, {"dsn": DSN, "password": "pw2-secret"})
    assert SECRET not in json.dumps(shown) and "pw2-secret" not in json.dumps(shown)
    headers = service.public_config(http, {"headers": {"Authorization": "Bearer abcdefabcdefabcdefabcdef1234",
                                                       "Accept": "application/json"}})
    assert headers["headers"]["Accept"] == "application/json" and "abcdef" not in json.dumps(headers)
    assert service.password_fields(sql) == frozenset({"password"})
