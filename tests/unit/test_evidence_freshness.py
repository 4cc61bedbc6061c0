"""Evidence freshness: expiry of lapsed evidence and notices before it lapses, with explicit `now`
values; the daily job and the e-mail job through a real worker run; `flask evidence sweep`."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.orm import Session

from extensions import db
from governance import context, jobs
from governance.models.audit import AuditLog
from governance.models.enums import EvidenceStatus
from governance.models.evidence import Evidence, EvidenceRevision
from governance.models.notifications import Notification
from governance.services import evidence_freshness as freshness
from governance.services import identity
from tests.unit.test_notification_service import smtp_sink  # noqa: F401  (a fixture)

SWEEP = context.ActionContext(actor_name="job:evidence_freshness")


def _approve(db_session, evidence: Evidence) -> Evidence:
    """Set up approved evidence directly (the review flow itself is tested with the evidence pages)."""
    evidence.status = EvidenceStatus.APPROVED
    for revision in evidence.revisions:
        revision.status = EvidenceStatus.APPROVED
    db_session.commit()
    return evidence


def _with_status(db_session, evidence: Evidence, status: EvidenceStatus) -> Evidence:
    evidence.status = status
    db_session.commit()
    return evidence


def _notices(db_session) -> list[Notification]:
    return list(db_session.scalars(select(Notification).order_by(Notification.title)))


def _expire_entries(db_session) -> list[AuditLog]:
    return list(db_session.scalars(select(AuditLog).where(AuditLog.action == "evidence.expire")))


def _sweep(db_session, now: datetime, days: int = 14) -> tuple[tuple[int, int], int]:
    with context.acting_as(SWEEP):
        expired = freshness.mark_expired(db_session(), now)
        expiring = freshness.notify_expiring(db_session(), now, days)
    db_session.commit()
    return expired, expiring


def test_approved_and_in_review_evidence_past_its_expiry_expires_once(db_session, make_user, make_evidence) -> None:
    engineer, owner, bystander = make_user("engineer"), make_user("engineer"), make_user("auditor")
    approved = _approve(db_session, make_evidence(engineer, name="Approved, lapsed", expires_on="2026-05-10"))
    approved.owner_id = owner.id  # the owner, not the uploader, answers for it
    in_review = make_evidence(engineer, name="In review, lapsed", expires_on="2026-05-09")
    draft = make_evidence(engineer, name="Draft, lapsed", expires_on="2026-05-09", submit=False)
    rejected = _with_status(db_session, make_evidence(engineer, name="Rejected, lapsed", expires_on="2026-05-01"),
                            EvidenceStatus.REJECTED)
    still_valid = _approve(db_session, make_evidence(engineer, name="Approved, valid", expires_on="2026-05-11"))
    no_expiry = _approve(db_session, make_evidence(engineer, name="Approved, no expiry"))
    db_session.commit()
    # Expiry is the end of the expiry day (UTC): at midnight after 2026-05-10 the first one lapses.
    now = datetime(2026, 5, 11, 0, 0, tzinfo=UTC)

    (expired, told), _ = _sweep(db_session, now)

    assert (expired, told) == (2, 2)
    db_session.expire_all()
    assert approved.status == in_review.status == EvidenceStatus.EXPIRED
    assert draft.status == EvidenceStatus.DRAFT and rejected.status == EvidenceStatus.REJECTED
    assert still_valid.status == no_expiry.status == EvidenceStatus.APPROVED
    # The revisions keep their review state: who approved what stays true.
    assert {r.status for r in approved.revisions} == {EvidenceStatus.APPROVED}
    entries = {e.object_id: e for e in _expire_entries(db_session)}
    assert set(entries) == {str(approved.id), str(in_review.id)}
    entry = entries[str(approved.id)]
    assert entry.actor_name == "job:evidence_freshness" and entry.actor_id is None
    assert entry.details["before"] == {"status": "approved"} and entry.details["after"] == {"status": "expired"}
    assert entries[str(in_review.id)].details["before"] == {"status": "in_review"}
    notices = _notices(db_session)
    expired_notices = [n for n in notices if n.kind == "evidence_expired"]
    assert [(n.user_id, n.kind, n.title, n.link) for n in expired_notices] == [
        (owner.id, "evidence_expired", "Evidence expired: Approved, lapsed", f"/evidence/{approved.id}"),
        (engineer.id, "evidence_expired", "Evidence expired: In review, lapsed", f"/evidence/{in_review.id}"),
    ]
    assert "2026-05-10" in (expired_notices[0].body or "")
    # The one still valid (until the end of 2026-05-11) is within the notice period: told once.
    assert [(n.kind, n.user_id) for n in notices if n.kind != "evidence_expired"] == [
        ("evidence_expiring", engineer.id)]
    assert not any(n.user_id == bystander.id for n in notices)

    # Idempotent: the next run expires nothing and adds no entry or notice.
    assert _sweep(db_session, now) == ((0, 0), 0)
    assert len(_expire_entries(db_session)) == 2 and len(_notices(db_session)) == 3
    # Two days on, the one that was still valid lapses too: told once more, for that reason.
    assert _sweep(db_session, now + timedelta(days=2)) == ((1, 1), 0)
    assert _sweep(db_session, now + timedelta(days=2)) == ((0, 0), 0)
    assert len(_expire_entries(db_session)) == 3 and len(_notices(db_session)) == 4


def test_owners_of_approved_evidence_expiring_soon_get_one_notice_per_expiry_date(
        db_session, make_user, make_evidence) -> None:
    engineer, owner, bystander = make_user("engineer"), make_user("engineer"), make_user("compliance_officer")
    soon = _approve(db_session, make_evidence(engineer, name="Expires in three days", expires_on="2026-06-03"))
    soon.owner_id = owner.id
    edge = _approve(db_session, make_evidence(engineer, name="Expires at the horizon", expires_on="2026-06-13"))
    later = _approve(db_session, make_evidence(engineer, name="Expires in a month", expires_on="2026-07-01"))
    make_evidence(engineer, name="In review, expires soon", expires_on="2026-06-03")
    unowned = _approve(db_session, make_evidence(engineer, name="Collected by a probe", expires_on="2026-06-03"))
    unowned.owner_id = None
    db_session.commit()
    now = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # 14 days ahead: up to 2026-06-15 00:00

    assert _sweep(db_session, now) == ((0, 0), 2)

    notices = _notices(db_session)
    assert [(n.user_id, n.title) for n in notices] == [
        (engineer.id, "Evidence expires soon: Expires at the horizon"),
        (owner.id, "Evidence expires soon: Expires in three days"),
    ]
    by_title = {n.title: n for n in notices}
    three = by_title["Evidence expires soon: Expires in three days"]
    assert three.kind == "evidence_expiring" and three.link == f"/evidence/{soon.id}"
    assert three.dedup_key == f"evidence-expiring:{soon.id}:2026-06-04"
    assert "2026-06-03" in (three.body or "") and "3 day(s)" in (three.body or "")
    assert not any(n.user_id == bystander.id for n in notices)
    assert later.status == edge.status == EvidenceStatus.APPROVED

    # Daily runs repeat nothing; a new expiry date is a new occasion, told once more.
    assert _sweep(db_session, now + timedelta(days=1)) == ((0, 0), 0)
    soon.expires_at = datetime(2026, 6, 10, tzinfo=UTC)
    db_session.commit()
    assert _sweep(db_session, now + timedelta(days=1)) == ((0, 0), 1)
    assert len(_notices(db_session)) == 3
    assert db_session.scalar(select(func.count()).select_from(AuditLog)
                             .where(AuditLog.action == "evidence.expire")) == 0


def test_the_sweep_queries_use_the_partial_indexes(db_session) -> None:
    """EXPLAIN the statements the sweep really runs: approved evidence is found through
    ix_evidence_approved_expires_at, in-review evidence through a live-evidence index."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "evidence" in statement and not statement.lstrip().upper().startswith(("EXPLAIN", "INSERT")):
            captured.append((statement, parameters))

    connection = db_session.connection()
    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        now = datetime(2026, 6, 1, tzinfo=UTC)
        freshness.mark_expired(db_session(), now)
        freshness.notify_expiring(db_session(), now, 14)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert len(captured) == 3  # expire approved, expire in review, expiring soon
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plans = ["\n".join(str(r[0]) for r in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
             for statement, parameters in captured]
    assert "ix_evidence_approved_expires_at" in plans[0]
    # In review: a live-evidence index (on an almost empty table the planner may prefer the list's
    # (created_at, id) one to the status one; both are partial on deleted_at IS NULL), never a scan.
    assert "ix_evidence_live_" in plans[1] and "Seq Scan on evidence" not in plans[1]
    assert "ix_evidence_approved_expires_at" in plans[2]


def test_flask_evidence_sweep_runs_it_now_and_says_what_it_did(app, db_session, make_user, make_evidence) -> None:
    engineer = make_user("engineer")
    today = date.today()
    lapsed = _approve(db_session, make_evidence(engineer, name="Lapsed", expires_on=str(today - timedelta(days=2))))
    _approve(db_session, make_evidence(engineer, name="Soon", expires_on=str(today + timedelta(days=3))))

    result = app.test_cli_runner().invoke(args=["evidence", "sweep"])

    assert result.exit_code == 0, result.output
    assert "expired 1 evidence item(s) (1 owner notice(s)); 1 new notice(s) of expiry within 14 day(s)" in result.output
    assert "e-mail: not sent (SMTP_HOST is not set)" in result.output
    db_session.expire_all()
    assert lapsed.status == EvidenceStatus.EXPIRED
    [entry] = _expire_entries(db_session)
    assert entry.actor_name == "cli:evidence sweep"
    again = app.test_cli_runner().invoke(args=["evidence", "sweep", "--no-email"])
    assert "expired 0 evidence item(s) (0 owner notice(s)); 0 new notice(s)" in again.output
    assert "e-mail" not in again.output


# --- the jobs, through a real worker (committed data: clean_database) ---------------------------------


def test_freshness_and_delivery_are_scheduled(app) -> None:
    crons = {p.task.name: p.cron for p in app.extensions["jobs"].periodic_registry.periodic_tasks.values()}
    assert crons[jobs.EVIDENCE_FRESHNESS] == "5 0 * * *"
    assert crons[jobs.DELIVER_NOTIFICATIONS] == "*/5 * * * *"
    tasks = app.extensions["jobs"].tasks
    assert tasks[jobs.EVIDENCE_FRESHNESS].queueing_lock == "evidence_freshness"
    assert tasks[jobs.DELIVER_NOTIFICATIONS].queueing_lock == "deliver_notifications"


def _committed_evidence(session: Session, owner_id: uuid.UUID, name: str, status: EvidenceStatus,
                        expires_at: datetime) -> uuid.UUID:
    evidence_id = uuid.uuid4()
    key = f"evidence/{evidence_id}/{uuid.uuid4()}"
    sha = hashlib.sha256(name.encode()).hexdigest()
    session.add(Evidence(id=evidence_id, name=name, bucket="unused", object_key=key, size_bytes=1, sha256=sha,
                         owner_id=owner_id, uploaded_by_id=owner_id, revision_number=1, status=status,
                         expires_at=expires_at))
    session.flush()
    session.add(EvidenceRevision(evidence_id=evidence_id, number=1, bucket="unused", object_key=key, size_bytes=1,
                                 content_type="text/plain", sha256=sha, filename="e.txt", uploaded_by_id=owner_id,
                                 status=EvidenceStatus.APPROVED))
    session.commit()
    return evidence_id


def _run_worker(job_app: Any, task_name: str) -> int:
    with db.engine.begin() as conn:  # a periodic run a previous worker queued would hold the queueing lock
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = :t AND status = 'todo'"),
                     {"t": task_name})
    with job_app.open():
        job_id = int(job_app.configure_task(task_name).defer(timestamp=0))
    worker = threading.Thread(target=job_app.run_worker, kwargs={"wait": False, "install_signal_handlers": False})
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    return job_id


def _job_status(job_id: int) -> str | None:
    with db.engine.begin() as conn:
        status = conn.execute(text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}).scalar()
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id})
    return None if status is None else str(status)


def test_the_daily_job_expires_notifies_and_emails(app, clean_database, override_settings, smtp_sink) -> None:  # noqa: F811
    override_settings(smtp_host=smtp_sink.host, smtp_port=smtp_sink.port, smtp_starttls=False,
                      public_base_url="https://governance.example.org")
    now = datetime.now(UTC)
    with Session(db.engine) as session:
        owner = identity.create_user(session, email="owner-job@example.test", name="Owner",
                                     role_name="engineer", password="a long enough passphrase")
        session.commit()
        owner_id = owner.id
        lapsed = _committed_evidence(session, owner_id, "Lapsed in the job", EvidenceStatus.APPROVED,
                                     now - timedelta(hours=1))
        soon = _committed_evidence(session, owner_id, "Lapses soon", EvidenceStatus.APPROVED, now + timedelta(days=2))

    job_id = _run_worker(app.extensions["jobs"], jobs.EVIDENCE_FRESHNESS)

    assert _job_status(job_id) == "succeeded"
    with Session(db.engine) as session:
        assert session.get(Evidence, lapsed).status == EvidenceStatus.EXPIRED  # type: ignore[union-attr]
        assert session.get(Evidence, soon).status == EvidenceStatus.APPROVED  # type: ignore[union-attr]
        [entry] = session.scalars(select(AuditLog).where(AuditLog.action == "evidence.expire")).all()
        assert entry.actor_name == "job:evidence_freshness" and entry.object_id == str(lapsed)
        notices = session.scalars(select(Notification).where(Notification.user_id == owner_id)).all()
        assert sorted(n.kind for n in notices) == ["evidence_expired", "evidence_expiring"]
        assert all(n.emailed_at is not None for n in notices)
    subjects = sorted(m["Subject"] for m in smtp_sink.messages)
    assert subjects == ["Evidence expired: Lapsed in the job", "Evidence expires soon: Lapses soon"]
    texts = [m.get_payload(decode=True).decode() for m in smtp_sink.messages]
    assert f"https://governance.example.org/evidence/{lapsed}" in "\n".join(texts)


def test_the_delivery_job_sends_what_is_pending(app, clean_database, override_settings, smtp_sink) -> None:  # noqa: F811
    override_settings(smtp_host=smtp_sink.host, smtp_port=smtp_sink.port, smtp_starttls=False,
                      public_base_url="https://governance.example.org")
    with Session(db.engine) as session:
        user = identity.create_user(session, email="mail-job@example.test", name="Mail", role_name="auditor",
                                    password="a long enough passphrase")
        session.flush()
        session.add(Notification(user_id=user.id, kind="info", title="Delivered by the job", link="/notifications"))
        session.commit()

    job_id = _run_worker(app.extensions["jobs"], jobs.DELIVER_NOTIFICATIONS)

    assert _job_status(job_id) == "succeeded"
    assert [m["Subject"] for m in smtp_sink.messages] == ["Delivered by the job"]
    with Session(db.engine) as session:
        assert session.scalar(select(func.count()).select_from(Notification)
                              .where(Notification.emailed_at.is_(None))) == 0
        session.execute(delete(Notification))
        session.commit()


def test_expiry_queues_the_evidence_freshness_probes_of_its_controls(db_session, make_user, make_control,
                                                                       make_evidence) -> None:
    from governance.models.probes import Check, CheckControl, Probe, ProbeRun

    engineer = make_user("engineer")
    control, other = make_control("GV-1"), make_control("GV-2")
    evidence = _approve(db_session, make_evidence(engineer, control=control, expires_on="2026-01-31"))
    probes = {}
    for name, on in (("freshness", control), ("elsewhere", other)):
        probe = Probe(name=name, kind="evidence_freshness", config={})
        db_session.add(probe)
        db_session.flush()
        check = Check(probe_id=probe.id, control_id=on.id, name=f"{name} check", parameters={})
        db_session.add(check)
        db_session.flush()
        db_session.add(CheckControl(check_id=check.id, control_id=on.id))
        probes[name] = probe
    db_session.commit()

    _sweep(db_session, datetime(2026, 2, 1, 0, 0, 1, tzinfo=UTC))
    assert evidence.status == EvidenceStatus.EXPIRED
    runs = db_session.scalars(select(ProbeRun)).all()
    assert [(r.probe_id, r.status) for r in runs] == [(probes["freshness"].id, "queued")]
