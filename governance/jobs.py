"""Background jobs on procrastinate (a PostgreSQL-backed queue: no extra infrastructure).

Tasks live on a procrastinate Blueprint here; app.create_app() builds the procrastinate App on
the configured database and binds a session factory, so tasks run the same services as the web
layer. `flask jobs worker` runs them (Procfile `worker`), including the periodic ones.
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
tasks = procrastinate.Blueprint()
_session_factory: Callable[[], Session] | None = None


def libpq_conninfo(database_url: str) -> str:
    """psycopg wants a libpq URI: drop SQLAlchemy's +driver suffix."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def build_app(database_url: str, session_factory: Callable[[], Session]) -> procrastinate.App:
    global _session_factory
    _session_factory = session_factory
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_conninfo(database_url)),
        import_paths=["governance.jobs"],
    )
    app.add_tasks_from(tasks, namespace=NAMESPACE)
    return app


def _session() -> Session:
    if _session_factory is None:
        raise RuntimeError("governance.jobs.build_app() has not been called")
    return _session_factory()


def maintain_partitions_now(months_ahead: int = 3) -> list[str]:
    with context.acting_as(context.ActionContext(actor_name="job:maintain_partitions")), _session() as session:
        created = partitions.ensure_partitions(session, months_ahead=months_ahead)
        session.commit()
    if created:
        log.info("created partitions: %s", ", ".join(created))
    return created


# Daily, so the next months' partitions always exist long before rows arrive for them; the
# queueing lock keeps a backlog from piling up if no worker ran for a while.
@tasks.periodic(cron="17 3 * * *")
@tasks.task(name="maintain_partitions", queueing_lock="maintain_partitions", pass_context=False)
def maintain_partitions(timestamp: int) -> None:
    maintain_partitions_now()
