"""The job queue: procrastinate on the same PostgreSQL, with the periodic partition maintenance."""

from __future__ import annotations

import threading
from datetime import date

from sqlalchemy import text
from sqlalchemy.orm import Session

from extensions import db
from governance import jobs
from governance.services import partitions


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _partition_exists(name: str) -> bool:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar_one()


def test_partition_maintenance_is_scheduled_daily(app) -> None:
    job_app = app.extensions["jobs"]
    [periodic] = [p for p in job_app.periodic_registry.periodic_tasks.values()
                  if p.task.name == jobs.MAINTAIN_PARTITIONS]
    assert periodic.cron == "17 3 * * *"


def test_a_worker_runs_the_maintenance_job_and_recreates_a_missing_partition(app, clean_database,
                                                                            admin_engine) -> None:
    # The worker is the service login, which may not create tables: the job uses the admin URL.
    ahead = _add_months(date.today().replace(day=1), 3)
    name = f"audit_logs_p{ahead:%Y_%m}"
    with admin_engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    assert not _partition_exists(name)

    try:
        job_app = app.extensions["jobs"]
        with job_app.open():
            job_id = job_app.configure_task(jobs.MAINTAIN_PARTITIONS).defer(timestamp=0)
        # In a thread of its own, as in `flask jobs worker`: asyncio.run() needs a thread with no loop
        # (Playwright's sync API keeps one running in the main thread once browser tests have run).
        worker = threading.Thread(target=job_app.run_worker,
                                  kwargs={"wait": False, "install_signal_handlers": False})
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive()

        assert _partition_exists(name)
        with db.engine.connect() as conn:
            status = conn.execute(text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}).scalar()
            assert status == "succeeded"
            conn.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id})
            conn.commit()
    finally:  # whatever happened, leave the partitions as the migration made them
        with admin_engine.begin() as conn:
            partitions.ensure_partitions(Session(bind=conn), months_ahead=3)
