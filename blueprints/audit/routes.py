"""The audit log for auditors and admins: the filtered list (keyset pages, newer/older), each entry
expanded in place with all its fields and a before/after diff, and the CSV export of a filter.

Reads live in governance.services.audit_queries; the filters are read in blueprints.audit.filters.
Entries were redacted when they were written (governance.services.audit), and everything here is
rendered through Jinja's autoescaping, so a value can never become markup.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, request, url_for
from sqlalchemy.orm import Session

from blueprints.access import requires
from blueprints.audit import filters as audit_filters
from blueprints.web import render, wants_fragment
from extensions import db
from governance import context
from governance.services import audit, csv_cells, personal_data
from governance.services import audit_queries as queries

bp = Blueprint("audit", __name__)

PAGE_SIZE = queries.PAGE_SIZE

EXPORT_ACTION = "audit_log.export"
EXPORT_FINISHED_ACTION = "audit_log.export.finished"
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection): such a cell
# is sent with a leading apostrophe, which spreadsheets show as text (docs/audit-log-pages.md).


def _cursor(name: str) -> tuple[queries.Cursor | None, bool]:
    """The cursor argument `name` (None when absent), and whether it was readable."""
    raw = request.args.get(name, "")
    if not raw:
        return None, True
    cursor = queries.Cursor.decode(raw)
    return cursor, cursor is not None


@bp.get("/audit")
@requires("audit_log", "read")
def index() -> Response:
    parsed = audit_filters.parse(db.session, request.args)
    (older, older_ok), (newer, newer_ok) = _cursor("older"), _cursor("newer")
    cursor_error = not (older_ok and newer_ok) or (older is not None and newer is not None)
    status = 200
    page = queries.Page([], None, None)
    if parsed.errors:
        status = 422
    elif cursor_error:
        status = 400
    else:
        page = queries.list_page(db.session, parsed.filters, older_than=older, newer_than=newer,
                                 limit=PAGE_SIZE)
    args = parsed.link_args()
    # Sealed personal data made readable: one statement for the keys of the page (none if no row is sealed).
    shown = dict(zip((e.id for e in page.rows),
                     personal_data.reveal(db.session, page.rows, tokens=page.sealed, with_details=False), strict=True))
    return render(
        "audit/index.html", block="audit", status=status, parsed=parsed, raw=parsed.raw, errors=parsed.errors,
        page=page, shown=shown, outcomes=audit_filters.OUTCOMES, time_hint=audit_filters.TIME_HINT,
        cursor_error=cursor_error,
        paged=older is not None or newer is not None,
        newer_url=page.newer and url_for("audit.index", **args, newer=page.newer.encode()),
        older_url=page.older and url_for("audit.index", **args, older=page.older.encode()),
        first_url=url_for("audit.index", **args),
        export_url=url_for("audit.export", **args),
    )


@bp.get("/audit/<uuid:entry_id>")
@requires("audit_log", "read")
def entry(entry_id: uuid.UUID) -> Response:
    """One entry. For htmx, its row group of the list, expanded (or collapsed again with
    collapsed=1); otherwise a page of its own. created_at (from the list) narrows the search to the
    entry's partition; a wrong one simply finds nothing."""
    created_at = None
    if request.args.get("created_at"):
        try:
            # A "+" typed or copied unencoded into the URL arrives as a space.
            created_at = datetime.fromisoformat(request.args["created_at"].replace(" ", "+"))
        except ValueError:
            abort(404)
        if created_at.tzinfo is None:
            abort(404)
    found = queries.get_entry(db.session, entry_id, created_at)
    if found is None:
        abort(404)
    expanded = not (wants_fragment() and request.args.get("collapsed") == "1")
    [who] = personal_data.reveal(db.session, [found])
    return render("audit/entry.html", block="entry", e=found, view=queries.entry_view(found, who), who=who,
                  expanded=expanded)


# --- the CSV export -------------------------------------------------------------------------------


_cell = csv_cells.cell


def _csv_chunks(rows: Iterator[Sequence[Any]], batch: int) -> Iterator[tuple[str, int]]:
    """CSV text in chunks of about `batch` rows (the header first), with the rows sent so far."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(queries.EXPORT_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        count += 1
        if count % batch == 0:
            yield buffer.getvalue(), count
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue(), count


@bp.get("/audit/export.csv")
@requires("audit_log", "export")
def export() -> Response:
    """Every entry the filters match, newest first, streamed as CSV (columns: EXPORT_COLUMNS).

    The export is audited before the first byte leaves (audit_log.export, with the filters), so an
    interrupted download is on record too; when the stream ends, audit_log.export.finished records
    how many rows were sent and whether the client took all of them.

    Memory stays the same at any size by construction: the rows come from one server-side cursor
    (audit_queries.export_rows, EXPORT_BATCH rows per fetch), each batch is turned into CSV text and
    handed to the WSGI server before the next is fetched, and nothing keeps rows or text once sent.
    The stream has a session and connection of its own, needs no request context, and holds no lock
    while the rows go out (the request's entry committed before it starts)."""
    parsed = audit_filters.parse(db.session, request.args)
    if parsed.errors:
        message = "; ".join(f"{name}: {error}" for name, error in parsed.errors.items())
        return Response(f"The export filters are not valid. {message}\n", status=422, mimetype="text/plain")
    ctx = context.current()
    started = audit.record(db.session, EXPORT_ACTION, object_type="audit_log",
                           details={"filters": parsed.filters.as_details(), "format": "csv"})
    started_id = started.id
    db.session.commit()
    # The stream's own session, on the same bind as the app's: a connection of its own from the pool.
    bind = db.session.get_bind()
    batch = queries.EXPORT_BATCH

    def stream() -> Iterator[str]:
        sent, complete = 0, False
        try:
            with Session(bind=bind) as session:
                for chunk, count in _csv_chunks(queries.export_rows(session, parsed.filters, batch=batch), batch):
                    sent = count
                    yield chunk
                complete = True
        finally:
            # Runs when the last row is out, and also when the client went away (GeneratorExit).
            with Session(bind=bind) as session:
                audit.record(session, EXPORT_FINISHED_ACTION, object_type="audit_log", object_id=started_id,
                             details={"rows": sent, "complete": complete}, ctx=ctx)
                session.commit()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = Response(stream(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
