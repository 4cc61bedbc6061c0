"""gunicorn entry point for bench/run.py: the app, with psycopg's prepare_threshold taken from
DB_PREPARE_THRESHOLD ("off" disables prepared statements; a number is the executions before a
query is prepared; unset keeps psycopg's default of 5) when config.py does not read that setting itself.

    gunicorn --pythonpath bench "bench_wsgi:create_app()"
"""

from __future__ import annotations

import os
from typing import Any


def threshold_from_env() -> int | str | None:
    """The connect_args value for DB_PREPARE_THRESHOLD: None for "off", an int, or "" when unset."""
    raw = os.environ.get("DB_PREPARE_THRESHOLD", "").strip().lower()
    if not raw:
        return ""
    if raw in ("off", "none", "disabled"):
        return None
    return int(raw)


def create_app() -> Any:
    import config

    original = config.flask_config

    def flask_config(settings: Any) -> dict[str, object]:
        result = original(settings)
        options = result.get("SQLALCHEMY_ENGINE_OPTIONS")
        value = threshold_from_env()
        if isinstance(options, dict) and value != "":
            connect_args = dict(options.get("connect_args") or {})
            # config.py's own DB_PREPARE_THRESHOLD (when it has one) already put it there.
            connect_args.setdefault("prepare_threshold", value)
            options["connect_args"] = connect_args
        return result

    config.flask_config = flask_config  # type: ignore[assignment]
    import app

    return app.create_app()
