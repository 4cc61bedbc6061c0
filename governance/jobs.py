"""Background jobs on procrastinate (a PostgreSQL-backed queue: no extra infrastructure).

app.create_app() calls build_app() with the configured database and a session factory, so tasks
run the same services as the web layer. `flask jobs worker` runs them (Procfile `worker`),
including the periodic ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import procrastinate
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from governance import context
from governance.services import partitions

log = logging.getLogger(__name__)

NAMESPACE = "gov"
MAINTAIN_PARTITIONS = f"{NAMESPACE}:maintain_partitions"


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


def build_app(database_url: str, session_factory: Callable[[], Session]) -> procrastinate.App:
    """A procrastinate App on this database with every task registered on it.

    Tasks are registered per App (not on a shared Blueprint, whose periodic schedule only the first
    App would receive) so each app built carries its schedule: one per process, several in tests.
    """
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_conninfo(database_url)),
    )

    # Daily, so the coming months' partitions exist long before rows arrive for them; the queueing
    # lock keeps a backlog from piling up if no worker ran for a while.
    @app.periodic(cron="17 3 * * *")
    @app.task(name=MAINTAIN_PARTITIONS, queueing_lock="maintain_partitions", pass_context=False)
    def maintain_partitions(timestamp: int) -> None:
        maintain_partitions_now(session_factory)

    return app
