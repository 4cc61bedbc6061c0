"""Requesting probe runs (the queue row and the job in one transaction), cron, the scheduler's
selection and the re-runs a review triggers. The worker side is in test_probe_queue.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from governance import probes
from governance.models.audit import AuditLog
from governance.models.enums import CheckStatus
from governance.models.evidence import EvidenceLink, EvidenceRevision
from governance.models.probes import Check, CheckControl, Probe, ProbeRun
from governance.services import evidence_review, probe_runs


def make_probe(session: Any, controls: list[Any], *, kind: str = "test_outcomes", enabled: bool = True,
               schedule: str | None = None, next_run_at: datetime | None = None,
               check_status: CheckStatus = CheckStatus.ACTIVE) -> Probe:
    probe = Probe(name=f"probe-{uuid.uuid4().hex[:8]}", kind=kind, enabled=enabled, schedule=schedule,
                  next_run_at=next_run_at, config={})
    session.add(probe)
    session.flush()
    for i, control in enumerate(controls):
        check = Check(probe_id=probe.id, control_id=control.id, name=f"check {i}", status=check_status)
        session.add(check)
        session.flush()
        session.add(CheckControl(check_id=check.id, control_id=control.id))
    session.flush()
    return probe


def jobs_of(session: Any, probe: Probe | uuid.UUID) -> list[Any]:
    probe_id = probe if isinstance(probe, uuid.UUID) else probe.id
    return session.execute(text(
        "SELECT id, task_name, queue_name, lock, queueing_lock, args, status FROM procrastinate_jobs "
        "WHERE queueing_lock = :l ORDER BY id"), {"l": f"probe:{probe_id}"}).all()


# --- cron --------------------------------------------------------------------------------------

def test_validate_cron_cleans_good_expressions_and_explains_bad_ones() -> None:
    assert probe_runs.validate_cron("  */15   *  * * * ") == "*/15 * * * *"
    assert probe_runs.validate_cron("0 6 * * 1-5") == "0 6 * * 1-5"
    for bad, words in (("", "Enter a cron expression"), ("* * * *", "five fields"),
                       ("0 0 0 * * *", "five fields"), ("61 * * * *", "not a valid cron"),
                       ("0 25 * * *", "not a valid cron"), ("every day", "five fields"),
                       ("a b c d e", "not a valid cron")):
        with pytest.raises(probes.ConfigError) as err:
            probe_runs.validate_cron(bad)
        assert err.value.field == "schedule"
        assert words in err.value.message, (bad, err.value.message)


def test_next_run_is_the_next_cron_time_in_utc() -> None:
    after = datetime(2026, 3, 1, 10, 7, 30, tzinfo=UTC)
    assert probe_runs.next_run("*/15 * * * *", after) == datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    assert probe_runs.next_run("0 6 * * *", after) == datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    # Strictly after: a probe due now is next due at the following tick.
    assert probe_runs.next_run("0 * * * *", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)) == \
        datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    # Another zone's time means the same instant.
    from zoneinfo import ZoneInfo
    paris = datetime(2026, 3, 1, 11, 7, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert probe_runs.next_run("*/15 * * * *", paris) == datetime(2026, 3, 1, 10, 15, tzinfo=UTC)


# --- request_run ---------------------------------------------------------------------------------

def test_run_now_queues_a_run_and_its_job_in_the_same_transaction(db_session, make_control, make_user) -> None:
    user = make_user("engineer")
    probe = make_probe(db_session, [make_control()])
    outer = db_session.begin_nested()
    request = probe_runs.submit_run(db_session, probe, trigger="manual", requested_by_id=user.id)
    run = request.run
    assert request.created and "queued" in request.message
    assert (run.status, run.trigger, run.requested_by_id) == ("queued", "manual", user.id)
    [job] = jobs_of(db_session, probe)
    assert run.job_id == job.id
    assert (job.task_name, job.queue_name, job.status) == ("gov:run_probe", "probes", "todo")
    assert job.lock == job.queueing_lock == f"probe:{probe.id}"
    assert job.args == {"run_id": str(run.id)}
    [entry] = db_session.scalars(select(AuditLog).where(AuditLog.action == "probe.run")).all()
    assert entry.object_id == str(probe.id)
    assert entry.details["trigger"] == "manual" and entry.details["run_id"] == str(run.id)

    # Rolled back, the run takes its job with it: no job without its run, or the reverse.
    outer.rollback()
    assert jobs_of(db_session, probe) == []
    assert db_session.scalars(select(ProbeRun).where(ProbeRun.probe_id == probe.id)).all() == []


def test_a_second_request_while_one_is_queued_joins_it(db_session, make_control, make_user) -> None:
    user = make_user("engineer")
    probe = make_probe(db_session, [make_control()])
    first = probe_runs.submit_run(db_session, probe, trigger="manual", requested_by_id=user.id)
    second = probe_runs.submit_run(db_session, probe, trigger="manual", requested_by_id=user.id)
    scheduled = probe_runs.request_run(db_session, probe, trigger="schedule", requested_by_id=None)
    assert second.run.id == first.run.id == scheduled.id
    assert not second.created and "already queued" in second.message
    assert len(jobs_of(db_session, probe)) == 1
    # Both manual requests are audited (the second says it joined); the scheduled one is not.
    entries = db_session.scalars(select(AuditLog).where(AuditLog.action == "probe.run")
                                 .order_by(AuditLog.seq)).all()
    assert [e.details["queued"] for e in entries] == [True, False]
    assert {e.details["trigger"] for e in entries} == {"manual"}


def test_a_request_while_a_run_executes_queues_the_next_one(db_session, make_control) -> None:
    probe = make_probe(db_session, [make_control()])
    first = probe_runs.request_run(db_session, probe, trigger="manual", requested_by_id=None)
    first.status = "running"  # what the worker does when it takes the run
    db_session.execute(text("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = :id"), {"id": first.job_id})
    db_session.flush()
    second = probe_runs.request_run(db_session, probe, trigger="manual", requested_by_id=None)
    assert second.id != first.id and second.status == "queued"
    # The shared lock is what keeps the two from executing at once (test_probe_queue proves it).
    assert [j.lock for j in jobs_of(db_session, probe)] == [f"probe:{probe.id}"] * 2


def test_a_disabled_probe_cannot_be_run(db_session, make_control) -> None:
    probe = make_probe(db_session, [make_control()], enabled=False)
    with pytest.raises(probe_runs.RunRefused) as err:
        probe_runs.request_run(db_session, probe, trigger="manual", requested_by_id=None)
    assert "disabled" in err.value.message
    assert jobs_of(db_session, probe) == []
    with pytest.raises(ValueError):
        probe_runs.request_run(db_session, make_probe(db_session, []), trigger="webhook", requested_by_id=None)


def test_runs_for_controls_reach_the_enabled_probes_of_that_kind_on_those_controls(
        db_session, make_control) -> None:
    a, b, other = make_control("A-1"), make_control("B-1"), make_control("C-1")
    on_a = make_probe(db_session, [a], kind="evidence_freshness")
    on_b_and_other = make_probe(db_session, [other, b], kind="evidence_freshness")
    disabled = make_probe(db_session, [a], kind="evidence_freshness", enabled=False)
    other_kind = make_probe(db_session, [a], kind="http_endpoint")
    elsewhere = make_probe(db_session, [other], kind="evidence_freshness")
    inactive = make_probe(db_session, [a], kind="evidence_freshness", check_status=CheckStatus.DISABLED)

    runs = probe_runs.request_runs_for_controls(db_session, [a.id, b.id, a.id], kind="evidence_freshness")
    assert {r.probe_id for r in runs} == {on_a.id, on_b_and_other.id}
    assert {r.trigger for r in runs} == {"schedule"}
    for probe in (disabled, other_kind, elsewhere, inactive):
        assert jobs_of(db_session, probe) == []
    assert probe_runs.request_runs_for_controls(db_session, [], kind="evidence_freshness") == []


def test_a_review_decision_reruns_the_freshness_checks_of_the_linked_controls(
        db_session, make_control, make_user, make_evidence, storage) -> None:
    control = make_control()
    uploader, auditor = make_user("engineer"), make_user("auditor")
    evidence = make_evidence(uploader, control=control)
    assert db_session.scalars(select(EvidenceLink).where(EvidenceLink.evidence_id == evidence.id)).all()
    freshness = make_probe(db_session, [control], kind="evidence_freshness")
    unrelated = make_probe(db_session, [make_control("X-9")], kind="evidence_freshness")
    revision = db_session.scalars(select(EvidenceRevision).where(EvidenceRevision.evidence_id == evidence.id)).one()
    evidence_review.review_revision(db_session, storage, evidence, revision, reviewer_id=auditor.id,
                                    decision="approve", comment="fine", lock_days=1, lock_mode="GOVERNANCE")
    [run] = db_session.scalars(select(ProbeRun).where(ProbeRun.probe_id == freshness.id)).all()
    assert run.status == "queued" and run.trigger == "schedule"
    assert len(jobs_of(db_session, freshness)) == 1
    assert jobs_of(db_session, unrelated) == []


# --- the scheduler's selection -------------------------------------------------------------------

def _session_factory(db_session: Any) -> Any:
    """schedule_due's session factory over the test's transaction (its commits are savepoints)."""
    return lambda: db_session()


def test_the_scheduler_requests_due_probes_once_and_moves_next_run_at(db_session, make_control) -> None:
    now = datetime(2026, 5, 4, 9, 30, 10, tzinfo=UTC)
    control = make_control()
    due = make_probe(db_session, [control], schedule="*/5 * * * *", next_run_at=now - timedelta(minutes=1))
    late = make_probe(db_session, [control], schedule="0 * * * *", next_run_at=now - timedelta(days=2))
    not_yet = make_probe(db_session, [control], schedule="*/5 * * * *", next_run_at=now + timedelta(minutes=3))
    never_computed = make_probe(db_session, [control], schedule="0 6 * * *", next_run_at=None)
    manual_only = make_probe(db_session, [control], schedule=None, next_run_at=None)
    disabled = make_probe(db_session, [control], enabled=False, schedule="* * * * *",
                          next_run_at=now - timedelta(minutes=1))
    due, late, not_yet, never_computed, manual_only, disabled = (
        p.id for p in (due, late, not_yet, never_computed, manual_only, disabled))  # ids outlive the session
    ids = {due, late, not_yet, never_computed, manual_only, disabled}
    db_session.commit()

    assert probe_runs.schedule_due(_session_factory(db_session), now=now) == 2
    assert probe_runs.schedule_due(_session_factory(db_session), now=now) == 0  # nothing is due twice

    by_id = {p.id: p for p in db_session.scalars(select(Probe).where(Probe.id.in_(ids)))}
    runs = db_session.scalars(select(ProbeRun).where(ProbeRun.probe_id.in_(ids))).all()
    assert sorted(str(r.probe_id) for r in runs) == sorted([str(due), str(late)])
    assert {r.trigger for r in runs} == {"schedule"}
    assert by_id[due].next_run_at == datetime(2026, 5, 4, 9, 35, tzinfo=UTC)
    assert by_id[late].next_run_at == datetime(2026, 5, 4, 10, 0, tzinfo=UTC)  # one run, not 48
    assert by_id[not_yet].next_run_at == now + timedelta(minutes=3)
    assert by_id[never_computed].next_run_at == datetime(2026, 5, 5, 6, 0, tzinfo=UTC)
    assert by_id[manual_only].next_run_at is None
    assert by_id[disabled].next_run_at == now - timedelta(minutes=1)
    # Scheduled runs are not audited one by one.
    assert db_session.scalars(select(AuditLog).where(AuditLog.action == "probe.run")).all() == []

    # At the next tick `due` is requested again (its run still waits: joined, not doubled) and
    # `not_yet` for the first time.
    later = datetime(2026, 5, 4, 9, 35, 5, tzinfo=UTC)
    assert probe_runs.schedule_due(_session_factory(db_session), now=later) == 2
    assert len(jobs_of(db_session, due)) == 1
    assert len(jobs_of(db_session, not_yet)) == 1
    assert jobs_of(db_session, late) and not jobs_of(db_session, never_computed)


def test_the_scheduler_clears_a_schedule_it_cannot_read(db_session, make_control) -> None:
    now = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    broken = make_probe(db_session, [make_control()], schedule="not a cron", next_run_at=now - timedelta(minutes=1))
    fine = make_probe(db_session, [make_control("B-2")], schedule="* * * * *", next_run_at=now).id
    broken_id = broken.id
    db_session.commit()
    assert probe_runs.schedule_due(_session_factory(db_session), now=now) == 1
    probe = db_session.get(Probe, broken_id)
    assert probe.schedule is None and probe.next_run_at is None
    assert "not a valid cron expression" in probe.last_error
    assert len(jobs_of(db_session, fine)) == 1
