"""Background jobs on procrastinate (a PostgreSQL-backed queue: no extra infrastructure).

app.create_app() calls build_app() with the configured database, a session factory and the app's
config (for its settings), so tasks run the same services as the web layer. `flask jobs worker` runs them
(Procfile `worker`), including the periodic ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import procrastinate
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from governance import context
from governance.services import evidence_freshness, mail, partitions

log = logging.getLogger(__name__)

NAMESPACE = "gov"
MAINTAIN_PARTITIONS = f"{NAMESPACE}:maintain_partitions"
EVIDENCE_FRESHNESS = f"{NAMESPACE}:evidence_freshness"
DELIVER_NOTIFICATIONS = f"{NAMESPACE}:deliver_notifications"


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


def evidence_freshness_now(session_factory: Callable[[], Session], settings: Any) -> evidence_freshness.SweepResult:
    """Expire lapsed evidence and warn owners of what lapses soon, then e-mail what is pending."""
    result = evidence_freshness.run_freshness(session_factory, settings, actor_name="job:evidence_freshness")
    mail.deliver_pending_now(session_factory, settings)
    return result


def build_app(database_url: str, session_factory: Callable[[], Session],
              app_config: Mapping[str, Any]) -> procrastinate.App:
    """A procrastinate App on this database with every task registered on it. Tasks read their
    settings (SMTP, expiry notice days) from app_config["SETTINGS"] (the Flask app's config) when
    they run, so they see the settings the app has then.

    Tasks are registered per App (not on a shared Blueprint, whose periodic schedule only the first
    App would receive) so each app built carries its schedule: one per process, several in tests.
    """
    def settings() -> Any:
        return app_config["SETTINGS"]

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_conninfo(database_url)),
    )

    # Daily, so the coming months' partitions exist long before rows arrive for them; the queueing
    # lock keeps a backlog from piling up if no worker ran for a while.
    @app.periodic(cron="17 3 * * *")
    @app.task(name=MAINTAIN_PARTITIONS, queueing_lock="maintain_partitions", pass_context=False)
    def maintain_partitions(timestamp: int) -> None:
        maintain_partitions_now(session_factory)

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

    return app
