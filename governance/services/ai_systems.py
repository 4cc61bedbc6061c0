"""The AI inventory: AI systems (use cases), the models and datasets they use, and what links to
them (controls of any framework, evidence, probes, tasks), with each system's score, flags and the
EU AI Act register view (docs/ai-inventory.md).

Rules:
- a live system's name is unique (case-insensitively here, exactly in the index); a deleted one's
  may be reused; the same goes for datasets, and for models by name and version;
- risk_class and classified_at belong to the classification (governance.services.ai_act): they are
  not edited here; a change of the system's EU AI Act role re-runs the newest classification;
- a model or dataset still used by a live system cannot be deleted;
- the system's score uses the dashboard's formula (governance.services.scoring) over the controls
  that apply to the system (its ai_system_controls rows, manual or from the classification),
  counting only the active checks of probes that check this system or no system at all.
Every change is audited with before/after. Functions flush, never commit. Bad input raises
AIInventoryError(field, message), the field being the form field the page shows it beside.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import io
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, String, and_, cast, exists, false, func, literal, or_, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by, distinct_on
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, joinedload

from governance import context
from governance.models.ai import (
    AIModel,
    AISystem,
    AISystemControl,
    AISystemDataset,
    AISystemModel,
    Dataset,
    ImpactAssessment,
)
from governance.models.audit import Alert
from governance.models.enums import (
    AIActRole,
    AIAutonomy,
    AILifecycleStage,
    AIModelApproval,
    AIRiskClass,
    AlertStatus,
    AssessmentStatus,
    TaskStatus,
)
from governance.models.evidence import Evidence, EvidenceLink
from governance.models.frameworks import Control, Framework
from governance.models.identity import User
from governance.models.probes import Check, Probe
from governance.models.tasks import Task
from governance.services import audit, csv_cells, scoring

NAME_MAX = 255
SHORT_MAX = 255
TEXT_MAX = 10_000
VERSION_MAX = 128
CERTIFICATE_MAX = 500
EU_DB_ID_MAX = 128
URL_MAX = 2048
CATEGORY_MAX = 128  # ai_systems.data_categories is varchar(128)[]
REGION_MAX = 64  # ai_systems.deployment_regions is varchar(64)[]
LIST_MAX = 50  # items per list field
PAGE_MAX = 200
PAGE_SIZE = 50
RELATED_LIMIT = 50
UNCLASSIFIED = "unclassified"
MANUAL = "manual"
CLASSIFICATION = "classification"
ACTIVE_ALERTS = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
ACTIVE_TASKS = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS)
SYSTEM_FIELDS = (
    "name", "purpose", "intended_use", "owner_id", "business_unit", "lifecycle_stage", "eu_role",
    "autonomy_level", "human_oversight", "oversight_owner_id", "data_categories", "deployment_regions",
    "next_review_date", "provider_name", "operating_logic", "conformity_certificate", "eu_database_id",
    "instructions_url",
)
MODEL_FIELDS = ("name", "version", "provider", "license", "approval_status", "notes")
DATASET_FIELDS = ("name", "source", "personal_data", "license", "description")


class AIInventoryError(ValueError):
    """A change the inventory refuses; `field` names the form field the page shows it beside (None:
    the form as a whole)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def link(system: AISystem) -> str:
    return f"/ai-systems/{system.id}"


def today() -> date:
    return datetime.now(UTC).date()


# --- validation ------------------------------------------------------------------------------------

E = TypeVar("E", bound=enum.Enum)


def _words(enum: type[Any]) -> str:
    labels = [str(m.value).replace("_", " ") for m in enum]
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def _enum(field_name: str, enum: type[E], value: Any) -> E:
    try:
        return enum(value)
    except ValueError:
        raise AIInventoryError(field_name, f"Choose {_words(enum)}.") from None


def _required(field_name: str, value: Any, what: str, limit: int) -> str:
    if value is not None and not isinstance(value, str):
        raise AIInventoryError(field_name, f"Enter the {what} as text.")
    clean = " ".join((value or "").split()) if limit <= SHORT_MAX else (value or "").strip()
    if not clean:
        raise AIInventoryError(field_name, f"Enter the {what}.")
    if len(clean) > limit:
        raise AIInventoryError(field_name, f"Keep the {what} to {limit} characters.")
    return clean


def _optional(field_name: str, value: Any, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise AIInventoryError(field_name, f"Enter the {what} as text.")
    clean = " ".join(value.split()) if limit <= SHORT_MAX else value.strip()
    if len(clean) > limit:
        raise AIInventoryError(field_name, f"Keep the {what} to {limit} characters.")
    return clean or None


def _url(field_name: str, value: Any) -> str | None:
    clean = _optional(field_name, value, "address", URL_MAX)
    if clean is None:
        return None
    parts = urlsplit(clean)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in clean:
        raise AIInventoryError(field_name, "Enter a web address starting with https:// (or http://).")
    return clean


def _list(field_name: str, value: Any, what: str, item_max: int) -> list[str]:
    """A list of short strings: trimmed, blanks dropped, duplicates (ignoring case) dropped keeping
    the first spelling, bounded. A single string is split on commas and new lines (a form's field)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace("\n", ",").split(",")
    if not isinstance(value, (list, tuple)):
        raise AIInventoryError(field_name, f"Give the {what} as a list.")
    seen: set[str] = set()
    clean: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise AIInventoryError(field_name, f"Give each of the {what} as text.")
        text = " ".join(item.split())
        if not text or text.casefold() in seen:
            continue
        if len(text) > item_max:
            raise AIInventoryError(field_name, f"Keep each of the {what} to {item_max} characters "
                                               f"(\u201c{text[:40]}\u2026\u201d is longer).")
        seen.add(text.casefold())
        clean.append(text)
    if len(clean) > LIST_MAX:
        raise AIInventoryError(field_name, f"List at most {LIST_MAX} {what}.")
    return clean


def _date(field_name: str, value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise AIInventoryError(field_name, "Enter the date as YYYY-MM-DD, e.g. 2027-03-31.")


def _uuid(field_name: str, value: Any, what: str) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise AIInventoryError(field_name, f"Choose the {what} from the list.") from None


def _user(session: Session, field_name: str, value: Any, what: str) -> uuid.UUID | None:
    user_id = _uuid(field_name, value, what)
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None or not user.is_active:
        raise AIInventoryError(field_name, f"Choose an active user as the {what}; that one does not exist "
                                           "(any more) or cannot sign in.")
    return user.id


def _bool(field_name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or value == "":
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y"):
        return True
    if text in ("0", "false", "no", "off", "n"):
        return False
    raise AIInventoryError(field_name, "Answer yes or no.")


def _unknown(fields: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise AIInventoryError(unknown[0], f"{', '.join(unknown)} cannot be set here.")


def _clean_system(session: Session, fields: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(fields, SYSTEM_FIELDS)
    clean: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "name":
            clean[key] = _required(key, value, "name", NAME_MAX)
        elif key == "purpose":
            clean[key] = _required(key, value, "purpose", TEXT_MAX)
        elif key in ("intended_use", "human_oversight", "operating_logic"):
            what = {"intended_use": "intended use", "human_oversight": "human-oversight measure",
                    "operating_logic": "description of the data and operating logic"}[key]
            clean[key] = _optional(key, value, what, TEXT_MAX)
        elif key in ("owner_id", "oversight_owner_id"):
            clean[key] = _user(session, key, value, "owner" if key == "owner_id" else "human-oversight owner")
        elif key == "business_unit":
            clean[key] = _optional(key, value, "business unit", SHORT_MAX)
        elif key == "provider_name":
            clean[key] = _optional(key, value, "provider's name", SHORT_MAX)
        elif key == "lifecycle_stage":
            clean[key] = _enum(key, AILifecycleStage, value)
        elif key == "eu_role":
            clean[key] = _enum(key, AIActRole, value)
        elif key == "autonomy_level":
            clean[key] = _enum(key, AIAutonomy, value)
        elif key == "data_categories":
            clean[key] = _list(key, value, "data categories", CATEGORY_MAX)
        elif key == "deployment_regions":
            clean[key] = _list(key, value, "deployment regions", REGION_MAX)
        elif key == "next_review_date":
            clean[key] = _date(key, value)
        elif key == "conformity_certificate":
            clean[key] = _optional(key, value, "certificate", CERTIFICATE_MAX)
        elif key == "eu_database_id":
            clean[key] = _optional(key, value, "EU database registration number", EU_DB_ID_MAX)
        elif key == "instructions_url":
            clean[key] = _url(key, value)
    return clean


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@contextlib.contextmanager
def _unique(session: Session, field_name: str, message: str) -> Iterator[None]:
    """Make the block's changes and flush them in a savepoint: a concurrent write of the same name
    (past the check before it) loses with the message, not a 500, and leaves the transaction usable."""
    try:
        with session.begin_nested():
            yield
            session.flush()
    except IntegrityError as exc:
        if "uq_" in str(exc.orig):
            raise AIInventoryError(field_name, message) from None
        raise


# --- systems ---------------------------------------------------------------------------------------

def snapshot(system: AISystem) -> dict[str, Any]:
    values = {key: getattr(system, key) for key in SYSTEM_FIELDS}
    values["data_categories"] = list(system.data_categories or [])
    values["deployment_regions"] = list(system.deployment_regions or [])
    return values


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def _name_taken(session: Session, name: str, *, but: uuid.UUID | None = None) -> bool:
    stmt = select(AISystem.id).where(func.lower(AISystem.name) == name.lower(), AISystem.deleted_at.is_(None))
    if but is not None:
        stmt = stmt.where(AISystem.id != but)
    return session.scalars(stmt.limit(1)).first() is not None


def _taken_message(name: str) -> str:
    return f"An AI system named \u201c{name}\u201d already exists: choose another name."


def get_system(session: Session, system_id: uuid.UUID | str | None) -> AISystem | None:
    """The live system, or None (also for an id that is no UUID)."""
    try:
        key = system_id if isinstance(system_id, uuid.UUID) else uuid.UUID(str(system_id))
    except ValueError:
        return None
    system = session.get(AISystem, key)
    return system if system is not None and system.deleted_at is None else None


def _live(session: Session, system_id: uuid.UUID, *, lock: bool = False) -> AISystem:
    stmt = select(AISystem).where(AISystem.id == system_id, AISystem.deleted_at.is_(None))
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    system = session.scalars(stmt).one_or_none()
    if system is None:
        raise AIInventoryError("system", "That AI system does not exist (any more).")
    return system


def create_system(session: Session, **fields: Any) -> AISystem:
    """Register a system (name and purpose required; the rest optional, see SYSTEM_FIELDS); audited."""
    fields.setdefault("name", None)
    fields.setdefault("purpose", None)
    clean = _clean_system(session, fields)
    if _name_taken(session, clean["name"]):
        raise AIInventoryError("name", _taken_message(clean["name"]))
    system = AISystem(**clean)
    with _unique(session, "name", _taken_message(clean["name"])):
        session.add(system)
    session.refresh(system)
    audit.record(session, "ai_system.create", object_type="ai_system", object_id=system.id, after=snapshot(system))
    return system


def update_system(session: Session, system_id: uuid.UUID, **fields: Any) -> AISystem:
    """Change the given fields (see SYSTEM_FIELDS); audited with what changed. A change of eu_role
    re-runs the newest classification for the new role (ai_act.reclassify)."""
    clean = _clean_system(session, fields)
    system = _live(session, system_id, lock=True)
    if "name" in clean and _name_taken(session, clean["name"], but=system.id):
        raise AIInventoryError("name", _taken_message(clean["name"]))
    before = snapshot(system)
    with _unique(session, "name", _taken_message(clean.get("name", system.name))):
        for key, value in clean.items():
            setattr(system, key, value)
    old, new = _changed(before, snapshot(system))
    if not new:
        return system
    audit.record(session, "ai_system.update", object_type="ai_system", object_id=system.id, before=old, after=new)
    if "eu_role" in new:
        from governance.services import ai_act

        ai_act.reclassify(session, system.id)
    return system


def delete_system(session: Session, system_id: uuid.UUID) -> AISystem:
    """Soft delete: the system leaves lists, scores and the register; its name may be reused."""
    system = _live(session, system_id, lock=True)
    system.deleted_at = func.now()  # type: ignore[assignment]
    session.flush()
    session.refresh(system)
    audit.record(session, "ai_system.delete", object_type="ai_system", object_id=system.id,
                 before={"name": system.name}, after={"deleted_at": system.deleted_at})
    return system


# --- flags -----------------------------------------------------------------------------------------

HIGH_WITHOUT_ASSESSMENT = "High-risk without an approved impact assessment"
PROHIBITED = "Classified as a prohibited practice (Article 5): it must not be placed on the market or used"
HIGH_WITHOUT_OVERSIGHT_OWNER = "High-risk without a human-oversight owner"
REVIEW_OVERDUE = "Its review date has passed"
BLOCKED_MODEL = "Uses a blocked model"


def needs_assessment(system: AISystem) -> bool:
    """Whether the system needs an approved impact assessment: it is classified high-risk."""
    return system.risk_class == AIRiskClass.HIGH


def _approved_assessment() -> ColumnElement[bool]:
    return exists().where(ImpactAssessment.system_id == AISystem.id,
                          ImpactAssessment.status == AssessmentStatus.APPROVED)


def _flag_conditions(on: date) -> list[tuple[str, ColumnElement[bool]]]:
    """Each flag as (message, condition on AISystem), in the order pages show them; never NULL (an
    unclassified system's risk comparisons are), so that NOT of a flag means "not flagged"."""
    blocked = exists().where(AISystemModel.system_id == AISystem.id, AIModel.id == AISystemModel.model_id,
                             AIModel.approval_status == AIModelApproval.BLOCKED, AIModel.deleted_at.is_(None))
    high = AISystem.risk_class == AIRiskClass.HIGH
    flagged = [
        (PROHIBITED, AISystem.risk_class == AIRiskClass.PROHIBITED),
        (HIGH_WITHOUT_ASSESSMENT, and_(high, ~_approved_assessment())),
        (HIGH_WITHOUT_OVERSIGHT_OWNER, and_(high, AISystem.oversight_owner_id.is_(None))),
        (BLOCKED_MODEL, blocked),
        (REVIEW_OVERDUE, AISystem.next_review_date < on),
    ]
    return [(message, func.coalesce(condition, false())) for message, condition in flagged]


def _flag_columns(on: date) -> list[Any]:
    return [condition.label(f"flag_{i}") for i, (_m, condition) in enumerate(_flag_conditions(on))]


def _flags_of(row: Any, on: date) -> list[str]:
    return [message for i, (message, _c) in enumerate(_flag_conditions(on)) if getattr(row, f"flag_{i}")]


def flags_many(session: Session, system_ids: Iterable[uuid.UUID], *,
               on: date | None = None) -> dict[uuid.UUID, list[str]]:
    """The flags of each system, in one statement."""
    ids = list(set(system_ids))
    if not ids:
        return {}
    on = on or today()
    rows = session.execute(select(AISystem.id, *_flag_columns(on)).where(AISystem.id.in_(ids))
                           .execution_options(include_deleted=True))
    return {row.id: _flags_of(row, on) for row in rows}


def flags(session: Session, system: AISystem, *, on: date | None = None) -> list[str]:
    """What needs attention on this system, e.g. "High-risk without an approved impact assessment"."""
    return flags_many(session, [system.id], on=on).get(system.id, [])


# --- lists and the CSV export ----------------------------------------------------------------------

class SystemList(list[AISystem]):
    """One page of systems (a list), with `total` (all matching), `flags` (per system id) and whether
    there is a next page."""

    total: int = 0
    has_more: bool = False
    flags: dict[uuid.UUID, list[str]]

    def __init__(self, items: Iterable[AISystem] = ()) -> None:
        super().__init__(items)
        self.flags = {}


@dataclass(frozen=True)
class Filters:
    risk_class: AIRiskClass | str | None = None  # or UNCLASSIFIED
    stage: AILifecycleStage | None = None
    owner_id: uuid.UUID | None = None
    q: str | None = None
    flagged: bool | None = None


def filters(*, risk_class: Any = None, stage: Any = None, owner_id: Any = None, q: Any = None,
            flagged: Any = None) -> Filters:
    """Validate list filters as a query string gives them ("" = not filtered)."""
    risk: AIRiskClass | str | None = None
    if risk_class not in (None, ""):
        risk = UNCLASSIFIED if risk_class == UNCLASSIFIED else _enum("risk_class", AIRiskClass, risk_class)
    text = _optional("q", q, "search text", SHORT_MAX) if q is not None else None
    return Filters(
        risk_class=risk,
        stage=None if stage in (None, "") else _enum("stage", AILifecycleStage, stage),
        owner_id=_uuid("owner_id", owner_id, "owner"),
        q=text,
        flagged=None if flagged in (None, "") else _bool("flagged", flagged),
    )


def _where(f: Filters, on: date) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [AISystem.deleted_at.is_(None)]
    if f.risk_class == UNCLASSIFIED:
        where.append(AISystem.risk_class.is_(None))
    elif f.risk_class is not None:
        where.append(AISystem.risk_class == AIRiskClass(f.risk_class))
    if f.stage is not None:
        where.append(AISystem.lifecycle_stage == f.stage)
    if f.owner_id is not None:
        where.append(AISystem.owner_id == f.owner_id)
    if f.q:
        pattern = f"%{_escape_like(f.q)}%"
        where.append(or_(AISystem.name.ilike(pattern, escape="\\"), AISystem.purpose.ilike(pattern, escape="\\")))
    if f.flagged is not None:
        any_flag = or_(*(condition for _m, condition in _flag_conditions(on)))
        where.append(any_flag if f.flagged else ~any_flag)
    return where


def list_systems(session: Session, *, risk_class: Any = None, stage: Any = None, owner_id: Any = None,
                 q: Any = None, flagged: Any = None, limit: int = PAGE_SIZE, offset: int = 0) -> SystemList:
    """Live systems by name, filtered (risk_class may be "unclassified"), one page of `limit` from
    `offset`, with their owners and flags: two statements whatever the number of systems."""
    f = filters(risk_class=risk_class, stage=stage, owner_id=owner_id, q=q, flagged=flagged)
    limit = max(1, min(int(limit), PAGE_MAX))
    offset = max(0, int(offset))
    on = today()
    where = _where(f, on)
    rows = session.execute(
        select(AISystem, *_flag_columns(on)).where(*where)
        .options(joinedload(AISystem.owner))
        .order_by(func.lower(AISystem.name), AISystem.id).limit(limit + 1).offset(offset)
    ).all()
    page = SystemList(row[0] for row in rows[:limit])
    page.flags = {row[0].id: _flags_of(row, on) for row in rows[:limit]}
    page.has_more = len(rows) > limit
    page.total = offset + len(page)
    if page.has_more or (offset and not page):
        page.total = int(session.scalar(select(func.count(AISystem.id)).where(*where)) or 0)
    return page


CSV_COLUMNS = (
    "id", "name", "purpose", "intended_use", "owner", "business_unit", "lifecycle_stage", "eu_role",
    "autonomy_level", "risk_class", "classified_at", "human_oversight", "oversight_owner", "data_categories",
    "deployment_regions", "next_review_date", "models", "datasets", "flags",
)


# A CSV cell without formulas (shared with the audit-log export).
_cell = csv_cells.cell


def iter_systems_csv(session: Session, *, risk_class: Any = None, stage: Any = None, owner_id: Any = None,
                     q: Any = None, flagged: Any = None, batch: int = 500) -> Iterator[str]:
    """The filtered inventory as CSV text, one row per string (the header first), streamed from a
    server-side cursor: memory stays flat at any number of systems. Cells that a spreadsheet would
    run as a formula get a leading apostrophe. Validates the filters before the first row."""
    f = filters(risk_class=risk_class, stage=stage, owner_id=owner_id, q=q, flagged=flagged)
    return _csv_rows(session, f, batch)


def _csv_rows(session: Session, f: Filters, batch: int) -> Iterator[str]:
    on = today()
    owner, oversight = aliased(User), aliased(User)
    label = func.concat_ws(" ", AIModel.name, func.nullif(AIModel.version, ""))
    models = (select(func.string_agg(label, aggregate_order_by(literal("; "), AIModel.name, AIModel.version)))
              .join(AISystemModel, AISystemModel.model_id == AIModel.id)
              .where(AISystemModel.system_id == AISystem.id, AIModel.deleted_at.is_(None))
              .correlate(AISystem).scalar_subquery())
    datasets = (select(func.string_agg(Dataset.name, aggregate_order_by(literal("; "), Dataset.name)))
                .join(AISystemDataset, AISystemDataset.dataset_id == Dataset.id)
                .where(AISystemDataset.system_id == AISystem.id, Dataset.deleted_at.is_(None))
                .correlate(AISystem).scalar_subquery())
    stmt = (
        select(AISystem.id, AISystem.name, AISystem.purpose, AISystem.intended_use, owner.email.label("owner"),
               AISystem.business_unit, AISystem.lifecycle_stage, AISystem.eu_role, AISystem.autonomy_level,
               AISystem.risk_class, AISystem.classified_at, AISystem.human_oversight,
               oversight.email.label("oversight_owner"), AISystem.data_categories, AISystem.deployment_regions,
               AISystem.next_review_date, models.label("models"), datasets.label("datasets"), *_flag_columns(on))
        .outerjoin(owner, owner.id == AISystem.owner_id)
        .outerjoin(oversight, oversight.id == AISystem.oversight_owner_id)
        .where(*_where(f, on))
        .order_by(func.lower(AISystem.name), AISystem.id)
        .execution_options(include_deleted=True)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: Iterable[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(v) for v in values])
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    result = session.execute(stmt, execution_options={"stream_results": True, "yield_per": batch})
    try:
        for row in result:
            yield line([*row[:len(CSV_COLUMNS) - 1], _flags_of(row, on)])
    finally:
        result.close()


# --- models and datasets ---------------------------------------------------------------------------

def _model_snapshot(model: AIModel) -> dict[str, Any]:
    return {key: getattr(model, key) for key in MODEL_FIELDS}


def _dataset_snapshot(dataset: Dataset) -> dict[str, Any]:
    return {key: getattr(dataset, key) for key in DATASET_FIELDS}


def _clean_model(fields: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(fields, MODEL_FIELDS)
    clean: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "name":
            clean[key] = _required(key, value, "model's name", NAME_MAX)
        elif key == "version":
            clean[key] = _optional(key, value, "version", VERSION_MAX) or ""
        elif key == "provider":
            clean[key] = _optional(key, value, "provider", SHORT_MAX)
        elif key == "license":
            clean[key] = _optional(key, value, "licence", SHORT_MAX)
        elif key == "approval_status":
            clean[key] = _enum(key, AIModelApproval, value)
        elif key == "notes":
            clean[key] = _optional(key, value, "notes", TEXT_MAX)
    return clean


def _clean_dataset(fields: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(fields, DATASET_FIELDS)
    clean: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "name":
            clean[key] = _required(key, value, "dataset's name", NAME_MAX)
        elif key == "source":
            clean[key] = _optional(key, value, "source", TEXT_MAX)
        elif key == "personal_data":
            clean[key] = _bool(key, value)
        elif key == "license":
            clean[key] = _optional(key, value, "licence", SHORT_MAX)
        elif key == "description":
            clean[key] = _optional(key, value, "description", TEXT_MAX)
    return clean


def _model_label(name: str, version: str) -> str:
    return f"\u201c{name}\u201d" + (f" version {version}" if version else "")


def _model_taken(session: Session, name: str, version: str, *, but: uuid.UUID | None = None) -> bool:
    stmt = select(AIModel.id).where(func.lower(AIModel.name) == name.lower(), AIModel.version == version,
                                    AIModel.deleted_at.is_(None))
    if but is not None:
        stmt = stmt.where(AIModel.id != but)
    return session.scalars(stmt.limit(1)).first() is not None


def _dataset_taken(session: Session, name: str, *, but: uuid.UUID | None = None) -> bool:
    stmt = select(Dataset.id).where(func.lower(Dataset.name) == name.lower(), Dataset.deleted_at.is_(None))
    if but is not None:
        stmt = stmt.where(Dataset.id != but)
    return session.scalars(stmt.limit(1)).first() is not None


def get_model(session: Session, model_id: uuid.UUID) -> AIModel | None:
    model = session.get(AIModel, model_id)
    return model if model is not None and model.deleted_at is None else None


def get_dataset(session: Session, dataset_id: uuid.UUID) -> Dataset | None:
    dataset = session.get(Dataset, dataset_id)
    return dataset if dataset is not None and dataset.deleted_at is None else None


def _live_model(session: Session, model_id: Any, *, field_name: str = "model") -> AIModel:
    key = _uuid(field_name, model_id, "model")
    model = get_model(session, key) if key is not None else None
    if model is None:
        raise AIInventoryError(field_name, "That model does not exist (any more).")
    return model


def _live_dataset(session: Session, dataset_id: Any, *, field_name: str = "dataset") -> Dataset:
    key = _uuid(field_name, dataset_id, "dataset")
    dataset = get_dataset(session, key) if key is not None else None
    if dataset is None:
        raise AIInventoryError(field_name, "That dataset does not exist (any more).")
    return dataset


def create_model(session: Session, **fields: Any) -> AIModel:
    """A model (name required; version, provider, licence, approval_status, notes); audited."""
    fields.setdefault("name", None)
    clean = _clean_model(fields)
    clean.setdefault("version", "")
    taken = f"The model {_model_label(clean['name'], clean['version'])} already exists."
    if _model_taken(session, clean["name"], clean["version"]):
        raise AIInventoryError("name", taken)
    model = AIModel(**clean)
    with _unique(session, "name", taken):
        session.add(model)
    session.refresh(model)
    audit.record(session, "ai_model.create", object_type="ai_model", object_id=model.id,
                 after=_model_snapshot(model))
    return model


def update_model(session: Session, model_id: uuid.UUID, **fields: Any) -> AIModel:
    clean = _clean_model(fields)
    model = _live_model(session, model_id)
    before = _model_snapshot(model)
    name, version = clean.get("name", model.name), clean.get("version", model.version)
    taken = f"The model {_model_label(name, version)} already exists."
    if ("name" in clean or "version" in clean) and _model_taken(session, name, version, but=model.id):
        raise AIInventoryError("name", taken)
    with _unique(session, "name", taken):
        for key, value in clean.items():
            setattr(model, key, value)
    old, new = _changed(before, _model_snapshot(model))
    if not new:
        return model
    audit.record(session, "ai_model.update", object_type="ai_model", object_id=model.id, before=old, after=new)
    return model


def _users_of(session: Session, column: Any, value: uuid.UUID) -> list[str]:
    association = column.class_
    return list(session.scalars(
        select(AISystem.name).join(association, association.system_id == AISystem.id)
        .where(column == value, AISystem.deleted_at.is_(None)).order_by(AISystem.name).limit(4)))


def _in_use(kind: str, names: list[str]) -> str:
    shown = ", ".join(f"\u201c{n}\u201d" for n in names[:3]) + (" and others" if len(names) > 3 else "")
    return f"This {kind} is used by {shown}: unlink it from {'that system' if len(names) == 1 else 'them'} first."


def delete_model(session: Session, model_id: uuid.UUID) -> AIModel:
    """Soft delete; refused while a live system uses the model."""
    model = _live_model(session, model_id)
    users = _users_of(session, AISystemModel.model_id, model.id)
    if users:
        raise AIInventoryError("model", _in_use("model", users))
    model.deleted_at = func.now()  # type: ignore[assignment]
    session.flush()
    audit.record(session, "ai_model.delete", object_type="ai_model", object_id=model.id,
                 before={"name": model.name, "version": model.version})
    return model


def list_models(session: Session, *, q: str | None = None, approval_status: Any = None,
                limit: int = PAGE_MAX) -> list[AIModel]:
    stmt = select(AIModel).order_by(func.lower(AIModel.name), AIModel.version, AIModel.id)
    if approval_status not in (None, ""):
        stmt = stmt.where(AIModel.approval_status == _enum("approval_status", AIModelApproval, approval_status))
    if q:
        stmt = stmt.where(AIModel.name.ilike(f"%{_escape_like(q.strip())}%", escape="\\"))
    return list(session.scalars(stmt.limit(max(1, min(int(limit), PAGE_MAX)))))


def create_dataset(session: Session, **fields: Any) -> Dataset:
    """A dataset (name required; source, personal_data, licence, description); audited."""
    fields.setdefault("name", None)
    clean = _clean_dataset(fields)
    taken = f"A dataset named \u201c{clean['name']}\u201d already exists."
    if _dataset_taken(session, clean["name"]):
        raise AIInventoryError("name", taken)
    dataset = Dataset(**clean)
    with _unique(session, "name", taken):
        session.add(dataset)
    session.refresh(dataset)
    audit.record(session, "dataset.create", object_type="dataset", object_id=dataset.id,
                 after=_dataset_snapshot(dataset))
    return dataset


def update_dataset(session: Session, dataset_id: uuid.UUID, **fields: Any) -> Dataset:
    clean = _clean_dataset(fields)
    dataset = _live_dataset(session, dataset_id)
    name = clean.get("name", dataset.name)
    taken = f"A dataset named \u201c{name}\u201d already exists."
    if "name" in clean and _dataset_taken(session, name, but=dataset.id):
        raise AIInventoryError("name", taken)
    before = _dataset_snapshot(dataset)
    with _unique(session, "name", taken):
        for key, value in clean.items():
            setattr(dataset, key, value)
    old, new = _changed(before, _dataset_snapshot(dataset))
    if not new:
        return dataset
    audit.record(session, "dataset.update", object_type="dataset", object_id=dataset.id, before=old, after=new)
    return dataset


def delete_dataset(session: Session, dataset_id: uuid.UUID) -> Dataset:
    """Soft delete; refused while a live system uses the dataset."""
    dataset = _live_dataset(session, dataset_id)
    users = _users_of(session, AISystemDataset.dataset_id, dataset.id)
    if users:
        raise AIInventoryError("dataset", _in_use("dataset", users))
    dataset.deleted_at = func.now()  # type: ignore[assignment]
    session.flush()
    audit.record(session, "dataset.delete", object_type="dataset", object_id=dataset.id,
                 before={"name": dataset.name})
    return dataset


def list_datasets(session: Session, *, q: str | None = None, personal_data: Any = None,
                  limit: int = PAGE_MAX) -> list[Dataset]:
    stmt = select(Dataset).order_by(func.lower(Dataset.name), Dataset.id)
    if personal_data not in (None, ""):
        stmt = stmt.where(Dataset.personal_data.is_(true() if _bool("personal_data", personal_data) else false()))
    if q:
        stmt = stmt.where(Dataset.name.ilike(f"%{_escape_like(q.strip())}%", escape="\\"))
    return list(session.scalars(stmt.limit(max(1, min(int(limit), PAGE_MAX)))))


# --- links -----------------------------------------------------------------------------------------

def _audit_link(session: Session, action: str, system: AISystem, **details: Any) -> None:
    audit.record(session, action, object_type="ai_system", object_id=system.id,
                 details={"system": system.name, **details})


def link_model(session: Session, system_id: uuid.UUID, model_id: Any) -> AISystemModel:
    """The system uses the model; linking again changes nothing."""
    system = _live(session, system_id)
    model = _live_model(session, model_id, field_name="model_id")
    row = session.scalars(select(AISystemModel).where(AISystemModel.system_id == system.id,
                                                      AISystemModel.model_id == model.id)).one_or_none()
    if row is not None:
        return row
    row = AISystemModel(system_id=system.id, model_id=model.id)
    session.add(row)
    session.flush()
    _audit_link(session, "ai_system.link_model", system, model_id=model.id,
                model=f"{model.name} {model.version}".strip())
    return row


def unlink_model(session: Session, system_id: uuid.UUID, model_id: Any) -> bool:
    """Whether a link was removed."""
    system = _live(session, system_id)
    key = _uuid("model_id", model_id, "model")
    row = session.scalars(select(AISystemModel).where(AISystemModel.system_id == system.id,
                                                      AISystemModel.model_id == key)).one_or_none()
    if row is None:
        return False
    model = session.get(AIModel, row.model_id)
    session.delete(row)
    session.flush()
    _audit_link(session, "ai_system.unlink_model", system, model_id=key,
                model=f"{model.name} {model.version}".strip() if model is not None else None)
    return True


def link_dataset(session: Session, system_id: uuid.UUID, dataset_id: Any) -> AISystemDataset:
    system = _live(session, system_id)
    dataset = _live_dataset(session, dataset_id, field_name="dataset_id")
    row = session.scalars(select(AISystemDataset).where(AISystemDataset.system_id == system.id,
                                                        AISystemDataset.dataset_id == dataset.id)).one_or_none()
    if row is not None:
        return row
    row = AISystemDataset(system_id=system.id, dataset_id=dataset.id)
    session.add(row)
    session.flush()
    _audit_link(session, "ai_system.link_dataset", system, dataset_id=dataset.id, dataset=dataset.name)
    return row


def unlink_dataset(session: Session, system_id: uuid.UUID, dataset_id: Any) -> bool:
    system = _live(session, system_id)
    key = _uuid("dataset_id", dataset_id, "dataset")
    row = session.scalars(select(AISystemDataset).where(AISystemDataset.system_id == system.id,
                                                        AISystemDataset.dataset_id == key)).one_or_none()
    if row is None:
        return False
    dataset = session.get(Dataset, row.dataset_id)
    session.delete(row)
    session.flush()
    _audit_link(session, "ai_system.unlink_dataset", system, dataset_id=key,
                dataset=dataset.name if dataset is not None else None)
    return True


def link_control(session: Session, system_id: uuid.UUID, control_id: Any, *,
                 reason: str | None = None) -> AISystemControl:
    """The control (of any framework) applies to the system by hand (origin manual); the reason is
    the linker's note. Linking again updates nothing and returns the row."""
    system = _live(session, system_id)
    key = _uuid("control_id", control_id, "control")
    control = session.get(Control, key) if key is not None else None
    if control is None or control.deleted_at is not None:
        raise AIInventoryError("control_id", "That control does not exist (any more).")
    note = _optional("reason", reason, "reason", TEXT_MAX)
    row = session.scalars(select(AISystemControl).where(
        AISystemControl.system_id == system.id, AISystemControl.control_id == control.id,
        AISystemControl.origin == MANUAL)).one_or_none()
    if row is not None:
        return row
    row = AISystemControl(system_id=system.id, control_id=control.id, origin=MANUAL, reason=note)
    session.add(row)
    session.flush()
    _audit_link(session, "ai_system.link_control", system, control_id=control.id,
                control=f"{control.ref_id} {control.title}", reason=note)
    return row


def unlink_control(session: Session, system_id: uuid.UUID, control_id: Any) -> bool:
    """Remove the manual link. A control that applies through the classification stays (the
    classification decides it): refused when it is the only link, with the reason."""
    system = _live(session, system_id)
    key = _uuid("control_id", control_id, "control")
    rows = list(session.scalars(select(AISystemControl).where(AISystemControl.system_id == system.id,
                                                              AISystemControl.control_id == key)))
    manual = [r for r in rows if r.origin == MANUAL]
    if not manual:
        if rows:
            raise AIInventoryError("control_id", "This control applies because of the system's EU AI Act "
                                                 "classification: change the classification's answers instead.")
        return False
    control = session.get(Control, key)
    session.delete(manual[0])
    session.flush()
    _audit_link(session, "ai_system.unlink_control", system, control_id=key,
                control=f"{control.ref_id} {control.title}" if control is not None else None)
    return True


class SystemControl(NamedTuple):
    control: Control
    origins: list[str]  # "manual", "classification" or both
    reasons: list[str]


def system_controls(session: Session, system_id: uuid.UUID) -> list[SystemControl]:
    """The controls that apply to the system, each once with how (origins) and why (reasons),
    ordered by framework and control: one statement."""
    rows = session.execute(
        select(AISystemControl.origin, AISystemControl.reason, Control)
        .join(Control, Control.id == AISystemControl.control_id)
        .join(Framework, Framework.id == Control.framework_id)
        .where(AISystemControl.system_id == system_id)
        .options(joinedload(Control.framework))
        .order_by(Framework.title, Control.sort_order, Control.ref_id, AISystemControl.origin)
    ).all()
    merged: dict[uuid.UUID, SystemControl] = {}
    for origin, reason, control in rows:
        entry = merged.setdefault(control.id, SystemControl(control, [], []))
        if origin not in entry.origins:
            entry.origins.append(origin)
        if reason and reason not in entry.reasons:
            entry.reasons.append(reason)
    return list(merged.values())


def link_evidence(session: Session, system_id: uuid.UUID, evidence_id: Any, *,
                  note: str | None = None) -> EvidenceLink:
    """Attach evidence (a model card, evaluation report, data sheet …) to the system; attaching it
    again changes nothing."""
    system = _live(session, system_id)
    key = _uuid("evidence_id", evidence_id, "evidence")
    evidence = session.get(Evidence, key) if key is not None else None
    if evidence is None or evidence.deleted_at is not None:
        raise AIInventoryError("evidence_id", "That evidence does not exist (any more).")
    row = session.scalars(select(EvidenceLink).where(EvidenceLink.ai_system_id == system.id,
                                                     EvidenceLink.evidence_id == evidence.id)).one_or_none()
    if row is not None:
        return row
    row = EvidenceLink(evidence_id=evidence.id, ai_system_id=system.id, linked_by_id=context.current().actor_id,
                       note=_optional("note", note, "note", TEXT_MAX))
    session.add(row)
    session.flush()
    _audit_link(session, "ai_system.link_evidence", system, evidence_id=evidence.id, evidence=evidence.name,
                category=evidence.category, link_id=row.id)
    return row


def unlink_evidence(session: Session, system_id: uuid.UUID, evidence_id: Any) -> bool:
    system = _live(session, system_id)
    key = _uuid("evidence_id", evidence_id, "evidence")
    row = session.scalars(select(EvidenceLink).where(EvidenceLink.ai_system_id == system.id,
                                                     EvidenceLink.evidence_id == key)).one_or_none()
    if row is None:
        return False
    evidence = session.get(Evidence, key)
    _audit_link(session, "ai_system.unlink_evidence", system, evidence_id=key, link_id=row.id,
                evidence=evidence.name if evidence is not None else None)
    session.delete(row)
    session.flush()
    return True


def system_evidence(session: Session, system_id: uuid.UUID, *, limit: int = RELATED_LIMIT) -> list[Evidence]:
    """Live evidence linked to the system, newest first."""
    return list(session.scalars(
        select(Evidence).join(EvidenceLink, EvidenceLink.evidence_id == Evidence.id)
        .where(EvidenceLink.ai_system_id == system_id)
        .order_by(Evidence.created_at.desc(), Evidence.id).limit(limit)))


def expiring_evidence(session: Session, system_id: uuid.UUID, days: int = 30, *,
                      limit: int = RELATED_LIMIT) -> list[Evidence]:
    """Live evidence linked to the system that expires within `days` (or has expired), soonest first."""
    horizon = datetime.now(UTC) + timedelta(days=days)
    return list(session.scalars(
        select(Evidence).join(EvidenceLink, EvidenceLink.evidence_id == Evidence.id)
        .where(EvidenceLink.ai_system_id == system_id, Evidence.expires_at.isnot(None),
               Evidence.expires_at <= horizon)
        .order_by(Evidence.expires_at, Evidence.id).limit(limit)))


def link_probe(session: Session, system_id: uuid.UUID, probe_id: Any) -> Probe:
    """The probe checks this system (probes.ai_system_id): its checks count in this system's score
    only (and no longer in other systems'), and its alerts and tasks show on the system's page."""
    system = _live(session, system_id)
    key = _uuid("probe_id", probe_id, "probe")
    probe = session.get(Probe, key) if key is not None else None
    if probe is None:
        raise AIInventoryError("probe_id", "That probe does not exist (any more).")
    if probe.ai_system_id == system.id:
        return probe
    before = probe.ai_system_id
    probe.ai_system_id = system.id
    session.flush()
    _audit_link(session, "ai_system.link_probe", system, probe_id=probe.id, probe=probe.name,
                before={"ai_system_id": before}, after={"ai_system_id": system.id})
    return probe


def unlink_probe(session: Session, system_id: uuid.UUID, probe_id: Any) -> bool:
    system = _live(session, system_id)
    key = _uuid("probe_id", probe_id, "probe")
    probe = session.get(Probe, key) if key is not None else None
    if probe is None or probe.ai_system_id != system.id:
        return False
    probe.ai_system_id = None
    session.flush()
    _audit_link(session, "ai_system.unlink_probe", system, probe_id=probe.id, probe=probe.name,
                before={"ai_system_id": system.id}, after={"ai_system_id": None})
    return True


def system_probes(session: Session, system_id: uuid.UUID) -> list[Probe]:
    return list(session.scalars(select(Probe).where(Probe.ai_system_id == system_id).order_by(Probe.name)))


def system_alerts(session: Session, system_id: uuid.UUID, *, limit: int = RELATED_LIMIT) -> list[Alert]:
    """Open and acknowledged alerts about a check of the system's probes or about the system itself,
    most recently seen first."""
    check_ids = select(cast(Check.id, String)).join(Probe, Probe.id == Check.probe_id) \
        .where(Probe.ai_system_id == system_id)
    return list(session.scalars(
        select(Alert).where(
            Alert.status.in_(ACTIVE_ALERTS),
            or_(and_(Alert.source_type == "check", Alert.source_id.in_(check_ids)),
                and_(Alert.source_type == "ai_system", Alert.source_id == str(system_id))))
        .order_by(Alert.last_seen_at.desc(), Alert.id).limit(limit)))


def system_tasks(session: Session, system_id: uuid.UUID, *, include_closed: bool = False,
                 limit: int = RELATED_LIMIT) -> list[Task]:
    """Live tasks of the system (tasks.ai_system_id) or of its probes; to-do ones only unless
    include_closed; soonest due first."""
    probes = select(Probe.id).where(Probe.ai_system_id == system_id)
    stmt = select(Task).where(or_(Task.ai_system_id == system_id, Task.probe_id.in_(probes)))
    if not include_closed:
        stmt = stmt.where(Task.status.in_(ACTIVE_TASKS))
    return list(session.scalars(stmt.options(joinedload(Task.assignee))
                                .order_by(Task.due_date.asc().nulls_last(), Task.created_at, Task.id).limit(limit)))


# --- the score -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SystemScore:
    """The system's score by the dashboard's formula (scoring.FORMULA_TEXT) over its applicable
    controls; value None while no applicable control has a counted outcome. `controls`: the
    applicable controls the score covers (live and assessable)."""

    value: Decimal | None
    compliant: int = 0
    partial: int = 0
    non_compliant: int = 0
    unassessed: int = 0
    error: int = 0
    not_applicable: int = 0
    controls: int = 0


def counted_checks(system_id: uuid.UUID) -> ColumnElement[bool]:
    """The checks a system's score counts: those of probes that check this system or no system."""
    return Check.probe_id.in_(select(Probe.id).where(
        or_(Probe.ai_system_id.is_(None), Probe.ai_system_id == system_id)))


def system_score(session: Session, system_id: uuid.UUID) -> SystemScore:
    """Computed on read in two statements, whatever the number of controls and checks."""
    control_ids = set(session.scalars(select(AISystemControl.control_id)
                                      .where(AISystemControl.system_id == system_id)))
    if not control_ids:
        return SystemScore(value=None)
    states = [s for s in scoring.control_states(session, control_ids, checks=counted_checks(system_id)).values()
              if s.scored]
    totals = scoring.total(states)
    return SystemScore(
        value=scoring.percentage(totals.weight_counted, totals.weighted_points),
        compliant=totals.compliant, partial=totals.partial, non_compliant=totals.non_compliant,
        unassessed=totals.unassessed, error=totals.error, not_applicable=totals.not_applicable,
        controls=len(states))


# --- the EU AI Act register (Article 49, Annex VIII) -----------------------------------------------

@dataclass(frozen=True)
class RegisterItem:
    key: str
    label: str
    ref: str  # the Annex VIII point it answers
    value: str | None

    @property
    def missing(self) -> bool:
        return not self.value


@dataclass(frozen=True)
class RegisterRow:
    """One high-risk system as the EU database asks for it: Annex VIII Section A when the
    organisation provides (or imports or distributes) it, Section C when it deploys it."""

    system: AISystem
    section: str  # "A" or "C"
    items: list[RegisterItem] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [item.label for item in self.items if item.missing]


STATUS_WORDS = {
    AILifecycleStage.IDEA: "Not yet placed on the market or put into service",
    AILifecycleStage.DEVELOPMENT: "Not yet placed on the market or put into service",
    AILifecycleStage.VALIDATION: "Not yet placed on the market or put into service",
    AILifecycleStage.PRODUCTION: "In service",
    AILifecycleStage.RETIRED: "No longer in service",
}


def _contact(user: User | None, unit: str | None = None) -> str | None:
    if user is None:
        return None
    return f"{user.name} <{user.email}>" + (f", {unit}" if unit else "")


def _joined(*parts: str | None, sep: str = " \u2014 ") -> str | None:
    present = [p for p in parts if p]
    return sep.join(present) if present else None


def _section_a(system: AISystem) -> list[RegisterItem]:
    a = "Annex VIII, Section A, point"
    return [
        RegisterItem("provider", "Provider's name and contact details", f"{a} 1",
                     _joined(system.provider_name, _contact(system.owner)) if system.provider_name else None),
        RegisterItem("trade_name", "Trade name and any unambiguous reference", f"{a} 4", system.name),
        RegisterItem("intended_purpose", "Intended purpose, components and functions", f"{a} 5",
                     _joined(system.purpose, system.intended_use)),
        RegisterItem("operating_logic", "Information used (data, inputs) and operating logic", f"{a} 6",
                     _joined(system.operating_logic,
                             ("Data: " + ", ".join(system.data_categories)) if system.data_categories else None)
                     if system.operating_logic else None),
        RegisterItem("status", "Status (on the market, in service, withdrawn)", f"{a} 7",
                     STATUS_WORDS[system.lifecycle_stage]),
        RegisterItem("certificate", "Notified body's certificate (type, number, expiry, body)", f"{a} 8",
                     system.conformity_certificate),
        RegisterItem("member_states", "Member States where it is placed on the market or in service", f"{a} 10",
                     ", ".join(system.deployment_regions) or None),
        RegisterItem("instructions", "Electronic instructions for use", f"{a} 12", system.instructions_url),
        RegisterItem("eu_database_id", "EU database registration number", "Article 49(1), Article 71",
                     system.eu_database_id),
    ]


def _section_c(system: AISystem, assessment: ImpactAssessment | None) -> list[RegisterItem]:
    from governance.services import impact_assessments

    c = "Annex VIII, Section C, point"
    return [
        RegisterItem("deployer", "Deployer's name and contact details", f"{c} 1",
                     _contact(system.owner, system.business_unit)),
        RegisterItem("trade_name", "AI system (trade name)", f"{c} 3", system.name),
        RegisterItem("provider", "Provider of the system", f"{c} 3", system.provider_name),
        RegisterItem("eu_database_id", "The provider's entry in the EU database", f"{c} 3", system.eu_database_id),
        RegisterItem("fria_summary", "Summary of the fundamental rights impact assessment (Article 27)", f"{c} 4",
                     impact_assessments.findings_summary(assessment) if assessment is not None else None),
        RegisterItem("dpia_summary", "Summary of the data protection impact assessment (Article 26(9))", f"{c} 5",
                     impact_assessments.dpia_summary(assessment) if assessment is not None else None),
    ]


def register_rows(session: Session) -> list[RegisterRow]:
    """Every live high-risk system with the Annex VIII items it answers and those missing: two
    statements whatever the number of systems."""
    systems = list(session.scalars(
        select(AISystem).where(AISystem.risk_class == AIRiskClass.HIGH, AISystem.deleted_at.is_(None))
        .options(joinedload(AISystem.owner)).order_by(func.lower(AISystem.name), AISystem.id)))
    deployed = [s.id for s in systems if s.eu_role == AIActRole.DEPLOYER]
    approved: dict[uuid.UUID, ImpactAssessment] = {}
    if deployed:
        approved = {a.system_id: a for a in session.scalars(
            select(ImpactAssessment).ext(distinct_on(ImpactAssessment.system_id))
            .where(ImpactAssessment.system_id.in_(deployed), ImpactAssessment.status == AssessmentStatus.APPROVED)
            .order_by(ImpactAssessment.system_id, ImpactAssessment.version.desc()))}
    rows = []
    for system in systems:
        if system.eu_role == AIActRole.DEPLOYER:
            rows.append(RegisterRow(system, "C", _section_c(system, approved.get(system.id))))
        else:
            rows.append(RegisterRow(system, "A", _section_a(system)))
    return rows
