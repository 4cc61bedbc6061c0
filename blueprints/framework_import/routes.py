"""Framework import (upload form) and export (download) in our format or as an OSCAL catalog.

The upload is parsed from memory (at most MAX_UPLOAD_BYTES; a larger request is refused with 413
before its body is read) and imported in one transaction by governance.services.framework_io.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from flask import Blueprint, abort, flash, make_response, redirect, request
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.framework_import.forms import ImportForm
from blueprints.web import render
from extensions import db
from governance.models.frameworks import Framework
from governance.services import framework_io

bp = Blueprint("framework_import", __name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
TEMPLATE = "frameworks/import.html"
UPLOAD_ENDPOINT = "framework_import.upload"


@bp.url_value_preprocessor
def _limit_upload_size(endpoint: str | None, values: dict[str, Any] | None) -> None:
    # Runs before every before_request hook, so before CSRF protection parses the form.
    if endpoint == UPLOAD_ENDPOINT:
        request.max_content_length = MAX_UPLOAD_BYTES + 64 * 1024  # the file and the other fields


@bp.route("/frameworks/import", methods=["GET", "POST"])
@requires("frameworks", "create")
def upload() -> Response:
    form = ImportForm()
    if request.method == "GET":
        return render(TEMPLATE, form=form)
    if not form.validate_on_submit():
        return render(TEMPLATE, form=form, status=422)
    storage = form.file.data
    raw = storage.stream.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        form.file.errors = [f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB."]
        return render(TEMPLATE, form=form, status=422)
    try:
        document = framework_io.load_document(raw, storage.filename)
        result = framework_io.import_framework(
            db.session, document, fmt=form.format.data or "auto",
            title=form.title.data or None, version=form.version.data or None)
    except framework_io.FrameworkIOError as exc:
        db.session.rollback()
        form.file.errors = [exc.message, *(str(e) for e in exc.errors[:framework_io.MAX_ERRORS])]
        if len(exc.errors) > framework_io.MAX_ERRORS:
            form.file.errors.append(f"… and {len(exc.errors) - framework_io.MAX_ERRORS} more.")
        return render(TEMPLATE, form=form, status=422)
    db.session.commit()
    name = f"{result.framework.title} {result.framework.version}"
    if result.created:
        flash(f"Imported {name}: {result.controls} controls ({result.withdrawn} withdrawn).", "success")
    else:
        flash(f"{name} is already imported with this content; nothing changed.", "info")
    return redirect("/frameworks", code=303)


def _filename(framework: Framework, fmt: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9.]+", "-", f"{framework.title}-{framework.version}").strip("-.")[:120]
    return f"{stem or 'framework'}{'-oscal' if fmt == 'oscal' else ''}.json"


@bp.get("/frameworks/<uuid:framework_id>/export")
@requires("frameworks", "read")
def export(framework_id: uuid.UUID) -> Response:
    fmt = request.args.get("format", "ours")
    if fmt not in framework_io.EXPORT_FORMATS:
        abort(404)
    framework = db.session.get(Framework, framework_id)
    if framework is None or framework.deleted_at is not None:
        abort(404)
    document = framework_io.export_framework(db.session, framework, fmt)
    response = make_response(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    response.mimetype = "application/json"
    response.headers["Content-Disposition"] = f'attachment; filename="{_filename(framework, fmt)}"'
    return response


@bp.get("/frameworks/libraries")
@requires("frameworks", "read")
def libraries() -> Response:
    """The libraries shipped with the product, and whether each is loaded (one query)."""
    from sqlalchemy import select, tuple_

    from governance.services import libraries as library_service

    pairs = [(lib.title, lib.version) for lib in library_service.LIBRARIES.values()]
    loaded = {
        (title, version): framework_id
        for framework_id, title, version in db.session.execute(
            select(Framework.id, Framework.title, Framework.version).where(
                tuple_(Framework.title, Framework.version).in_(pairs))
        ).all()
    }
    rows = [(lib, loaded.get((lib.title, lib.version))) for lib in library_service.LIBRARIES.values()]
    return render("frameworks/libraries.html", rows=rows)


@bp.post("/frameworks/libraries/<name>")
@requires("frameworks", "create")
def load_library(name: str) -> Response:
    from governance.services import libraries as library_service

    if name not in library_service.LIBRARIES:
        abort(404)
    try:
        result = library_service.load_library(db.session, name)
    except framework_io.FrameworkIOError as exc:
        db.session.rollback()
        flash(f"The library {name} could not be loaded: {exc.message}", "error")
        return redirect("/frameworks/libraries", code=303)
    from governance.services import mappings

    sets = mappings.load_available_mapping_sets(db.session)  # its crosswalks come with it
    db.session.commit()
    label = f"{result.framework.title} {result.framework.version}"
    new_links = sum(outcome.created for outcome in sets.values())
    if new_links:
        flash(f"Added {new_links} mappings from the shipped crosswalks.", "info")
    if result.created:
        flash(f"Loaded {label}: {result.controls} controls.", "success")
    else:
        flash(f"{label} was already loaded; nothing changed.", "info")
    return redirect("/frameworks/libraries", code=303)
