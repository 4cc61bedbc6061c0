"""Composition root: the only place that wires settings, extensions, blueprints and CLI commands."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy.orm import sessionmaker

import config
from extensions import csrf, db, login_manager, migrate
from governance.storage import Storage


def create_app(overrides: Mapping[str, Any] | None = None, *, settings: config.Settings | None = None) -> Flask:
    """Build the app. Without DATABASE_URL / S3_ENDPOINT (and outside production) the embedded
    PostgreSQL and S3 server under instance/ are used, started if they are not running."""
    settings = settings or config.load_settings()
    if not settings.production and (settings.uses_embedded_database or settings.uses_embedded_s3):
        import embedded

        settings = embedded.resolve(settings)

    app = Flask(__name__, instance_path=str(settings.instance_dir))
    if settings.proxy_fix_hops:
        # Client IPs (audit log, sign-in throttling) come from X-Forwarded-For set by these proxies only.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.proxy_fix_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.config.update(config.flask_config(settings))
    if overrides:
        app.config.update(overrides)
    logging.basicConfig(level=settings.log_level)
    # procrastinate narrates task registration at INFO on every start; its warnings still show.
    logging.getLogger("procrastinate").setLevel(max(logging.getLevelName(settings.log_level), logging.WARNING))

    import governance.models  # noqa: F401  (registers every table on the metadata)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(config.ROOT / "migrations"), compare_type=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    app.extensions["storage"] = Storage.from_settings(settings)

    from governance import jobs

    with app.app_context():
        app.extensions["jobs"] = jobs.build_app(settings.database_url or "", sessionmaker(db.engine), app.config,
                                                storage=lambda: app.extensions["storage"])

    if settings.db_commit_read_only:
        _commit_read_only_requests(app)

    from blueprints import register_blueprints

    register_blueprints(app)

    from commands import register_cli

    register_cli(app)
    return app


def _commit_read_only_requests(app: Flask) -> None:
    """A request that only read ends with COMMIT (its prepared statements outlive it); anything
    else is rolled back by Flask-SQLAlchemy's session removal, as before (governance.read_only)."""
    from sqlalchemy.exc import SQLAlchemyError

    from governance import read_only

    with app.app_context():
        read_only.install(db.engine)

    @app.teardown_request
    def commit_if_only_read(exc: BaseException | None) -> None:
        if exc is not None:
            return
        session = db.session()
        try:
            read_only.commit_if_only_read(session)
        except SQLAlchemyError:
            app.logger.warning("ending a read-only transaction with COMMIT failed; rolled back", exc_info=True)
            session.rollback()
