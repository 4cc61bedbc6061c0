"""Alert rules (governance.services.alerts): dedupe with a counter, concurrency, history, people's
actions, notifications, the rules' hooks (probe runs, evidence expiry, denial bursts), the sweep of
alerts raised in SQL, and e-mail of a new alert to a real SMTP sink."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from extensions import db
from governance import context, probes
from governance.models.audit import Alert, AlertEvent, AuditLog
from governance.models.enums import AlertStatus, ResultOutcome, Severity
from governance.models.frameworks import Control, Framework
from governance.models.notifications import Notification
from governance.models.probes import Check, CheckControl, Probe
from governance.models.tasks import Task
from governance.services import alerts, evidence_freshness, evidence_review, mail, probe_runs
from tests.conftest import count_statements
from tests.unit.test_notification_service import smtp_sink  # noqa: F401  (a fixture)


def _raise(session: Session, subject: Any, *, rule: str = alerts.CHECK_FAILING, severity: Severity = Severity.MEDIUM,
           owner_id: uuid.UUID | None = None, title: str = "Check x is failing", **kw: Any) -> Alert:
    return alerts.raise_alert(session, rule=rule, subject_type="check", subject_id=subject, title=title,
                              severity=severity, owner_id=owner_id, **kw)


def _events(session: Session, alert: Alert) -> list[str]:
    return [e.kind for e in session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert.id)
                                            .order_by(AlertEvent.created_at, AlertEvent.id))]


def _audit(session: Session, alert: Alert, action: str | None = None) -> list[AuditLog]:
    stmt = select(AuditLog).where(AuditLog.object_type == "alert", AuditLog.object_id == str(alert.id))
    if action:
        stmt = stmt.where(AuditLog.action == action)
    return list(session.scalars(stmt.order_by(AuditLog.seq)))


def _notified(session: Session, alert: Alert) -> set[uuid.UUID]:
    return set(session.scalars(select(Notification.user_id).where(Notification.link == f"/alerts/{alert.id}")))


def _acting(user: Any) -> Any:
    return context.acting_as(context.ActionContext(actor_id=user.id, actor_name=user.email))


# --- rules, dedupe, history --------------------------------------------------------------------------

def test_every_rule_is_described() -> None:
    names = {alerts.CHECK_FAILING, alerts.EVIDENCE_EXPIRED, alerts.DENIAL_BURST, alerts.SCHEMA_CHANGE,
             alerts.AUDIT_CHAIN, alerts.BACKUP_FAILED, alerts.DRILL_FAILED, alerts.BACKUP_STALE}
    assert set(alerts.RULES) == names
    assert alerts.DENIAL_BURST == "access.denied_burst" and alerts.DRILL_FAILED == "backup.drill_failed"
    for rule in alerts.RULES.values():
        assert rule.title and rule.clears and isinstance(rule.severity, Severity)
    assert alerts.RULES[alerts.AUDIT_CHAIN].severity == Severity.CRITICAL


def test_an_unknown_rule_is_refused(db_session) -> None:
    with pytest.raises(alerts.AlertRuleError) as err:
        _raise(db_session(), uuid.uuid4(), rule="made.up")
    assert err.value.field == "rule"


def test_a_repeat_counts_on_the_one_unresolved_alert_and_is_not_audited_again(db_session, make_user) -> None:
    owner = make_user("engineer")
    session = db_session()
    subject = uuid.uuid4()
    first = _raise(session, subject, owner_id=owner.id, message="observed 0.4")
    assert (first.occurrences, first.status, first.dedup_key) == (1, AlertStatus.OPEN, f"check.failing:{subject}")
    seen = first.last_seen_at
    again = _raise(session, subject, title="Check x is failing (again)", message=None)
    third = _raise(session, subject)
    assert again.id == first.id == third.id
    assert third.occurrences == 3 and third.last_seen_at > seen and third.first_seen_at == first.first_seen_at
    assert third.message == "observed 0.4"  # a repeat without a message keeps the last one
    assert third.owner_id == owner.id  # an owner found once sticks
    assert session.scalar(select(db.func.count()).select_from(Alert).where(Alert.dedup_key == first.dedup_key)) == 1
    assert _events(session, first) == ["raised"]
    [entry] = _audit(session, first)
    assert entry.action == "alert.raise" and entry.actor_name == "system:alerts" and entry.actor_id is None
    assert entry.details["rule"] == "check.failing" and entry.details["owner_id"] == str(owner.id)
    assert _notified(session, first) == {owner.id}  # once, however often it repeats


def test_a_repeat_only_escalates_severity_and_then_opens_its_task(db_session, make_user) -> None:
    owner = make_user("engineer")
    session = db_session()
    subject = uuid.uuid4()
    alert = _raise(session, subject, severity=Severity.MEDIUM, owner_id=owner.id)
    assert session.scalars(select(Task).where(Task.alert_id == alert.id)).all() == []
    _raise(session, subject, severity=Severity.LOW)
    assert alert.severity == Severity.MEDIUM
    _raise(session, subject, severity=Severity.HIGH)
    assert alert.severity == Severity.HIGH
    [task] = session.scalars(select(Task).where(Task.alert_id == alert.id)).all()
    assert task.assignee_id == owner.id


def test_concurrent_raises_from_two_connections_make_one_row(app, clean_database) -> None:
    factory = sessionmaker(db.engine, expire_on_commit=False)
    subject = uuid.uuid4()
    first = factory()
    alert = _raise(first, subject)  # inserted, not committed: the second waits on its index entry
    outcome: dict[str, Any] = {}

    def second() -> None:
        with factory() as other:
            outcome["id"] = _raise(other, subject).id
            other.commit()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the second raise should wait for the first transaction"
    first.commit()
    thread.join(30)
    assert not thread.is_alive()
    first.close()
    with factory() as check:
        rows = check.scalars(select(Alert).where(Alert.dedup_key == f"check.failing:{subject}")).all()
        assert [(r.id, r.occurrences) for r in rows] == [(alert.id, 2)]
        assert outcome["id"] == alert.id
        assert _events(check, rows[0]) == ["raised"]


def test_a_resolved_alert_recurring_opens_a_new_one_and_keeps_the_old(db_session, make_user) -> None:
    officer = make_user("compliance_officer")
    session = db_session()
    subject = uuid.uuid4()
    old = _raise(session, subject)
    with _acting(officer):
        alerts.resolve(session, old.id, comment="Fixed the config")
    new = _raise(session, subject)
    assert new.id != old.id and new.occurrences == 1 and new.status == AlertStatus.OPEN
    assert old.status == AlertStatus.RESOLVED and old.resolution == "Fixed the config"
    assert _events(session, new) == ["raised"]
    assert _events(session, old) == ["raised", "resolved"]


def test_acknowledge_and_resolve_are_audited_with_who_and_history(db_session, make_user) -> None:
    officer = make_user("compliance_officer")
    session = db_session()
    alert = _raise(session, uuid.uuid4())
    with _acting(officer):
        alerts.acknowledge(session, alert.id, comment="Looking into it")
        with pytest.raises(alerts.AlertRuleError) as twice:
            alerts.acknowledge(session, alert.id)
        assert twice.value.field == "status"
        for empty in (None, "", "   "):
            with pytest.raises(alerts.AlertRuleError) as err:
                alerts.resolve(session, alert.id, comment=empty)
            assert err.value.field == "comment" and "how" in err.value.message
        alerts.resolve(session, alert.id, comment="  Rotated the key  ")
        with pytest.raises(alerts.AlertRuleError) as again:
            alerts.resolve(session, alert.id, comment="again")
        assert again.value.field == "status"
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_by_id == officer.id
    assert alert.acknowledged_by_id == officer.id and alert.acknowledged_at and alert.resolved_at
    assert alert.resolution == "Rotated the key"
    events = session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert.id)
                             .order_by(AlertEvent.created_at, AlertEvent.id)).all()
    assert [(e.kind, e.actor_id, e.comment) for e in events] == [
        ("raised", None, None), ("acknowledged", officer.id, "Looking into it"),
        ("resolved", officer.id, "Rotated the key")]
    ack, res = _audit(session, alert, "alert.acknowledge"), _audit(session, alert, "alert.resolve")
    assert ack[0].actor_id == officer.id and ack[0].details["before"]["status"] == "open"
    assert ack[0].details["after"]["status"] == "acknowledged"
    assert res[0].details["before"]["status"] == "acknowledged"
    assert res[0].details["after"]["resolution"] == "Rotated the key"
    with pytest.raises(alerts.AlertRuleError) as missing:
        alerts.acknowledge(session, uuid.uuid4())
    assert missing.value.field == "alert"


def test_clear_auto_resolves_with_the_reason_and_is_audited(db_session) -> None:
    session = db_session()
    subject = uuid.uuid4()
    assert alerts.clear(session, rule=alerts.CHECK_FAILING, subject_id=subject, reason="passed") is None
    alert = _raise(session, subject)
    cleared = alerts.clear(session, rule=alerts.CHECK_FAILING, subject_id=subject, reason="the check passed")
    assert cleared is not None and cleared.id == alert.id
    assert (alert.status, alert.resolution, alert.resolved_by_id) == (AlertStatus.RESOLVED, "the check passed", None)
    assert alert.resolved_at is not None
    assert _events(session, alert) == ["raised", "auto_resolved"]
    [entry] = _audit(session, alert, "alert.auto_resolve")
    assert entry.details["before"]["status"] == "open" and entry.details["after"]["status"] == "resolved"
    assert alerts.clear(session, rule=alerts.CHECK_FAILING, subject_id=subject, reason="again") is None


# --- who is told, and the task -------------------------------------------------------------------------

def test_the_owner_is_told_and_responders_hear_of_urgent_or_ownerless_alerts(db_session, make_user) -> None:
    owner, admin, officer = make_user("engineer"), make_user("admin"), make_user("compliance_officer")
    auditor, inactive = make_user("auditor"), make_user("admin")
    inactive.is_active = False
    db_session.commit()
    session = db_session()
    medium = _raise(session, uuid.uuid4(), owner_id=owner.id)
    assert _notified(session, medium) == {owner.id}
    high = _raise(session, uuid.uuid4(), severity=Severity.HIGH, owner_id=owner.id)
    told = _notified(session, high)
    assert {owner.id, admin.id, officer.id} <= told and auditor.id not in told and inactive.id not in told
    ownerless = _raise(session, uuid.uuid4())
    assert {admin.id, officer.id} <= _notified(session, ownerless) and owner.id not in _notified(session, ownerless)
    notice = session.scalars(select(Notification).where(Notification.user_id == owner.id,
                                                        Notification.link == f"/alerts/{high.id}")).one()
    assert notice.kind == "alert" and notice.title == "[high] Check x is failing"


def test_a_high_alert_opens_one_task_and_a_medium_one_none(db_session, make_user) -> None:
    owner = make_user("engineer")
    session = db_session()
    high = _raise(session, uuid.uuid4(), severity=Severity.CRITICAL, owner_id=owner.id)
    medium = _raise(session, uuid.uuid4(), severity=Severity.MEDIUM, owner_id=owner.id)
    [task] = session.scalars(select(Task).where(Task.alert_id == high.id)).all()
    assert task.assignee_id == owner.id and task.priority == Severity.CRITICAL
    assert session.scalars(select(Task).where(Task.alert_id == medium.id)).all() == []


# --- hooks: probe runs -----------------------------------------------------------------------------------

@dataclasses.dataclass
class ParamKind:
    """Each check's parameters say its outcome."""

    name: str = "test_alert_outcomes"
    label: str = "Alert test kind"
    description: str = "Outcomes from the check's parameters."
    config_fields: tuple[tuple[str, str, str, bool], ...] = ()
    parameter_fields: tuple[tuple[str, str, str, bool], ...] = ()

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        return dict(parameters)

    def run(self, ctx: probes.RunContext, config: Mapping[str, Any],
            checks: list[probes.CheckSpec]) -> list[probes.Observation]:
        return [probes.Observation(check_id=c.id, outcome=ResultOutcome(c.parameters["outcome"]),
                                   message=f"{c.name}: {c.parameters['outcome']}") for c in checks]


@pytest.fixture
def factory(app, clean_database) -> Iterator[sessionmaker[Session]]:
    probes.kinds()
    kind = ParamKind()
    probes.register(kind)
    with db.engine.connect() as conn:
        first_job = conn.execute(text("SELECT coalesce(max(id), 0) FROM procrastinate_jobs")).scalar_one()
    yield sessionmaker(db.engine, expire_on_commit=False)
    probes._REGISTRY.pop(kind.name, None)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE id > :id"), {"id": first_job})


def _run(app: Any, factory: sessionmaker[Session], probe_id: uuid.UUID) -> None:
    with factory() as session:
        run = probe_runs.request_run(session, session.get_one(Probe, probe_id), trigger="manual", requested_by_id=None)
        session.commit()
    assert probe_runs.execute_run(factory, None, app.config["SETTINGS"], run.id) == "succeeded"
    # Executed here rather than by a worker: its job would keep the next request waiting behind it.
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE queueing_lock = :l"),
                     {"l": probe_runs.lock_name(probe_id)})


def test_a_probe_run_raises_failing_checks_and_a_later_pass_clears_them(app, factory) -> None:
    from governance.services import identity

    with factory() as session:
        probe_owner = identity.create_user(session, email=f"p-{uuid.uuid4().hex[:6]}@example.test", name="Probe Owner",
                                           role_name="engineer", password="Correct-Horse-9-battery")
        control_owner = identity.create_user(session, email=f"c-{uuid.uuid4().hex[:6]}@example.test",
                                             name="Control Owner", role_name="engineer",
                                             password="Correct-Horse-9-battery")
        framework = Framework(title=f"Alerts {uuid.uuid4().hex[:6]}", version="1")
        session.add(framework)
        session.flush()
        owned = Probe(name=f"owned-{uuid.uuid4().hex[:6]}", kind="test_alert_outcomes", config={},
                      owner_id=probe_owner.id)
        unowned = Probe(name=f"unowned-{uuid.uuid4().hex[:6]}", kind="test_alert_outcomes", config={})
        session.add_all([owned, unowned])
        session.flush()
        checks: dict[str, Check] = {}
        for probe, name, outcome, severity in (
                (owned, "fails", "non_compliant", Severity.HIGH), (owned, "errors", "error", Severity.LOW),
                (owned, "passes", "compliant", Severity.HIGH), (owned, "partial", "partial", Severity.HIGH),
                (unowned, "orphan", "non_compliant", Severity.LOW)):
            control = Control(framework_id=framework.id, ref_id=f"A-{name}", title=name, owner_id=control_owner.id)
            session.add(control)
            session.flush()
            check = Check(probe_id=probe.id, control_id=control.id, name=name, severity=severity,
                          parameters={"outcome": outcome})
            session.add(check)
            session.flush()
            session.add(CheckControl(check_id=check.id, control_id=control.id))
            checks[name] = check
        session.commit()
    _run(app, factory, owned.id)
    _run(app, factory, unowned.id)
    with factory() as session:
        found = {a.source_id: a for a in session.scalars(select(Alert).where(
            Alert.rule == alerts.CHECK_FAILING, Alert.source_id.in_([str(c.id) for c in checks.values()])))}
        assert set(found) == {str(checks[n].id) for n in ("fails", "errors", "orphan")}
        fails, errors, orphan = (found[str(checks[n].id)] for n in ("fails", "errors", "orphan"))
        assert (fails.severity, fails.owner_id, fails.source_type) == (Severity.HIGH, probe_owner.id, "check")
        assert errors.severity == Severity.MEDIUM  # an error is at least medium
        assert "cannot be evaluated" in errors.title and fails.message == "fails: non_compliant"
        assert orphan.owner_id == control_owner.id and orphan.severity == Severity.LOW
        assert fails.details["control"] == "A-fails" and fails.details["outcome"] == "non_compliant"
        [task] = session.scalars(select(Task).where(Task.alert_id == fails.id)).all()
        assert task.assignee_id == probe_owner.id and task.control_id == checks["fails"].control_id
        assert task.probe_id == owned.id
        # The next run fails again (counted) except "fails", which passes now.
        session.execute(update(Check).where(Check.id == checks["fails"].id)
                        .values(parameters={"outcome": "compliant"}))
        session.commit()
    _run(app, factory, owned.id)
    with factory() as session:
        fails = session.get_one(Alert, fails.id)
        errors = session.get_one(Alert, errors.id)
        assert fails.status == AlertStatus.RESOLVED and fails.resolution == "the check passed again"
        assert errors.status == AlertStatus.OPEN and errors.occurrences == 2
        assert _events(session, fails) == ["raised", "auto_resolved"]


# --- hooks: evidence expiry and renewal ------------------------------------------------------------------

def test_expired_evidence_raises_an_alert_and_an_approved_renewal_clears_it(db_session, make_user, make_evidence,
                                                                             storage) -> None:
    from governance.models.evidence import EvidenceRevision
    from governance.services import evidence as evidence_service

    owner, reviewer = make_user("engineer"), make_user("auditor")
    evidence = make_evidence(owner, name="Pen test 2025")
    session = db_session()
    revision = session.scalars(select(EvidenceRevision).where(EvidenceRevision.evidence_id == evidence.id)).one()
    evidence_review.review_revision(session, storage, evidence, revision, reviewer_id=reviewer.id,
                                    decision="approve", comment=None, lock_days=1, lock_mode="GOVERNANCE")
    evidence.expires_at = datetime.now(UTC) - timedelta(days=1)
    session.flush()
    evidence_freshness.sweep(session, app_settings(), datetime.now(UTC))
    [alert] = session.scalars(select(Alert).where(Alert.rule == alerts.EVIDENCE_EXPIRED)).all()
    assert (alert.source_type, alert.source_id, alert.owner_id) == ("evidence", str(evidence.id), owner.id)
    assert alert.title == "Evidence expired: Pen test 2025" and alert.severity == Severity.MEDIUM
    # The owner hears of it once, in the expiry notice's words (not a second, alert-kind notice).
    kinds = session.scalars(select(Notification.kind).where(Notification.user_id == owner.id)).all()
    assert "evidence_expired" in kinds and "alert" not in kinds
    # A second sweep finds nothing more to expire: the alert stays one.
    evidence_freshness.sweep(session, app_settings(), datetime.now(UTC))
    assert session.get_one(Alert, alert.id).occurrences == 1

    # Renewal: a new revision (uploaded as the upload pipeline stores it) with a later expiry, approved.
    data = b"%PDF-1.4 renewed\n"
    key = evidence_service.object_key(evidence.id) + "-r2"
    stored = storage.put(key, data, content_type="application/pdf")
    upload = evidence_service.StoredUpload(bucket=storage.bucket, key=key, version_id=stored.version_id,
                                           size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                           content_type="application/pdf", filename="renewed.pdf")
    second = evidence_service.add_revision(session, evidence, upload, uploaded_by_id=owner.id)
    evidence.expires_at = datetime.now(UTC) + timedelta(days=365)
    session.flush()
    assert alert.status == AlertStatus.OPEN  # uploading is not renewing: the approval is
    evidence_review.review_revision(session, storage, evidence, second, reviewer_id=reviewer.id,
                                    decision="approve", comment=None, lock_days=1, lock_mode="GOVERNANCE")
    session.refresh(alert)
    assert alert.status == AlertStatus.RESOLVED and alert.resolution == "revision 2 was approved"


def app_settings() -> Any:
    from flask import current_app

    return current_app.config["SETTINGS"]


# --- the sweep -----------------------------------------------------------------------------------------

def test_the_sweep_handles_an_alert_inserted_by_raw_sql(db_session, make_user) -> None:
    admin = make_user("admin")
    session = db_session()
    alert_id = session.execute(text(
        "INSERT INTO alerts (rule, severity, title, source_type, source_id, dedup_key, details) "
        "VALUES ('schema.change', 'high', 'ALTER TABLE users', 'schema', 'public.users', "
        "'schema.change:public.users', '{\"command\": \"ALTER TABLE\"}') RETURNING id")).scalar_one()
    # (Other alerts raised in SQL alone, e.g. by DDL the suite ran, are handled too.)
    assert alerts.process_unhandled(session) >= 1
    alert = session.get_one(Alert, alert_id)
    assert _events(session, alert) == ["raised"]
    assert [e.action for e in _audit(session, alert)] == ["alert.raise"]
    assert admin.id in _notified(session, alert)  # ownerless and high: the responders
    [task] = session.scalars(select(Task).where(Task.alert_id == alert_id)).all()
    assert task.assignee_id is None and task.priority == Severity.HIGH
    assert alerts.process_unhandled(session) == 0  # handled once
    assert _events(session, alert) == ["raised"]


def test_the_sweep_clears_denial_bursts_whose_window_passed_quietly(db_session, make_user) -> None:
    quiet_user, busy_user = make_user("engineer"), make_user("engineer")
    session = db_session()
    settings = app_settings()
    quiet = alerts.raise_alert(session, rule=alerts.DENIAL_BURST, subject_type="user", subject_id=quiet_user.id,
                               title="burst", severity=Severity.HIGH)
    busy = alerts.raise_alert(session, rule=alerts.DENIAL_BURST, subject_type="user", subject_id=busy_user.id,
                              title="burst", severity=Severity.HIGH)
    recent = alerts.raise_alert(session, rule=alerts.DENIAL_BURST, subject_type="user", subject_id=uuid.uuid4(),
                                title="burst", severity=Severity.HIGH)
    old = datetime.now(UTC) - timedelta(minutes=settings.denial_alert_window_minutes + 1)
    session.execute(update(Alert).where(Alert.id.in_([quiet.id, busy.id])).values(last_seen_at=old))
    # busy_user was refused again within the window (below the threshold: no repeat raised).
    from governance.services import audit

    with _acting(busy_user):
        audit.record(session, "access.denied", object_type="endpoint", object_id="admin.users", outcome="denied")
    alerts.process_unhandled(session)
    for a in (quiet, busy, recent):
        session.refresh(a)
    assert quiet.status == AlertStatus.RESOLVED and "no refused request" in (quiet.resolution or "")
    assert busy.status == AlertStatus.OPEN and recent.status == AlertStatus.OPEN


def test_the_denial_burst_flow_raises_one_alert_counts_repeats_and_opens_a_task(app, client, login_as,
                                                                                 db_session) -> None:
    settings = app.config["SETTINGS"]
    engineer = login_as("engineer")
    for _ in range(settings.denial_alert_threshold + 2):
        assert client.get("/admin/users").status_code == 403
    [alert] = db_session.scalars(select(Alert).where(Alert.dedup_key == f"access.denied_burst:{engineer.id}")).all()
    assert alert.occurrences == 3 and alert.severity == Severity.HIGH and alert.source_type == "user"
    assert alert.details["denials"] == settings.denial_alert_threshold + 2
    assert _events(db_session(), alert) == ["raised"]
    [entry] = _audit(db_session(), alert, "alert.raise")
    assert entry.actor_name == "system:alerts"  # raised by the system, not by the refused user
    assert len(db_session.scalars(select(Task).where(Task.alert_id == alert.id)).all()) == 1


# --- the jobs and e-mail ----------------------------------------------------------------------------

def test_the_sweep_is_scheduled_every_minute(app) -> None:
    from governance import jobs

    job_app = app.extensions["jobs"]
    [periodic] = [p for p in job_app.periodic_registry.periodic_tasks.values()
                  if p.task.name == jobs.PROCESS_ALERTS]
    assert periodic.cron == "* * * * *"


def test_a_new_alert_is_emailed_to_its_owner(app, db_session, make_user, override_settings,
                                             smtp_sink) -> None:  # noqa: F811
    settings = override_settings(smtp_host=smtp_sink.host, smtp_port=smtp_sink.port, smtp_starttls=False,
                                 smtp_username=None, smtp_password=None)
    owner = make_user("engineer")
    session = db_session()
    alert = _raise(session, uuid.uuid4(), owner_id=owner.id, title="Model card check is failing",
                   message="The model card is missing its intended-use section.")
    delivery = mail.deliver_pending(session, settings)
    assert delivery.sent >= 1
    [message] = [m for m in smtp_sink.messages if m["To"] and owner.email in m["To"]]
    assert "Model card check is failing" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    assert f"/alerts/{alert.id}" in body and "intended-use" in body


# --- queries ------------------------------------------------------------------------------------------

def test_list_alerts_filters_and_pages_by_keyset(db_session) -> None:
    session = db_session()
    made = [_raise(session, uuid.uuid4(), severity=Severity.HIGH if i % 2 else Severity.LOW) for i in range(5)]
    alerts.resolve(session, made[0].id, comment="done")
    ids = {a.id for a in made}
    first = alerts.list_alerts(session, limit=2)
    seen = [a.id for a in first.items]
    cursor = first.next_cursor
    while cursor is not None:
        page = alerts.list_alerts(session, after=cursor, limit=2)
        seen += [a.id for a in page.items]
        cursor = page.next_cursor
    assert [i for i in seen if i in ids] == [a.id for a in reversed(made)]
    active = alerts.list_alerts(session, status="active", limit=200).items
    assert made[0].id not in {a.id for a in active} and made[1].id in {a.id for a in active}
    high = alerts.list_alerts(session, severity="high", rule=alerts.CHECK_FAILING, limit=200).items
    assert {a.id for a in high} & ids == {made[1].id, made[3].id}
    resolved = alerts.list_alerts(session, status=AlertStatus.RESOLVED, limit=200).items
    assert made[0].id in {a.id for a in resolved}
    counts = alerts.counts_by_status(session)
    assert counts[AlertStatus.RESOLVED] >= 1 and counts[AlertStatus.OPEN] >= 4
    assert alerts.open_count(session) >= 4 and alerts.open_count(session, cap=2) == 2
    with count_statements() as statements:
        alerts.list_alerts(session, status="active", severity="high", limit=50)
    assert len(statements) == 1
