"""Mapping sets (control-to-control crosswalks): import and export as JSON or CSV, and the shipped sets.

A mapping set relates controls of a source framework to controls of a target framework, each row with a
relationship in the NIST OLIR words (equal, subset_of, superset_of, intersects_with, related_to), an
optional strength (integer 1..10) and a rationale.

JSON (format_version 1)::

    {"format_version": 1, "name": "...", "description": "...", "source": "...", "license": "...",
     "source_framework": {"title": "NIST AI RMF", "version": "1.0"},
     "target_framework": {"title": "ISO/IEC 42001", "version": "2023"},
     "mappings": [{"source": "GOVERN 1.1", "target": "A.2.2", "relationship": "intersects_with",
                   "strength": 5, "rationale": "..."}]}

CSV: one row per mapping under the header CSV_HEADER (frameworks named on every row).

Import is one transaction (flush only; the caller commits): every row is checked first and any
error (unknown framework, unknown ref_id, bad relationship …) raises MappingIOError naming the
row's position, before anything is written. Identity of a mapping is its (source control, target
control) pair: an identical row is left untouched, a changed relationship / strength / rationale /
source updates the row (audited as `mapping.update` with before and after), a new pair is created
(`mapping.create`). Every import is audited as `mapping.import` with its counts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, aliased

from governance.models.enums import MappingRelationship
from governance.models.frameworks import Control, Framework, Mapping
from governance.services import audit
from governance.services.framework_io.model import InputFileError

FORMAT_VERSION = 1
MAX_SOURCE = 500  # mappings.source is varchar(500)
STRENGTH_MIN, STRENGTH_MAX = 1, 10
CSV_HEADER = ("source_framework", "source_version", "source_ref", "relationship", "target_framework",
              "target_version", "target_ref", "strength", "rationale")
EXPORT_FORMATS = ("json", "csv")
PROJECT_SOURCE = "AI Governance Platform project mapping — not an official NIST/ISO/EU crosswalk"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "libraries" / "mappings"

# Older spellings (the schema's words before migration 0006) accepted on import; export writes OLIR words.
RELATIONSHIP_ALIASES = {"equivalent": "equal", "intersects": "intersects_with", "related": "related_to",
                        "subset": "subset_of", "superset": "superset_of"}


class MappingIOError(InputFileError):
    """A mapping set that cannot be imported or exported; nothing was written."""


class MissingFrameworkError(MappingIOError):
    """A framework the set refers to is not in the database (e.g. its library is not loaded)."""

    def __init__(self, missing: list[tuple[str, str]], errors: list[str] | None = None) -> None:
        self.missing = missing
        names = ", ".join(f"{title!r} version {version!r}" for title, version in missing)
        libraries = _library_names(missing)
        hint = (" and ".join(f"`flask frameworks load-library {lib}`" for lib in libraries) + " (or `--all`)"
                if libraries
                else "`flask frameworks load-library NAME` (or `--all`) for a shipped framework, "
                     "else `flask frameworks import FILE`")
        super().__init__(f"No framework {names} in the database: load it first with {hint}.", errors)


def _library_names(missing: list[tuple[str, str]]) -> list[str]:
    """The shipped framework libraries holding these (title, version)s, when all of them are shipped."""
    try:
        from governance.services.libraries import LIBRARIES
    except ImportError:  # pragma: no cover - the libraries module is optional here
        return []
    by_key = {(lib.title, lib.version): name for name, lib in LIBRARIES.items()}
    names = [by_key.get(key) for key in missing]
    return [n for n in names if n is not None] if all(names) else []


@dataclass(frozen=True)
class MappingRow:
    position: str  # "/mappings/3" (JSON) or "line 5" (CSV)
    source_title: str
    source_version: str
    source_ref: str
    relationship: MappingRelationship
    target_title: str
    target_version: str
    target_ref: str
    strength: int | None
    rationale: str | None
    source: str | None = None  # where this mapping comes from (None: keep what is stored)


@dataclass
class MappingSetSpec:
    name: str | None = None
    description: str | None = None
    source: str | None = None
    license: str | None = None
    rows: list[MappingRow] = field(default_factory=list)


@dataclass
class MappingImportResult:
    name: str | None
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


# --- parsing ---------------------------------------------------------------------------------------


def parse_relationship(value: Any) -> MappingRelationship | None:
    """The relationship for an OLIR word (or an older spelling); None when unknown."""
    if not isinstance(value, str):
        return None
    word = value.strip().lower().replace("-", "_").replace(" ", "_")
    word = RELATIONSHIP_ALIASES.get(word, word)
    try:
        return MappingRelationship(word)
    except ValueError:
        return None


def _relationship_error(value: Any) -> str:
    words = ", ".join(m.value for m in MappingRelationship)
    return f"unknown relationship {value!r}: use one of {words}"


def _strength(value: Any, where: str, errors: list[str]) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        errors.append(f"{where}: strength must be a whole number from {STRENGTH_MIN} to {STRENGTH_MAX}, "
                      f"not {value!r}")
        return None
    if not STRENGTH_MIN <= number <= STRENGTH_MAX:
        errors.append(f"{where}: strength must be from {STRENGTH_MIN} to {STRENGTH_MAX}, not {number}")
        return None
    return number


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _optional(value: Any) -> str | None:
    text = _text(value)
    return text or None


def parse_json(document: Any) -> MappingSetSpec:
    """The spec of a loaded JSON mapping set; MappingIOError lists every problem with its position."""
    if not isinstance(document, dict):
        raise MappingIOError("A mapping set must be a JSON object.")
    errors: list[str] = []
    if document.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        errors.append(f"/format_version: only format_version {FORMAT_VERSION} is supported")
    frameworks: dict[str, tuple[str, str]] = {}
    for key in ("source_framework", "target_framework"):
        value = document.get(key)
        title = _text(value.get("title")) if isinstance(value, dict) else ""
        version = _text(value.get("version")) if isinstance(value, dict) else ""
        if not title or not version:
            errors.append(f"/{key}: an object with a non-empty title and version is required")
        frameworks[key] = (title, version)
    rows_in = document.get("mappings")
    if not isinstance(rows_in, list):
        errors.append("/mappings: a list of mappings is required")
        rows_in = []
    source = _optional(document.get("source"))
    spec = MappingSetSpec(name=_optional(document.get("name")), description=_optional(document.get("description")),
                          source=source, license=_optional(document.get("license")))
    (source_title, source_version), (target_title, target_version) = (
        frameworks["source_framework"], frameworks["target_framework"])
    for index, item in enumerate(rows_in):
        where = f"/mappings/{index}"
        if not isinstance(item, dict):
            errors.append(f"{where}: a mapping must be an object")
            continue
        source_ref, target_ref = _text(item.get("source")), _text(item.get("target"))
        if not source_ref:
            errors.append(f"{where}/source: the source control's ref_id is required")
        if not target_ref:
            errors.append(f"{where}/target: the target control's ref_id is required")
        relationship = parse_relationship(item.get("relationship"))
        if relationship is None:
            errors.append(f"{where}/relationship: {_relationship_error(item.get('relationship'))}")
        strength = _strength(item.get("strength"), f"{where}/strength", errors)
        row_source = _optional(item.get("mapping_source")) or source or spec.name
        if relationship is not None and source_ref and target_ref:
            spec.rows.append(MappingRow(where, source_title, source_version, source_ref, relationship,
                                        target_title, target_version, target_ref, strength,
                                        _optional(item.get("rationale")), _clip(row_source)))
    if errors:
        raise MappingIOError("The mapping set cannot be imported.", errors)
    return spec


def parse_csv(text: str, *, source: str | None = None) -> MappingSetSpec:
    """The spec of a CSV mapping set (header CSV_HEADER). `source` labels the rows' origin."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise MappingIOError("The CSV file is empty: the first line must be the header "
                             f"{','.join(CSV_HEADER)}.") from None
    except csv.Error as exc:
        raise MappingIOError(f"The CSV file cannot be read: {exc}.") from exc
    missing = [name for name in CSV_HEADER if name not in header]
    if missing:
        raise MappingIOError(f"The CSV header lacks the column(s) {', '.join(missing)}: expected "
                             f"{','.join(CSV_HEADER)}.")
    col = {name: header.index(name) for name in CSV_HEADER}
    errors: list[str] = []
    spec = MappingSetSpec(source=_optional(source))
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            where = f"line {line}"
            values = values + [""] * (len(header) - len(values))
            cell = {name: values[col[name]].strip() for name in CSV_HEADER}
            for name in ("source_framework", "source_version", "source_ref", "target_framework",
                         "target_version", "target_ref"):
                if not cell[name]:
                    errors.append(f"{where} ({name}): a value is required")
            relationship = parse_relationship(cell["relationship"])
            if relationship is None:
                errors.append(f"{where} (relationship): {_relationship_error(cell['relationship'])}")
            strength = _strength(cell["strength"], f"{where} (strength)", errors)
            if relationship is not None and all(cell[n] for n in ("source_framework", "source_version", "source_ref",
                                                                  "target_framework", "target_version", "target_ref")):
                spec.rows.append(MappingRow(where, cell["source_framework"], cell["source_version"],
                                            cell["source_ref"], relationship, cell["target_framework"],
                                            cell["target_version"], cell["target_ref"], strength,
                                            cell["rationale"] or None, _clip(spec.source)))
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: {exc}")
    if errors:
        raise MappingIOError("The mapping set cannot be imported.", errors)
    return spec


def load_document(raw: bytes | str, filename: str | None = None, *, source: str | None = None) -> MappingSetSpec:
    """Parse a file as CSV (a .csv name) or JSON."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise MappingIOError(f"The file is not UTF-8 text (byte {exc.start}).") from exc
    if "\x00" in text:
        raise MappingIOError("The file contains a NUL character.")
    if (filename or "").lower().endswith(".csv"):
        return parse_csv(text, source=source)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MappingIOError(f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno}.") from exc
    spec = parse_json(document)
    if source:
        spec.rows = [_with_source(row, source) for row in spec.rows]
    return spec


def _with_source(row: MappingRow, source: str) -> MappingRow:
    return MappingRow(row.position, row.source_title, row.source_version, row.source_ref, row.relationship,
                      row.target_title, row.target_version, row.target_ref, row.strength, row.rationale,
                      _clip(source))


def _clip(value: str | None) -> str | None:
    return None if value is None else value[:MAX_SOURCE]


# --- import ----------------------------------------------------------------------------------------


def _snapshot(mapping: Mapping) -> dict[str, Any]:
    return {"relationship": mapping.relationship_type.value, "strength": mapping.strength,
            "rationale": mapping.rationale, "source": mapping.source}


def import_mapping_set(session: Session, spec: MappingSetSpec) -> MappingImportResult:
    """Write the set's mappings (flush only; the caller commits or rolls back)."""
    pairs_of_frameworks = sorted({(r.source_title, r.source_version) for r in spec.rows}
                                 | {(r.target_title, r.target_version) for r in spec.rows})
    frameworks: dict[tuple[str, str], Framework] = {}
    for title, version in pairs_of_frameworks:
        found = session.scalars(
            select(Framework).where(Framework.title == title, Framework.version == version)).first()
        if found is not None:
            frameworks[(title, version)] = found
    missing = [key for key in pairs_of_frameworks if key not in frameworks]
    if missing:
        errors = []
        for row in spec.rows:
            for end, key in (("source", (row.source_title, row.source_version)),
                             ("target", (row.target_title, row.target_version))):
                if key in missing:
                    errors.append(f"{row.position} ({end}): no framework {key[0]!r} version {key[1]!r}")
        raise MissingFrameworkError(missing, errors)

    controls: dict[tuple[str, str], dict[str, uuid.UUID]] = {}
    for key, framework in frameworks.items():
        rows = session.execute(select(Control.ref_id, Control.id).where(Control.framework_id == framework.id))
        controls[key] = {str(row.ref_id): row.id for row in rows}

    errors = []
    resolved: list[tuple[MappingRow, uuid.UUID, uuid.UUID]] = []
    seen: dict[tuple[uuid.UUID, uuid.UUID], str] = {}
    for row in spec.rows:
        source_id = controls[(row.source_title, row.source_version)].get(row.source_ref)
        target_id = controls[(row.target_title, row.target_version)].get(row.target_ref)
        if source_id is None:
            errors.append(f"{row.position} (source): no control {row.source_ref!r} in "
                          f"{row.source_title} {row.source_version}")
        if target_id is None:
            errors.append(f"{row.position} (target): no control {row.target_ref!r} in "
                          f"{row.target_title} {row.target_version}")
        if source_id is None or target_id is None:
            continue
        if source_id == target_id:
            errors.append(f"{row.position}: a control cannot be mapped to itself ({row.source_ref!r})")
            continue
        if (source_id, target_id) in seen:
            errors.append(f"{row.position}: {row.source_ref!r} → {row.target_ref!r} is already mapped at "
                          f"{seen[(source_id, target_id)]}")
            continue
        seen[(source_id, target_id)] = row.position
        resolved.append((row, source_id, target_id))
    if errors:
        raise MappingIOError("The mapping set cannot be imported; nothing was written.", errors)

    existing: dict[tuple[uuid.UUID, uuid.UUID], Mapping] = {}
    if seen:
        for stored in session.scalars(select(Mapping).where(
                tuple_(Mapping.source_control_id, Mapping.target_control_id).in_(list(seen)))):
            existing[(stored.source_control_id, stored.target_control_id)] = stored

    result = MappingImportResult(spec.name)
    created: list[Mapping] = []
    for row, source_id, target_id in resolved:
        mapping = existing.get((source_id, target_id))
        if mapping is None:
            mapping = Mapping(source_control_id=source_id, target_control_id=target_id,
                              relationship_type=row.relationship, strength=row.strength,
                              rationale=row.rationale, source=row.source)
            session.add(mapping)
            created.append(mapping)
            result.created += 1
            continue
        before = _snapshot(mapping)
        new_source = row.source if row.source is not None else mapping.source
        wanted = {"relationship": row.relationship.value, "strength": row.strength, "rationale": row.rationale,
                  "source": new_source}
        if wanted == before:
            result.unchanged += 1
            continue
        mapping.relationship_type = row.relationship
        mapping.strength = row.strength
        mapping.rationale = row.rationale
        mapping.source = new_source
        changed = [k for k in wanted if wanted[k] != before[k]]
        session.flush()
        audit.record(session, "mapping.update", object_type="mapping", object_id=mapping.id,
                     details={"via": "import", "set": spec.name, "source_ref": row.source_ref,
                              "target_ref": row.target_ref},
                     before={k: before[k] for k in changed}, after={k: wanted[k] for k in changed})
        result.updated += 1
    session.flush()
    ref_of = {control_id: ref for refs in controls.values() for ref, control_id in refs.items()}
    for mapping in created:
        audit.record(session, "mapping.create", object_type="mapping", object_id=mapping.id,
                     details={"via": "import", "set": spec.name,
                              "source_ref": ref_of[mapping.source_control_id],
                              "target_ref": ref_of[mapping.target_control_id]},
                     after=_snapshot(mapping))
    audit.record(session, "mapping.import", object_type="mapping_set", object_id=spec.name,
                 details={"name": spec.name, "source": spec.source, "rows": result.total,
                          "created": result.created, "updated": result.updated, "unchanged": result.unchanged,
                          "frameworks": [f"{t} {v}" for t, v in pairs_of_frameworks]})
    return result


# --- export ----------------------------------------------------------------------------------------


def find_framework(session: Session, title: str, version: str) -> Framework | None:
    return session.scalars(select(Framework).where(Framework.title == title, Framework.version == version)).first()


def _rows_between(session: Session, source: Framework, target: Framework) -> list[Any]:
    src, tgt = aliased(Control), aliased(Control)
    return list(session.execute(
        select(Mapping, src.ref_id.label("source_ref"), tgt.ref_id.label("target_ref"))
        .join(src, src.id == Mapping.source_control_id)
        .join(tgt, tgt.id == Mapping.target_control_id)
        .where(src.framework_id == source.id, tgt.framework_id == target.id,
               src.deleted_at.is_(None), tgt.deleted_at.is_(None))
        .order_by(src.sort_order, src.ref_id, tgt.sort_order, tgt.ref_id)
    ).all())


def export_json(session: Session, source: Framework, target: Framework) -> dict[str, Any]:
    """The mappings from `source`'s controls to `target`'s as a JSON mapping set (a read: not audited)."""
    rows = _rows_between(session, source, target)
    origins = {row.Mapping.source for row in rows}
    common = origins.pop() if len(origins) == 1 else None
    mappings = []
    for row in rows:
        item: dict[str, Any] = {"source": row.source_ref, "target": row.target_ref,
                                "relationship": row.Mapping.relationship_type.value,
                                "strength": row.Mapping.strength, "rationale": row.Mapping.rationale}
        if common is None and row.Mapping.source is not None:
            item["mapping_source"] = row.Mapping.source
        mappings.append(item)
    return {"format_version": FORMAT_VERSION,
            "name": f"{source.title} {source.version} → {target.title} {target.version}",
            "description": None, "source": common, "license": None,
            "source_framework": {"title": source.title, "version": source.version},
            "target_framework": {"title": target.title, "version": target.version},
            "mappings": mappings}


def export_csv(session: Session, source: Framework, target: Framework) -> str:
    """The same mappings as CSV text (header CSV_HEADER)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in _rows_between(session, source, target):
        writer.writerow([source.title, source.version, row.source_ref, row.Mapping.relationship_type.value,
                         target.title, target.version, row.target_ref,
                         "" if row.Mapping.strength is None else row.Mapping.strength,
                         row.Mapping.rationale or ""])
    return out.getvalue()


def export_mapping_set(session: Session, source: Framework, target: Framework, fmt: str) -> str:
    """The mappings from `source` to `target` as JSON or CSV text."""
    if fmt == "json":
        return json.dumps(export_json(session, source, target), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return export_csv(session, source, target)
    raise MappingIOError(f"Unknown export format {fmt!r}: use json or csv.")


# --- shipped sets ----------------------------------------------------------------------------------


def shipped_sets() -> list[str]:
    """Names of the mapping sets shipped in governance/libraries/mappings (file stems)."""
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.json"))


def shipped_path(name: str) -> Path:
    stem = name[:-5] if name.endswith(".json") else name
    if stem not in shipped_sets():
        raise MappingIOError(f"No shipped mapping set {name!r}: choose one of {', '.join(shipped_sets())}.")
    return SHIPPED_DIR / f"{stem}.json"


def shipped_sha256(name: str) -> str:
    return hashlib.sha256(shipped_path(name).read_bytes()).hexdigest()


def load_mapping_set(session: Session, name: str) -> MappingImportResult:
    """Import one shipped mapping set (flush only). MissingFrameworkError when a framework it maps
    is not loaded; loading it again changes nothing."""
    path = shipped_path(name)
    return import_mapping_set(session, load_document(path.read_bytes(), path.name))


def load_all_mapping_sets(session: Session) -> dict[str, MappingImportResult]:
    """Import every shipped mapping set, in one transaction (flush only)."""
    return {name: load_mapping_set(session, name) for name in shipped_sets()}


def load_available_mapping_sets(session: Session) -> dict[str, MappingImportResult]:
    """Import every shipped set whose frameworks are both loaded (flush only); the others are left
    for later. Loading a library calls this, so its crosswalks arrive with it."""
    loaded: dict[str, MappingImportResult] = {}
    for name in shipped_sets():
        savepoint = session.begin_nested()
        try:
            loaded[name] = load_mapping_set(session, name)
        except MissingFrameworkError:
            savepoint.rollback()
            continue
        savepoint.commit()
    return loaded
