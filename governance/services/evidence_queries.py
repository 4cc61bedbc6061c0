"""Read queries behind the evidence pages and the control page's evidence section: a fixed number of
statements per page, whatever the number of evidence rows, revisions or links.

The list is keyset-paginated on (created_at, id) newest first (the index on (status, created_at)
of live evidence serves it), never OFFSET. Text search uses the generated `search` tsvector
(GIN-indexed) with websearch_to_tsquery; the small search boxes that pick a link target use a
prefix query instead, so "acc" already finds "access review".
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session, joinedload

from governance.models.enums import EvidenceStatus
from governance.models.evidence import Evidence, EvidenceLink, EvidenceReview, EvidenceRevision
from governance.models.frameworks import Control, Framework
from governance.models.probes import Check
from governance.models.tasks import Task

MAX_QUERY_LENGTH = 200
# "Expiring soon": the list filter and the freshness label use the same window.
EXPIRING_SOON_DAYS = 30
TARGET_LIMIT = 20  # options offered by one link-target or candidate search
CONTROL_EVIDENCE_LIMIT = 50  # evidence rows shown on a control page (the rest: the filtered list)


def clean_query(q: str | None) -> str:
    """Search text as PostgreSQL may take it (no NUL), bounded in length."""
    return (q or "").replace("\x00", " ").strip()[:MAX_QUERY_LENGTH]


def _websearch(search_column: Any, q: str) -> ColumnElement[bool]:
    return search_column.bool_op("@@")(func.websearch_to_tsquery("english", q))  # type: ignore[no-any-return]


def _prefix_search(search_column: Any, q: str) -> ColumnElement[bool] | None:
    """Every word of q as a prefix ('acc rev' → acc:* & rev:*); None when q has no word. Only word
    characters reach to_tsquery, so its operator syntax cannot be injected."""
    words = re.findall(r"\w+", q)[:8]
    if not words:
        return None
    query = " & ".join(f"{w}:*" for w in words)
    return search_column.bool_op("@@")(func.to_tsquery("english", query))  # type: ignore[no-any-return]


def _escape_like(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column: Any, q: str) -> ColumnElement[bool]:
    return column.ilike(f"%{_escape_like(q)}%", escape="\\")  # type: ignore[no-any-return]


# --- freshness ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    state: str  # fresh | expiring | expired | none
    days: int | None
    label: str


def freshness(evidence: Evidence, now: datetime | None = None) -> Freshness:
    """fresh / expires in N days / expired / no expiry date (expired also when the daily job has
    already marked it so)."""
    now = now or datetime.now(UTC)
    expires_at = evidence.expires_at
    if evidence.status == EvidenceStatus.EXPIRED or (expires_at is not None and expires_at <= now):
        return Freshness("expired", None, "Expired")
    if expires_at is None:
        return Freshness("none", None, "No expiry date")
    days = (expires_at - now).days
    if days < EXPIRING_SOON_DAYS:
        if days == 0:
            return Freshness("expiring", 0, "Expires today")
        return Freshness("expiring", days, f"Expires in {days} day{'' if days == 1 else 's'}")
    return Freshness("fresh", days, "Fresh")


# --- the list -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListFilters:
    status: EvidenceStatus | None = None
    q: str = ""
    expiring: bool = False
    control_id: uuid.UUID | None = None


def list_evidence(
    session: Session, filters: ListFilters, *, after: tuple[datetime, uuid.UUID] | None = None, limit: int = 50,
) -> tuple[list[Evidence], tuple[datetime, uuid.UUID] | None]:
    """One page of live evidence, newest first, with owners; keyset on (created_at, id) descending."""
    stmt = (
        select(Evidence)
        .where(Evidence.deleted_at.is_(None))
        .options(joinedload(Evidence.owner))
        .order_by(Evidence.created_at.desc(), Evidence.id.desc())
        .limit(limit + 1)
    )
    if filters.status is not None:
        stmt = stmt.where(Evidence.status == filters.status)
    q = clean_query(filters.q)
    if q:
        stmt = stmt.where(_websearch(Evidence.search, q))
    if filters.expiring:
        stmt = stmt.where(Evidence.expires_at > func.now(),
                          Evidence.expires_at <= func.now() + timedelta(days=EXPIRING_SOON_DAYS))
    if filters.control_id is not None:
        stmt = stmt.where(exists().where(EvidenceLink.evidence_id == Evidence.id,
                                         EvidenceLink.control_id == filters.control_id))
    if after is not None:
        stmt = stmt.where(tuple_(Evidence.created_at, Evidence.id) < tuple_(literal(after[0]), literal(after[1])))
    rows = list(session.scalars(stmt).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = (rows[-1].created_at, rows[-1].id) if more and rows else None
    return rows, cursor


def control_title(session: Session, control_id: uuid.UUID) -> Control | None:
    """The live control a list is filtered by (with its framework), or None."""
    return session.scalars(
        select(Control).where(Control.id == control_id).options(joinedload(Control.framework))
    ).one_or_none()


# --- one piece of evidence ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewRow:
    review: EvidenceReview
    revision_number: int


@dataclass(frozen=True)
class EvidenceDetail:
    evidence: Evidence
    revisions: list[EvidenceRevision]  # newest first
    links: list[EvidenceLink]
    reviews: list[ReviewRow]  # newest first

    @property
    def current(self) -> EvidenceRevision | None:
        return next((r for r in self.revisions if r.number == self.evidence.revision_number), None)


def get_evidence(session: Session, evidence_id: uuid.UUID) -> Evidence | None:
    """Live evidence by id (None when unknown or deleted)."""
    return session.scalars(select(Evidence).where(Evidence.id == evidence_id)).one_or_none()


def revisions(session: Session, evidence_id: uuid.UUID) -> list[EvidenceRevision]:
    return list(session.scalars(
        select(EvidenceRevision).where(EvidenceRevision.evidence_id == evidence_id)
        .options(joinedload(EvidenceRevision.uploaded_by), joinedload(EvidenceRevision.reviewed_by))
        .order_by(EvidenceRevision.number.desc())
    ))


def links(session: Session, evidence_id: uuid.UUID) -> list[EvidenceLink]:
    """The evidence's links with their targets (a deleted control or task loads as None)."""
    return list(session.scalars(
        select(EvidenceLink).where(EvidenceLink.evidence_id == evidence_id)
        .options(joinedload(EvidenceLink.control).joinedload(Control.framework),
                 joinedload(EvidenceLink.check), joinedload(EvidenceLink.task),
                 joinedload(EvidenceLink.linked_by))
        .order_by(EvidenceLink.created_at, EvidenceLink.id)
    ))


def reviews(session: Session, evidence_id: uuid.UUID) -> list[ReviewRow]:
    rows = session.execute(
        select(EvidenceReview, EvidenceRevision.number)
        .join(EvidenceRevision, EvidenceRevision.id == EvidenceReview.revision_id)
        .where(EvidenceReview.evidence_id == evidence_id)
        .options(joinedload(EvidenceReview.reviewer))
        .order_by(EvidenceReview.created_at.desc(), EvidenceReview.id.desc())
    ).all()
    return [ReviewRow(review, int(number)) for review, number in rows]


def evidence_detail(session: Session, evidence_id: uuid.UUID) -> EvidenceDetail | None:
    """Everything the evidence page shows, in four statements."""
    evidence = session.scalars(
        select(Evidence).where(Evidence.id == evidence_id)
        .options(joinedload(Evidence.owner), joinedload(Evidence.control).joinedload(Control.framework))
    ).one_or_none()
    if evidence is None:
        return None
    return EvidenceDetail(evidence, revisions(session, evidence_id), links(session, evidence_id),
                          reviews(session, evidence_id))


# --- link targets (from the evidence side) and candidates (from the control side) ------------------


@dataclass(frozen=True)
class Target:
    type: str  # control | check | task
    id: uuid.UUID
    label: str
    context: str  # where it belongs: the framework, the check's control, the task's status


def link_targets(session: Session, evidence_id: uuid.UUID, target_type: str, q: str) -> list[Target]:
    """Up to TARGET_LIMIT live controls, checks or tasks matching q that the evidence is not yet
    linked to; nothing for an empty query or an unknown type."""
    q = clean_query(q)
    if not q:
        return []
    if target_type == "control":
        match = _prefix_search(Control.search, q)
        by_ref = Control.ref_id.ilike(_escape_like(q) + "%", escape="\\")
        linked = exists().where(EvidenceLink.evidence_id == evidence_id, EvidenceLink.control_id == Control.id)
        rows = session.execute(
            select(Control.id, Control.ref_id, Control.title, Framework.title, Framework.version)
            .join(Framework, Framework.id == Control.framework_id)
            .where(Control.deleted_at.is_(None), Framework.deleted_at.is_(None), ~linked,
                   or_(by_ref, match) if match is not None else by_ref)
            .order_by(Framework.title, Control.sort_order, Control.ref_id)
            .limit(TARGET_LIMIT)
        ).all()
        return [Target("control", cid, f"{ref} {title}", f"{fw_title} v{fw_version}")
                for cid, ref, title, fw_title, fw_version in rows]
    if target_type == "check":
        linked = exists().where(EvidenceLink.evidence_id == evidence_id, EvidenceLink.check_id == Check.id)
        check_rows = session.execute(
            select(Check.id, Check.name, Control.ref_id)
            .join(Control, Control.id == Check.control_id)
            .where(~linked, _contains(Check.name, q))
            .order_by(Check.name, Check.id)
            .limit(TARGET_LIMIT)
        ).all()
        return [Target("check", cid, name, f"assesses {ref}") for cid, name, ref in check_rows]
    if target_type == "task":
        linked = exists().where(EvidenceLink.evidence_id == evidence_id, EvidenceLink.task_id == Task.id)
        task_rows = session.execute(
            select(Task.id, Task.title, Task.status)
            .where(Task.deleted_at.is_(None), ~linked, _contains(Task.title, q))
            .order_by(Task.created_at.desc(), Task.id)
            .limit(TARGET_LIMIT)
        ).all()
        return [Target("task", tid, title, f"task, {status.value.replace('_', ' ')}")
                for tid, title, status in task_rows]
    return []


@dataclass(frozen=True)
class ControlEvidenceRow:
    evidence: Evidence
    link_id: uuid.UUID


def control_evidence(
    session: Session, control_id: uuid.UUID, *, limit: int = CONTROL_EVIDENCE_LIMIT,
) -> tuple[list[ControlEvidenceRow], int]:
    """The live evidence linked to a control, newest first (at most `limit`), and how many there
    are in all: one statement."""
    total = func.count().over()
    rows = session.execute(
        select(Evidence, EvidenceLink.id, total)
        .join(EvidenceLink, EvidenceLink.evidence_id == Evidence.id)
        .where(EvidenceLink.control_id == control_id, Evidence.deleted_at.is_(None))
        .order_by(Evidence.created_at.desc(), Evidence.id.desc())
        .limit(limit)
    ).all()
    count = int(rows[0][2]) if rows else 0
    return [ControlEvidenceRow(evidence, link_id) for evidence, link_id, _n in rows], count


def control_candidates(session: Session, control_id: uuid.UUID, q: str) -> list[Evidence]:
    """Live evidence not yet linked to the control whose name or description matches q (as
    prefixes); the newest when q is empty. At most TARGET_LIMIT."""
    linked = exists().where(EvidenceLink.evidence_id == Evidence.id, EvidenceLink.control_id == control_id)
    stmt = (
        select(Evidence)
        .where(Evidence.deleted_at.is_(None), ~linked)
        .order_by(Evidence.created_at.desc(), Evidence.id.desc())
        .limit(TARGET_LIMIT)
    )
    q = clean_query(q)
    if q:
        match = _prefix_search(Evidence.search, q)
        stmt = stmt.where(match if match is not None else _contains(Evidence.name, q))
    return list(session.scalars(stmt))
