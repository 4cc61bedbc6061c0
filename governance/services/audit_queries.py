"""Read queries behind the audit-log pages and the CSV export: a fixed number of statements per page,
whatever the size of the log or how deep the page is.

Pages are keyset-paginated on (created_at, id), newest first, never OFFSET: "older" continues below
the last row shown, "newer" above the first one, so a page 100,000 entries deep costs what the first
one does. Each filter has an index that yields rows already in created_at order, so PostgreSQL walks
the newest partitions first and stops after one page:
  no filter / time range only   ix_audit_logs_created_at_id (migration 0012)
  actor                         ix_audit_logs_actor_id_created_at
  exact action                  ix_audit_logs_action_created_at
  object type (and id)          ix_audit_logs_object_type_object_id_created_at
  outcome denied / error        ix_audit_logs_not_success_created_at (partial)
and the time range prunes whole monthly partitions (created_at is the partition key). An action
prefix ("evidence.") walks created_at order and keeps the matching rows: as cheap as the family is
common (docs/audit-log-pages.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, cast, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session, load_only

from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.models.identity import User
from governance.services import personal_data

PAGE_SIZE = 50
ACTOR_MATCH_LIMIT = 5  # users named when an actor filter is ambiguous
EXPORT_BATCH = 2_000  # rows per server-side cursor fetch (and per chunk of CSV sent)

# What a list row shows: the details (JSONB, possibly large) stay in the database until expanded.
LIST_COLUMNS = (
    AuditLog.id, AuditLog.created_at, AuditLog.actor_id, AuditLog.actor_name, AuditLog.action,
    AuditLog.object_type, AuditLog.object_id, AuditLog.outcome, AuditLog.ip, AuditLog.request_id,
)

# The hash chain's columns (migration 0011), exported when the table has them.
CHAIN_COLUMNS = tuple(name for name in ("seq", "hash") if name in AuditLog.__table__.columns)

# The CSV export's columns, in order (docs/audit-log-pages.md describes each).
EXPORT_COLUMNS = (
    "created_at", "id", "actor_id", "actor_name", "action", "object_type", "object_id", "outcome",
    "ip", "user_agent", "request_id", "details", *CHAIN_COLUMNS,
)


@dataclass(frozen=True)
class Filters:
    """What the list is filtered by; every field optional. `actor_ids` comes from resolve_actor."""

    actor_id: uuid.UUID | None = None
    action: str = ""
    action_prefix: bool = False  # action ends with "." or "*": every action starting with it
    object_type: str = ""
    object_id: str = ""
    outcome: AuditOutcome | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until (the web layer makes "to" exclusive)

    def as_details(self) -> dict[str, Any]:
        """The filters as recorded in the export's audit entry."""
        out: dict[str, Any] = {}
        if self.actor_id is not None:
            out["actor_id"] = str(self.actor_id)
        if self.action:
            out["action"] = self.action + ("*" if self.action_prefix else "")
        if self.object_type:
            out["object_type"] = self.object_type
        if self.object_id:
            out["object_id"] = self.object_id
        if self.outcome is not None:
            out["outcome"] = self.outcome.value
        if self.since is not None:
            out["from"] = self.since.isoformat()
        if self.until is not None:
            out["until"] = self.until.isoformat()
        return out


@dataclass(frozen=True)
class Cursor:
    """A position in the (created_at, id) order."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        return f"{self.created_at.isoformat()}_{self.id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor | None:
        """The cursor in a "newer"/"older" link, or None when it is not one (tampered, truncated)."""
        stamp, sep, ident = raw.rpartition("_")
        if not sep:
            return None
        try:
            created_at = datetime.fromisoformat(stamp)
            entry_id = uuid.UUID(ident)
        except ValueError:
            return None
        if created_at.tzinfo is None:
            return None
        return cls(created_at, entry_id)


@dataclass(frozen=True)
class Page:
    rows: list[AuditLog]
    newer: Cursor | None  # where the "newer" link continues from (None: this is the newest page)
    older: Cursor | None  # where the "older" link continues from (None: nothing older)
    # details->>'sealed' of the rows that have it (the actor's sealed fields), by entry id: the list
    # does not load details, and personal_data.reveal needs only these.
    sealed: dict[uuid.UUID, str] = field(default_factory=dict)


# --- filters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActorMatch:
    user: User | None
    candidates: list[User] = field(default_factory=list)  # when several match


def resolve_actor(session: Session, text: str) -> ActorMatch:
    """The one user `text` names: an exact e-mail or name (case-insensitive) wins, else the only user
    whose name or e-mail contains it. One statement; users are few next to audit entries."""
    needle = text.strip().lower()
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    exact = or_(func.lower(User.email) == needle, func.lower(User.name) == needle)
    rows = list(session.scalars(
        select(User)
        .where(or_(User.email.ilike(pattern, escape="\\"), User.name.ilike(pattern, escape="\\")))
        .order_by(exact.desc(), User.email)
        .limit(ACTOR_MATCH_LIMIT + 1)
    ))
    exact_rows = [u for u in rows if needle in (u.email.lower(), u.name.lower())]
    if len(exact_rows) == 1:
        return ActorMatch(exact_rows[0])
    if len(rows) == 1:
        return ActorMatch(rows[0])
    return ActorMatch(None, exact_rows or rows[:ACTOR_MATCH_LIMIT])


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(stmt: Select[Any], filters: Filters) -> Select[Any]:
    if filters.actor_id is not None:
        stmt = stmt.where(AuditLog.actor_id == filters.actor_id)
    if filters.action:
        if filters.action_prefix:
            stmt = stmt.where(AuditLog.action.like(_escape_like(filters.action) + "%", escape="\\"))
        else:
            stmt = stmt.where(AuditLog.action == filters.action)
    if filters.object_type:
        stmt = stmt.where(AuditLog.object_type == filters.object_type)
    if filters.object_id:
        stmt = stmt.where(AuditLog.object_id == filters.object_id)
    if filters.outcome is not None:
        stmt = stmt.where(AuditLog.outcome == filters.outcome)
        if filters.outcome != AuditOutcome.SUCCESS:
            # The partial index's own predicate, so the planner may use it.
            stmt = stmt.where(AuditLog.outcome != AuditOutcome.SUCCESS)
    if filters.since is not None:
        stmt = stmt.where(AuditLog.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditLog.created_at < filters.until)
    return stmt


# --- the list -------------------------------------------------------------------------------------


def _key(row: AuditLog) -> Cursor:
    return Cursor(row.created_at, row.id)


def list_page(
    session: Session, filters: Filters, *, older_than: Cursor | None = None, newer_than: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of entries, newest first: the newest ones, those just older than `older_than`, or
    those just newer than `newer_than` (fetched oldest first from there, then turned round).
    One statement (limit + 1 rows: the extra one says whether the page has a neighbour), which also
    brings each row's sealed actor token (Page.sealed) for personal_data.reveal."""
    page, sealed = _list_page(session, filters, older_than=older_than, newer_than=newer_than, limit=limit)
    return Page(page.rows, page.newer, page.older, sealed)


def _list_page(session: Session, filters: Filters, *, older_than: Cursor | None, newer_than: Cursor | None,
               limit: int) -> tuple[Page, dict[uuid.UUID, str]]:
    token = AuditLog.details[personal_data.SEALED_KEY].astext
    stmt = _filtered(select(AuditLog, token).options(load_only(*LIST_COLUMNS, raiseload=True)), filters)
    key = tuple_(AuditLog.created_at, AuditLog.id)
    if newer_than is not None:
        stmt = stmt.where(key > tuple_(literal(newer_than.created_at), literal(newer_than.id)))
        stmt = stmt.order_by(AuditLog.created_at.asc(), AuditLog.id.asc())
    else:
        if older_than is not None:
            stmt = stmt.where(key < tuple_(literal(older_than.created_at), literal(older_than.id)))
        stmt = stmt.order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
    fetched = list(session.execute(stmt.limit(limit + 1)).all())
    sealed = {row.id: str(value) for row, value in fetched if personal_data.is_token(value)}
    rows = [row for row, _value in fetched]
    more = len(rows) > limit
    rows = rows[:limit]
    if newer_than is not None:
        rows.reverse()
        # We came from an older page, so something older exists below this one.
        return Page(rows, _key(rows[0]) if more and rows else None, _key(rows[-1]) if rows else newer_than), sealed
    newer = _key(rows[0]) if older_than is not None and rows else None
    if older_than is not None and not rows:
        newer = older_than  # past the end (the link was kept while entries were pruned): go back up
    return Page(rows, newer, _key(rows[-1]) if more and rows else None), sealed


def get_entry(session: Session, entry_id: uuid.UUID, created_at: datetime | None = None) -> AuditLog | None:
    """One entry, all of its columns. With its created_at only its own partition is searched."""
    stmt = select(AuditLog).where(AuditLog.id == entry_id)
    if created_at is not None:
        stmt = stmt.where(AuditLog.created_at == created_at)
    return session.scalars(stmt.limit(1)).one_or_none()


# --- one entry: every field, the details flattened, before/after compared -------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as dotted keys: {"a": {"b": 1}, "c": [2]} → {"a.b": 1, "c[0]": 2}.
    An empty mapping or list stays a value of its own, so it is not lost."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


@dataclass(frozen=True)
class DiffRow:
    key: str
    before: str | None  # JSON text; None when the key is absent on that side
    after: str | None
    change: str  # changed | added | removed | unchanged


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def diff(before: Any, after: Any) -> list[DiffRow]:
    """details.before against details.after, key by key (nested keys flattened), in key order."""
    old = flatten(before) if isinstance(before, (Mapping, list)) else ({"": before} if before is not None else {})
    new = flatten(after) if isinstance(after, (Mapping, list)) else ({"": after} if after is not None else {})
    rows = []
    for key in sorted(old.keys() | new.keys()):
        if key not in old:
            rows.append(DiffRow(key, None, as_json(new[key]), "added"))
        elif key not in new:
            rows.append(DiffRow(key, as_json(old[key]), None, "removed"))
        else:
            a, b = as_json(old[key]), as_json(new[key])
            rows.append(DiffRow(key, a, b, "unchanged" if a == b else "changed"))
    return rows


@dataclass(frozen=True)
class EntryView:
    entry: AuditLog
    fields: list[tuple[str, str]]  # every column but details, as shown
    details: list[tuple[str, str]]  # details other than before/after, flattened
    diff: list[DiffRow]
    has_diff: bool


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "value") and isinstance(value.value, str):  # an enum member
        return str(value.value)
    return str(value)


# The columns personal_data.reveal reads for people (a user actor's are sealed in details).
_REVEALED = ("actor_name", "ip", "user_agent")


def entry_view(entry: AuditLog, who: personal_data.Shown | None = None) -> EntryView:
    """What the expanded row shows, with the personal fields as `who` (personal_data.reveal) reads
    them. Columns come from the table itself, so ones added later (the hash chain's seq and hash)
    show up too."""
    fields = [(column.key, _shown(getattr(who, column.key) if who is not None and column.key in _REVEALED
                                  else getattr(entry, column.key, None)))
              for column in AuditLog.__table__.columns if column.key != "details"]
    if who is not None and who.sealed:
        fields.append(("personal data", "sealed; the person was erased (key destroyed)" if who.erased
                       else "sealed under the person's key"))
    details = dict(who.details if who is not None and who.details is not None else entry.details or {})
    has_diff = "before" in details or "after" in details
    before, after = details.pop("before", None), details.pop("after", None)
    flat = flatten(details) if details else {}
    return EntryView(entry, fields, [(k, as_json(v)) for k, v in sorted(flat.items())],
                     diff(before, after) if has_diff else [], has_diff)


# --- the export -----------------------------------------------------------------------------------


def export_rows(session: Session, filters: Filters, *, batch: int = EXPORT_BATCH) -> Iterator[Sequence[Any]]:
    """Every matching entry, newest first (the pages' order), as EXPORT_COLUMNS tuples.

    One statement on a server-side cursor (stream_results): PostgreSQL hands over `batch` rows per
    fetch and nothing keeps them after they are yielded, so memory stays flat at any row count. The
    details come as JSON text straight from PostgreSQL; only rows that carry sealed personal data are
    decoded, and written as people read them (personal_data.reveal: the keys of a batch in one
    statement, for the people not met in earlier batches)."""
    table = AuditLog.__table__.columns
    chain = [func.encode(table[name], "hex") if name == "hash" else table[name] for name in CHAIN_COLUMNS]
    stmt = _filtered(
        select(AuditLog.created_at, AuditLog.id, AuditLog.actor_id, AuditLog.actor_name, AuditLog.action,
               AuditLog.object_type, AuditLog.object_id, AuditLog.outcome, func.host(AuditLog.ip),
               AuditLog.user_agent, AuditLog.request_id, cast(AuditLog.details, String), *chain),
        filters,
    ).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
    result = session.execute(stmt, execution_options={"stream_results": True, "yield_per": batch})
    ring = personal_data.KeyRing(session)
    try:
        for partition in result.partitions():
            yield from _revealed(ring, partition)
    finally:
        result.close()


@dataclass(frozen=True)
class _ExportEntry:
    """An export row with the attribute names personal_data reads."""

    id: Any
    actor_id: uuid.UUID | None
    actor_name: str
    object_type: str | None
    object_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]


def _revealed(ring: personal_data.KeyRing, rows: Sequence[Any]) -> list[Sequence[Any]]:
    """The batch with sealed actor fields and details made readable (EXPORT_COLUMNS positions:
    actor_name 3, ip 8, user_agent 9, details 11)."""
    plan: list[tuple[int, _ExportEntry]] = []
    for index, row in enumerate(rows):
        if row[11] and personal_data.SEAL_PREFIX in row[11]:
            plan.append((index, _ExportEntry(row[1], row[2], row[3], row[5], row[6], row[8], row[9],
                                             json.loads(row[11]))))
    if not plan:
        return list(rows)
    needed: set[uuid.UUID] = set()
    for _index, entry in plan:
        needed |= personal_data.needed_keys(entry, entry.details)
    ring.load(needed)
    out: list[Sequence[Any]] = list(rows)
    for index, entry in plan:
        token = entry.details.get(personal_data.SEALED_KEY)
        who = personal_data.shown(ring, entry, token=token if personal_data.is_token(token) else None,
                                  details=entry.details)
        row = list(rows[index])
        row[3], row[8], row[9] = who.actor_name, who.ip, who.user_agent
        row[11] = json.dumps(who.details, ensure_ascii=False, separators=(", ", ": "))
        out[index] = tuple(row)
    return out
