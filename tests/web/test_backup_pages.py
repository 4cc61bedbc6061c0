"""The backups admin page: who sees it, what it shows, the two buttons (queued jobs, audited, CSRF),
and a bounded number of SQL statements whatever the history's length."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from governance import jobs
from governance.models.audit import AuditLog
from governance.models.enums import BackupKind, BackupStatus, DrillStatus
from governance.models.lifecycle import Backup, RestoreDrill
from tests.conftest import count_statements

URL = "/admin/backups"
HX = {"HX-Request": "true"}


def _backup(session: Any, *, kind: BackupKind = BackupKind.FULL, status: BackupStatus = BackupStatus.SUCCEEDED,
            finished_ago: timedelta | None = timedelta(hours=3), base: Backup | None = None,
            error: str | None = None) -> Backup:
    backup_id = uuid.uuid4()
    now = datetime.now(UTC)
    row = Backup(id=backup_id, kind=kind, status=status, bucket="backups", base_id=base.id if base else None,
                 object_key=f"backups/{backup_id}/database.dump.enc",
                 manifest_key=f"backups/{backup_id}/manifest.json.enc", started_by="job:backup_full",
                 size_bytes=3 * 1024 * 1024, tables=61, rows=12345, evidence_objects=7, tables_included=4,
                 finished_at=None if finished_ago is None else now - finished_ago, error=error,
                 created_at=now - (finished_ago or timedelta(0)) - timedelta(minutes=4))
    session.add(row)
    session.flush()
    return row


def _drill(session: Any, backup: Backup | None, *, problems: list[dict[str, str]] | None = None,
           ago: timedelta = timedelta(minutes=10)) -> RestoreDrill:
    row = RestoreDrill(created_at=datetime.now(UTC) - ago, backup_id=backup.id if backup else None,
                       status=DrillStatus.FAILED if problems else DrillStatus.PASSED,
                       finished_at=datetime.now(UTC), restore_seconds=None if backup is None else 12.5,
                       tables_checked=61, rows_checked=12345, objects_checked=7, chain_ok=not problems,
                       problems=problems or [], started_by="job:restore_drill")
    session.add(row)
    session.flush()
    return row


def _jobs(session: Any, task: str) -> list[Any]:
    return list(session.execute(text("SELECT id, status, lock, queueing_lock FROM procrastinate_jobs "
                                      "WHERE task_name = :t"), {"t": task}))


# --- who sees it -------------------------------------------------------------------------------------

def test_admins_compliance_officers_and_auditors_see_the_page_engineers_do_not(client, login_as) -> None:
    for role, buttons in (("admin", True), ("compliance_officer", False), ("auditor", False)):
        login_as(role)
        page = client.get(URL)
        assert page.status_code == 200, role
        html = page.get_data(as_text=True)
        assert "<h1>Backups and restore drills</h1>" in html
        assert ('>Back up now</button>' in html) is buttons, role
        assert ('>Run restore drill now</button>' in html) is buttons, role
        assert 'href="/admin/backups"' in html  # the Operations link and the sub-navigation
        client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html)[1]})
    login_as("engineer")
    assert client.get(URL).status_code == 403
    assert "Operations</a>" not in client.get("/").get_data(as_text=True)


def test_the_page_shows_status_backups_and_drills(client, login_as, db_session) -> None:
    full = _backup(db_session, finished_ago=timedelta(hours=5))
    diff = _backup(db_session, kind=BackupKind.DIFF, base=full, finished_ago=timedelta(hours=2))
    _backup(db_session, status=BackupStatus.FAILED, finished_ago=timedelta(minutes=30),
            error="pg_dump exited with status 1: connection refused")
    _drill(db_session, full, ago=timedelta(hours=1))
    _drill(db_session, diff, ago=timedelta(minutes=20),
           problems=[{"check": "rows", "message": "table users: expected 5 rows, found 4"}])
    db_session.commit()
    login_as("auditor")

    html = client.get(URL).get_data(as_text=True)

    status = html[html.index('id="status-last-backup"'):html.index('id="backups-heading"')]
    assert "2.0 h ago (limit 26 h)" in status and "too old" not in status
    assert "Failed" in status and "Restore time 12.5 s" in status and "1 problem" in status
    assert f'id="backup-{diff.id}"' in html and f'href="#backup-{full.id}"' in html
    assert "pg_dump exited with status 1: connection refused" in html
    assert "3.0 MiB" in html and "61 / 12,345 / 7" in html and "4 tables changed" in html
    assert "table users: expected 5 rows, found 4" in html
    assert "row counts against the manifest: failed" in html
    assert "audit hash chain and head: passed" in html


def test_a_stale_last_backup_is_flagged(client, login_as, db_session) -> None:
    db_session.execute(text("DELETE FROM backups"))
    _backup(db_session, finished_ago=timedelta(hours=40))
    db_session.commit()
    login_as("compliance_officer")

    html = client.get(URL).get_data(as_text=True)

    status = html[html.index('id="status-last-backup"'):html.index('id="status-last-drill"')]
    assert "ops-stat-bad" in html[html.index('<div class="ops-stat'):html.index('id="status-last-backup"')]
    assert "40.0 h ago (limit 26 h): <strong>too old</strong>" in status


# --- the buttons -------------------------------------------------------------------------------------

def test_back_up_now_queues_a_full_backup_once_and_audits_it(client, login_as, csrf_token, db_session) -> None:
    admin = login_as("admin")
    token = csrf_token(client.get(URL).get_data(as_text=True))

    first = client.post(f"{URL}/run", data={"csrf_token": token})

    assert first.status_code == 303 and first.headers["Location"].endswith(URL)
    queued = _jobs(db_session, jobs.BACKUP_FULL)
    assert len(queued) == 1 and queued[0].status == "todo"
    assert queued[0].lock == "backup" and queued[0].queueing_lock == "backup_full"
    assert "A full backup is queued" in client.get(URL).get_data(as_text=True)

    again = client.post(f"{URL}/run", data={"csrf_token": token})

    assert again.status_code == 303
    assert len(_jobs(db_session, jobs.BACKUP_FULL)) == 1
    assert "already waiting in the queue" in client.get(URL).get_data(as_text=True)
    entries = db_session.scalars(select(AuditLog).where(AuditLog.action == "backup.request")
                                 .order_by(AuditLog.seq)).all()
    assert [e.details["queued"] for e in entries] == [True, False]
    assert entries[0].actor_id == admin.id and entries[0].details["job_id"] == queued[0].id


def test_run_restore_drill_now_queues_the_drill_job_htmx_gets_a_location(client, login_as, csrf_token,
                                                                          db_session) -> None:
    login_as("admin")
    token = csrf_token(client.get(URL).get_data(as_text=True))

    response = client.post(f"{URL}/drill", data={"csrf_token": token}, headers=HX)

    assert response.status_code == 204 and response.headers["HX-Location"] == URL
    queued = _jobs(db_session, jobs.RESTORE_DRILL)
    assert len(queued) == 1 and queued[0].lock == "restore_drill"
    entry = db_session.scalars(select(AuditLog).where(AuditLog.action == "backup.drill_request")).one()
    assert entry.details["queued"] is True


def test_auditors_cannot_press_the_buttons_and_a_post_without_csrf_is_refused(client, login_as, csrf_token,
                                                                              db_session) -> None:
    login_as("auditor")
    token = csrf_token(client.get(URL).get_data(as_text=True))
    assert client.post(f"{URL}/run", data={"csrf_token": token}).status_code == 403
    assert client.post(f"{URL}/drill", data={"csrf_token": token}).status_code == 403
    client.post("/logout", data={"csrf_token": token})

    login_as("admin")
    assert client.post(f"{URL}/run", data={}).status_code == 400
    assert client.post(f"{URL}/drill", data={"csrf_token": "forged"}).status_code == 400
    assert _jobs(db_session, jobs.BACKUP_FULL) == [] and _jobs(db_session, jobs.RESTORE_DRILL) == []


# --- bounded ---------------------------------------------------------------------------------------

def _statements(client: Any) -> int:
    with count_statements() as statements:
        response = client.get(URL)
    assert response.status_code == 200
    return len(statements)


def test_the_page_runs_a_fixed_number_of_statements_and_lists_at_most_50(client, login_as, db_session) -> None:
    login_as("admin")
    base = _backup(db_session)
    _drill(db_session, base)
    db_session.commit()
    client.get(URL)  # warm: the first request of a session loads what later ones reuse
    few = _statements(client)

    for _ in range(60):
        _drill(db_session, _backup(db_session, kind=BackupKind.DIFF, base=base))
    db_session.commit()
    many = _statements(client)

    assert many == few
    html = client.get(URL).get_data(as_text=True)
    assert html.count('<tr id="backup-') == 50 and html.count('<tr id="drill-') == 50
