"""Background jobs on procrastinate (a PostgreSQL-backed queue: no extra infrastructure).

app.create_app() calls build_app() with the configured database, a session factory and the app's
config (for its settings), so tasks run the same services as the web layer. `flask jobs worker` runs them
(Procfile `worker`, and `make run` starts one), including the periodic ones.

Probe runs (governance.services.probe_runs) are `gov:run_probe` jobs on the "probes" queue, deferred
by request_run in the transaction that creates the run; `gov:schedule_probes` ticks every minute
and queues the probes whose cron time has come.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import procrastinate
from procrastinate.retry import BaseRetryStrategy
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from governance import context
from governance.probes import TransientProbeError
from governance.services import alerts, evidence_freshness, mail, partitions, probe_runs
from governance.storage import Storage

log = logging.getLogger(__name__)

NAMESPACE = "gov"
MAINTAIN_PARTITIONS = f"{NAMESPACE}:maintain_partitions"
EVIDENCE_FRESHNESS = f"{NAMESPACE}:evidence_freshness"
DELIVER_NOTIFICATIONS = f"{NAMESPACE}:deliver_notifications"
PROCESS_ALERTS = f"{NAMESPACE}:process_alerts"
AUDIT_ANCHOR = f"{NAMESPACE}:audit_anchor"
AUDIT_VERIFY = f"{NAMESPACE}:audit_verify"
BACKUP_FULL = f"{NAMESPACE}:backup_full"
BACKUP_DIFF = f"{NAMESPACE}:backup_diff"
RESTORE_DRILL = f"{NAMESPACE}:restore_drill"
BACKUP_AGE_CHECK = f"{NAMESPACE}:backup_age_check"
RETENTION = f"{NAMESPACE}:retention"
RUN_PROBE = probe_runs.RUN_PROBE
SCHEDULE_PROBES = probe_runs.SCHEDULE_PROBES


def libpq_conninfo(database_url: str) -> str:
    """psycopg wants a libpq URI: drop SQLAlchemy's +driver suffix."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def maintain_partitions_now(session_factory: Callable[[], Session], months_ahead: int = 3) -> list[str]:
    ctx = context.ActionContext(actor_name="job:maintain_partitions")
    with context.acting_as(ctx), session_factory() as session:
        created = partitions.ensure_partitions(session, months_ahead=months_ahead)
        session.commit()
    if created:
        log.info("created partitions: %s", ", ".join(created))
    return created


def admin_session_factory(settings: Any) -> Callable[[], Session]:
    """Sessions on settings.admin_database_url, for jobs that need DDL or owner rights
    (docs/database-security.md). Unpooled: such jobs are rare and short."""
    from sqlalchemy.orm import sessionmaker

    from governance.services import db_roles

    return sessionmaker(db_roles.admin_engine(settings))


def evidence_freshness_now(session_factory: Callable[[], Session], settings: Any) -> evidence_freshness.SweepResult:
    """Expire lapsed evidence and warn owners of what lapses soon, then e-mail what is pending."""
    result = evidence_freshness.run_freshness(session_factory, settings, actor_name="job:evidence_freshness")
    mail.deliver_pending_now(session_factory, settings)
    return result


def process_alerts_now(session_factory: Callable[[], Session], settings: Any) -> int:
    """The alerts sweep (alerts raised in SQL get their event, audit entry, notices and task; quiet
    denial bursts clear), then e-mail what is pending so a new alert reaches inboxes within a minute."""
    with context.acting_as(context.ActionContext(actor_name="job:process_alerts")), session_factory() as session:
        handled = alerts.process_unhandled(session, settings=settings)
        session.commit()
    if handled:
        log.info("alerts sweep: %d alert(s) handled", handled)
        mail.deliver_pending_now(session_factory, settings)
    return handled


def storage_from_settings(settings: Any) -> Storage:
    return Storage.from_settings(settings)


def build_app(database_url: str, session_factory: Callable[[], Session],
              app_config: Mapping[str, Any], *, storage: Callable[[], Any] | None = None,
              probe_retry: BaseRetryStrategy | None = None) -> procrastinate.App:
    """A procrastinate App on this database with every task registered on it. Tasks read their
    settings (SMTP, expiry notice days, probe timeout) from app_config["SETTINGS"] (the Flask app's
    config) when they run, so they see the settings the app has then.

    storage: the object store probe kinds read (default: one built from the settings);
    probe_retry: the retry strategy of probe runs (default probe_runs.RETRY; tests shorten it).

    Tasks are registered per App (not on a shared Blueprint, whose periodic schedule only the first
    App would receive) so each app built carries its schedule: one per process, several in tests.
    """
    def settings() -> Any:
        return app_config["SETTINGS"]

    stores: dict[str, Any] = {}

    def object_store() -> Any:
        if storage is not None:
            return storage()
        if "default" not in stores:
            stores["default"] = storage_from_settings(settings())
        return stores["default"]

    retry = probe_retry or probe_runs.RETRY

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_conninfo(database_url)),
    )

    # Daily, so the coming months' partitions exist long before rows arrive for them; the queueing
    # lock keeps a backlog from piling up if no worker ran for a while.
    @app.periodic(cron="17 3 * * *")
    @app.task(name=MAINTAIN_PARTITIONS, queueing_lock="maintain_partitions", pass_context=False)
    def maintain_partitions(timestamp: int) -> None:
        # Creating partitions is DDL: on the admin URL, never the service role's session.
        maintain_partitions_now(admin_session_factory(settings()))

    # Just after midnight UTC, when the day's expiries (the end of their expiry day) have passed.
    @app.periodic(cron="5 0 * * *")
    @app.task(name=EVIDENCE_FRESHNESS, queueing_lock="evidence_freshness", pass_context=False)
    def evidence_freshness_task(timestamp: int) -> None:
        evidence_freshness_now(session_factory, settings())

    # The e-mail outbox: a notification reaches the inbox within minutes of being raised.
    @app.periodic(cron="*/5 * * * *")
    @app.task(name=DELIVER_NOTIFICATIONS, queueing_lock="deliver_notifications", pass_context=False)
    def deliver_notifications(timestamp: int) -> None:
        mail.deliver_pending_now(session_factory, settings())

    # lock/queueing_lock are given per job by probe_runs.request_run ("probe:<id>").
    @app.task(name=RUN_PROBE, queue=probe_runs.QUEUE, retry=retry, pass_context=True)
    def run_probe(job_context: procrastinate.JobContext, run_id: str) -> None:
        # Error results are written on the attempt after which the strategy retries no more.
        final = retry.get_retry_decision(exception=TransientProbeError(""), job=job_context.job) is None
        with context.acting_as(context.ActionContext(actor_name="job:run_probe")):
            probe_runs.execute_run(session_factory, object_store(), settings(), uuid.UUID(run_id),
                                   final_attempt=final)

    # Every minute; the periodic defer is once per minute across all workers, and a probe whose
    # run is still queued joins it, so several workers never queue a probe twice. It first fails the
    # runs of workers that died mid-run, whose jobs would otherwise hold their probe's lock for ever.
    @app.periodic(cron="* * * * *")
    @app.task(name=SCHEDULE_PROBES, queueing_lock="schedule_probes", pass_context=False)
    def schedule_probes(timestamp: int) -> None:
        with context.acting_as(context.ActionContext(actor_name="job:schedule_probes")):
            probe_runs.recover_stalled(session_factory)
            probe_runs.schedule_due(session_factory)

    # The day's KPI snapshot (governance.services.kpis), late in the UTC day so it holds the day's end.
    @app.periodic(cron="55 23 * * *")
    @app.task(name=f"{NAMESPACE}:kpi_snapshot", queueing_lock="kpi_snapshot", pass_context=False)
    def kpi_snapshot(timestamp: int) -> None:
        from governance.services import kpis

        kpis.snapshot_now(session_factory)

    # Every minute: alerts inserted by SQL alone (the schema-change trigger) and quiet denial bursts.
    @app.periodic(cron="* * * * *")
    @app.task(name=PROCESS_ALERTS, queueing_lock="process_alerts", pass_context=False)
    def process_alerts(timestamp: int) -> None:
        process_alerts_now(session_factory, settings())

    # Hourly: the audit chain's head into the anchor bucket, so a rewrite of the whole chain shows
    # against what was exported before it (docs/audit.md).
    @app.periodic(cron="7 * * * *")
    @app.task(name=AUDIT_ANCHOR, queueing_lock="audit_anchor", pass_context=False)
    def audit_anchor(timestamp: int) -> None:
        from governance.services import audit_chain

        audit_chain.export_anchor_now(session_factory, settings())

    # Daily: verify the whole chain against the newest anchors; a failure raises the critical alert.
    @app.periodic(cron="40 2 * * *")
    @app.task(name=AUDIT_VERIFY, queueing_lock="audit_verify", lock="audit_verify", pass_context=False)
    def audit_verify(timestamp: int) -> None:
        from governance.services import audit_chain

        result = audit_chain.verify_now(database_url, session_factory, settings())
        (log.info if result.ok else log.error)("%s", result.summary())

    # Data lifecycle (docs/operations.md). Backups share one lock, so a full and a diff never overlap;
    # the full one also removes the backups older than the retention.
    @app.periodic(cron="30 1 * * *")
    @app.task(name=BACKUP_FULL, queueing_lock="backup_full", lock="backup", pass_context=False)
    def backup_full(timestamp: int) -> None:
        from governance.services import backups

        backups.run_scheduled(settings(), "full")

    @app.periodic(cron="45 * * * *")
    @app.task(name=BACKUP_DIFF, queueing_lock="backup_diff", lock="backup", pass_context=False)
    def backup_diff(timestamp: int) -> None:
        from governance.services import backups

        backups.run_scheduled(settings(), "diff")

    # Monthly (and on demand from the backups page): restore the newest backup into a scratch
    # database and check it.
    @app.periodic(cron="0 4 1 * *")
    @app.task(name=RESTORE_DRILL, queueing_lock="restore_drill", lock="restore_drill", pass_context=False)
    def restore_drill(timestamp: int | None = None) -> None:
        from governance.services import drills

        drills.run_scheduled(settings())

    # Every 15 minutes: alert when the last successful backup is older than BACKUP_MAX_AGE_HOURS.
    @app.periodic(cron="*/15 * * * *")
    @app.task(name=BACKUP_AGE_CHECK, queueing_lock="backup_age_check", pass_context=False)
    def backup_age_check(timestamp: int) -> None:
        from governance.services import drills

        drills.check_backup_age_now(session_factory, settings())

    # Reports (docs/reports.md): deferred by reports.service.request_report with the report row.
    @app.task(name=f"{NAMESPACE}:render_report", queue="reports", pass_context=False)
    def render_report(report_id: str) -> None:
        from governance.services.reports import service as reports

        with context.acting_as(context.ActionContext(actor_name="job:render_report")):
            reports.execute_report(session_factory, object_store(), uuid.UUID(report_id))

    # Daily: archive what is past its retention (never what a legal hold covers).
    @app.periodic(cron="20 3 * * *")
    @app.task(name=RETENTION, queueing_lock="retention", lock="retention", pass_context=False)
    def retention_job(timestamp: int) -> None:
        from governance.services.retention import run_scheduled

        run_scheduled(settings())

    return app

