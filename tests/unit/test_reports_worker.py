"""gov:render_report end to end: a real worker (as `flask jobs worker`) renders a committed
request in its REPEATABLE READ snapshot and stores the file in the evidence bucket."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, date

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from extensions import db
from governance.models import Control, Framework, Report, ReportFormat, ReportScope, ReportStatus
from governance.services.reports import service


def test_the_task_is_registered_on_its_queue(app) -> None:
    task = app.extensions["jobs"].tasks["gov:render_report"]
    assert task.queue == service.QUEUE == "reports"


def test_a_worker_renders_a_committed_request(app, clean_database) -> None:
    with Session(db.engine) as session:
        framework = Framework(title="Worker report framework", version="1")
        session.add(framework)
        session.flush()
        session.add(Control(framework_id=framework.id, ref_id="WK-1", title="Worker control"))
        session.flush()
        report = service.request_report(session, scope=ReportScope.FRAMEWORK, target_id=framework.id,
                                        fmt=ReportFormat.CSV, period=(date(2026, 1, 1), date(2026, 3, 31)),
                                        requested_by_id=None)
        report_id = report.id
        session.commit()

    job_app = app.extensions["jobs"]
    # In a thread of its own, as in tests/unit/test_jobs.py (asyncio.run needs a thread with no loop).
    worker = threading.Thread(target=job_app.run_worker,
                              kwargs={"queues": ["reports"], "wait": False, "install_signal_handlers": False})
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()

    with Session(db.engine) as session:
        done = session.scalars(select(Report).where(Report.id == report_id)).one()
        assert done.status == ReportStatus.SUCCEEDED, done.error
        body = b"".join(app.extensions["storage"].open(done.object_key, bucket=done.bucket))
        assert hashlib.sha256(body).hexdigest() == done.sha256 and b"WK-1" in body
        assert done.as_of is not None and done.as_of.astimezone(UTC).isoformat().encode() in body
        key, bucket = done.object_key, done.bucket
        session.execute(text("DELETE FROM procrastinate_jobs WHERE args->>'report_id' = :id"),
                        {"id": str(report_id)})
        session.commit()
    app.extensions["storage"].delete(key, bucket=bucket)
