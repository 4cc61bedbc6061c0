"""Import and export of frameworks: one transaction per import (flush only; the caller commits).

Identity is (title, version). Importing content equal to what is stored changes nothing (an audit
entry with result "unchanged" records the attempt); other content under an existing (title, version)
is refused (FrameworkConflictError), as is a (title, version) whose framework was deleted. Any error
raises before or during the flush: the caller rolls back and nothing is written.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from governance.models.enums import ControlStatus
from governance.models.frameworks import Control, Framework
from governance.services import audit
from governance.services.framework_io import oscal, ours
from governance.services.framework_io.model import (
    ControlSpec,
    FrameworkConflictError,
    FrameworkFormatError,
    FrameworkIOError,
    FrameworkSpec,
    content_sha256,
    walk,
)

ImportFormat = Literal["auto", "ours", "oscal"]
ExportFormat = Literal["ours", "oscal"]
FORMATS = ("auto", "ours", "oscal")
EXPORT_FORMATS = ("ours", "oscal")
# A stable namespace for the uuid of exported OSCAL catalogs (same content → same uuid).
_CATALOG_NS = uuid.UUID("5b0d7c3e-8f0a-4c1e-9a57-3f9d2a6c1e44")


@dataclass
class ImportResult:
    framework: Framework
    created: bool
    controls: int
    withdrawn: int = 0
    format: str = "ours"
    sha256: str = ""
    seconds: float = 0.0


def detect_format(document: Any) -> str:
    return "oscal" if oscal.is_catalog(document) else "ours"


def parse(document: Any, fmt: str = "auto") -> FrameworkSpec:
    """The spec of a loaded document in our format or OSCAL (fmt "auto" looks for `catalog`)."""
    if fmt not in FORMATS:
        raise FrameworkIOError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    chosen = detect_format(document) if fmt == "auto" else fmt
    return oscal.parse(document) if chosen == "oscal" else ours.parse(document)


def _override(spec: FrameworkSpec, title: str | None, version: str | None) -> None:
    if title is not None and title.strip():
        spec.title = title.strip()
    if version is not None and version.strip():
        spec.version = version.strip()
    if len(spec.title) > 255 or len(spec.version) > 64:
        raise FrameworkFormatError("The title must be at most 255 characters and the version at most 64.")


def import_framework(session: Session, data: Any, *, fmt: str = "auto", title: str | None = None,
                     version: str | None = None) -> ImportResult:
    """Import a loaded document (see ours.load_document) as a new framework version, audited as
    `framework.import`. Returns created=False when the same content is already stored."""
    started = time.perf_counter()
    chosen = detect_format(data) if fmt == "auto" else fmt
    spec = parse(data, chosen)
    _override(spec, title, version)
    digest = content_sha256(spec)
    total = sum(1 for _ in walk(spec.controls))
    withdrawn = sum(1 for c, _ in walk(spec.controls) if c.status == ControlStatus.WITHDRAWN)
    # Two imports of one (title, version) at once: the second waits here, then sees the first.
    session.execute(select(func.pg_advisory_xact_lock(
        func.hashtextextended(f"framework-import\x1f{spec.title}\x1f{spec.version}", 0))))
    existing = session.scalars(
        select(Framework).where(Framework.title == spec.title, Framework.version == spec.version)
        .execution_options(include_deleted=True)
    ).first()
    details = {"result": "", "format": chosen, "controls": total, "withdrawn": withdrawn, "sha256": digest,
               "title": spec.title, "version": spec.version}
    if existing is not None:
        if existing.deleted_at is not None:
            raise FrameworkConflictError(
                f"{spec.title} version {spec.version} exists but was deleted; restore it instead "
                "of importing it again, or import under another version.")
        if content_sha256(spec_from_db(session, existing)) != digest:
            raise FrameworkConflictError(
                f"{spec.title} version {spec.version} already exists with different content. "
                "A framework version never changes once imported: import this file under a new "
                "version (a new version is a new framework).")
        audit.record(session, "framework.import", object_type="framework", object_id=existing.id,
                     details={**details, "result": "unchanged"})
        return ImportResult(existing, False, total, withdrawn, chosen, digest,
                            time.perf_counter() - started)

    framework = Framework(title=spec.title, version=spec.version, region=spec.region, source=spec.source,
                          license=spec.license, description=spec.description, status=spec.status)
    session.add(framework)
    session.flush()
    ids: dict[int, uuid.UUID] = {}
    rows: list[dict[str, Any]] = []
    for order, (control, parent) in enumerate(walk(spec.controls), start=1):
        ids[id(control)] = uuid.uuid4()
        rows.append({"id": ids[id(control)], "framework_id": framework.id,
                     "parent_id": ids[id(parent)] if parent is not None else None,
                     "ref_id": control.ref_id, "title": control.title, "text": control.text,
                     "assessable": control.assessable, "weight": control.weight, "sort_order": order,
                     "status": control.status})
    if rows:
        # Parents come before their children in `rows`, so every parent_id exists when checked.
        session.execute(insert(Control), rows)
        # The new framework's score row starts with its controls counted as unassessed.
        from governance.services import scoring

        scoring.on_controls_changed(session, list(ids.values()))
    audit.record(session, "framework.import", object_type="framework", object_id=framework.id,
                 details={**details, "result": "created"})
    return ImportResult(framework, True, total, withdrawn, chosen, digest, time.perf_counter() - started)


def spec_from_db(session: Session, framework: Framework) -> FrameworkSpec:
    """The stored framework as a spec: live controls, children in sort order. One query."""
    rows = session.execute(
        select(Control.id, Control.parent_id, Control.ref_id, Control.title, Control.text,
               Control.assessable, Control.weight, Control.status)
        .where(Control.framework_id == framework.id, Control.deleted_at.is_(None))
        .order_by(Control.sort_order, Control.ref_id)
    ).all()
    spec = FrameworkSpec(title=framework.title, version=framework.version, region=framework.region,
                         source=framework.source, license=framework.license,
                         description=framework.description, status=framework.status)
    nodes = {row.id: ControlSpec(ref_id=row.ref_id, title=row.title, text=row.text,
                                 assessable=row.assessable, weight=Decimal(row.weight),
                                 status=ControlStatus(row.status)) for row in rows}
    for row in rows:
        parent = nodes.get(row.parent_id) if row.parent_id is not None else None
        # A control under a deleted parent is shown at the top rather than lost.
        (parent.children if parent is not None else spec.controls).append(nodes[row.id])
    return spec


def export_framework(session: Session, framework: Framework, fmt: str) -> dict[str, Any]:
    """The framework as a document in our format or as an OSCAL catalog (not audited: a read)."""
    if fmt not in EXPORT_FORMATS:
        raise FrameworkIOError(f"Unknown export format {fmt!r}: use ours or oscal.")
    spec = spec_from_db(session, framework)
    if fmt == "ours":
        return ours.dump(spec)
    catalog_uuid = uuid.uuid5(_CATALOG_NS, f"{framework.id}:{content_sha256(spec)}")
    return oscal.dump(spec, catalog_uuid=catalog_uuid, last_modified=framework.updated_at)


def find_framework(session: Session, title: str, version: str) -> Framework | None:
    return session.scalars(
        select(Framework).where(Framework.title == title, Framework.version == version)
    ).first()
