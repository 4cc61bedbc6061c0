"""/healthz: the state of the database and the object store, for load balancers and operators."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from werkzeug.wrappers import Response

from blueprints.access import public
from extensions import db
from governance.storage import Storage, StorageError

bp = Blueprint("health", __name__)


def _database() -> dict[str, object]:
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SET LOCAL statement_timeout = 2000"))
            conn.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.warning("health: database unreachable", exc_info=True)
        return {"ok": False, "error": "unreachable"}
    return {"ok": True}


def _object_store() -> dict[str, object]:
    storage: Storage = current_app.extensions["storage"]
    try:
        storage.ping()
    except StorageError:
        # Name no host or credential on a public endpoint: the log has the detail.
        current_app.logger.warning("health: object store unreachable", exc_info=True)
        return {"ok": False, "error": "unreachable"}
    return {"ok": True}


@bp.get("/healthz")
@public
def healthz() -> tuple[Response, int]:
    checks = {"database": _database(), "object_store": _object_store()}
    ok = all(c["ok"] for c in checks.values())
    body = jsonify(status="ok" if ok else "unavailable", **checks)
    body.headers["Cache-Control"] = "no-store"
    return body, 200 if ok else 503
