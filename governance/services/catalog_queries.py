"""Read queries behind the framework and control pages: one statement each, whatever the catalog size.

Lists are keyset-paginated (never OFFSET): the caller passes the last row's sort key and gets the
next page plus the cursor of the page after it (None on the last page). Full-text search uses the
generated `search` tsvector columns (GIN-indexed) to find rows and a weighted vector over the
matched rows only to rank them, so a match in a control's identifier or title ranks above a match in
its text. Highlights come back with MARK_START / MARK_END around each hit (and LT / AMP standing in for "<"
and "&"); the web layer escapes the text and only then turns the markers into <mark>.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, cast, func, literal, literal_column, or_, select, tuple_, union
from sqlalchemy.orm import Session, aliased, joinedload

from governance.models.frameworks import Control, Framework, Mapping

# Private-use characters: they never occur in catalog text, and PostgreSQL passes them through.
MARK_START = "\ue000"
MARK_END = "\ue001"
# PostgreSQL's default parser drops what looks like an HTML tag or entity from a headline: stand-ins
# keep "<" and "&" through ts_headline, and the web layer turns them back (escaped) into text.
LT = "\ue002"
AMP = "\ue003"
_SELECTORS = f'StartSel="{MARK_START}", StopSel="{MARK_END}"'
TITLE_HEADLINE = f"{_SELECTORS}, HighlightAll=true"
TEXT_HEADLINE = f"{_SELECTORS}, MaxFragments=2, MaxWords=25, MinWords=8, FragmentDelimiter=\" … \""

MAX_QUERY_LENGTH = 200


def clean_query(q: str | None) -> str:
    """The search text as the database may take it: NUL is refused by PostgreSQL, length bounded."""
    return (q or "").replace("\x00", " ").strip()[:MAX_QUERY_LENGTH]


def _tsquery(q: str) -> ColumnElement[Any]:
    return func.websearch_to_tsquery("english", q)


def _weighted(expr: Any, weight: str) -> ColumnElement[Any]:
    # setweight takes the internal "char" type: an untyped literal resolves to it, a bound varchar does not.
    return func.setweight(func.to_tsvector("english", expr), literal_column(f"'{weight}'"))


def _headline(expr: Any, query: Any, options: str) -> ColumnElement[Any]:
    shielded = func.replace(func.replace(expr, "<", LT), "&", AMP)
    return func.ts_headline("english", shielded, query, options)


def _matches(search_column: Any, q: str) -> ColumnElement[bool]:
    return search_column.bool_op("@@")(_tsquery(q))  # type: ignore[no-any-return]


# --- frameworks list ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameworkRow:
    framework: Framework
    control_count: int


def _control_counts() -> Any:
    return (
        select(Control.framework_id, func.count().label("n"))
        .where(Control.deleted_at.is_(None))
        .group_by(Control.framework_id)
        .subquery()
    )


def control_counts(session: Session) -> dict[str, int]:
    """Every live framework's live control count (framework id as text -> count), one statement.
    The frameworks list reads it from the shared read cache (scope "catalog") rather than per request."""
    rows = session.execute(
        select(Control.framework_id, func.count())
        .where(Control.deleted_at.is_(None))
        .group_by(Control.framework_id)
    ).all()
    return {str(framework_id): int(n) for framework_id, n in rows}


def list_frameworks(
    session: Session, *, after: tuple[str, str] | None = None, limit: int = 50,
    counts: dict[str, int] | None = None,
) -> tuple[list[FrameworkRow], tuple[str, str] | None]:
    """Live frameworks by (title, version) with their live control counts; keyset on (title, version).
    `counts` (control_counts()'s mapping) spares the statement the count over every control."""
    if counts is None:
        sub = _control_counts()
        stmt = select(Framework, func.coalesce(sub.c.n, 0)).outerjoin(sub, sub.c.framework_id == Framework.id)
    else:
        stmt = select(Framework)
    stmt = (
        stmt.where(Framework.deleted_at.is_(None))
        .order_by(Framework.title, Framework.version)
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(tuple_(Framework.title, Framework.version) > tuple_(literal(after[0]), literal(after[1])))
    if counts is None:
        rows = [FrameworkRow(fw, int(n)) for fw, n in session.execute(stmt).all()]
    else:
        rows = [FrameworkRow(fw, counts.get(str(fw.id), 0)) for fw in session.scalars(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = (rows[-1].framework.title, rows[-1].framework.version) if more and rows else None
    return rows, cursor


# --- search ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameworkHit:
    framework: Framework
    rank: float
    title_html: str  # with MARK_START / MARK_END around the matched words, not yet escaped


@dataclass(frozen=True)
class ControlHit:
    control: Control
    framework_title: str
    framework_version: str
    rank: float
    title_html: str
    text_html: str


def search_frameworks(session: Session, q: str, *, limit: int = 10) -> list[FrameworkHit]:
    q = clean_query(q)
    if not q:
        return []
    query = _tsquery(q)
    weighted = _weighted(Framework.title, "A").op("||")(_weighted(func.coalesce(Framework.description, ""), "D"))
    rank = func.ts_rank(weighted, query)
    stmt = (
        select(Framework, rank, _headline(Framework.title, query, TITLE_HEADLINE))
        .where(Framework.deleted_at.is_(None), _matches(Framework.search, q))
        .order_by(rank.desc(), Framework.id)
        .limit(limit)
    )
    return [FrameworkHit(fw, float(r), str(t)) for fw, r, t in session.execute(stmt).all()]


def search_controls(
    session: Session, q: str, *, after: tuple[float, uuid.UUID] | None = None, limit: int = 25
) -> tuple[list[ControlHit], tuple[float, uuid.UUID] | None]:
    """Live controls of live frameworks matching `q`, best first; keyset on (rank desc, id)."""
    q = clean_query(q)
    if not q:
        return [], None
    query = _tsquery(q)
    heading = func.concat_ws(" ", Control.ref_id, Control.title)
    weighted = _weighted(heading, "A").op("||")(_weighted(func.coalesce(Control.text, ""), "D"))
    # real, so the cursor a page hands out compares equal to the value it was taken from.
    rank = func.ts_rank(weighted, query)
    ranked = (
        select(Control.id.label("id"), rank.label("rank"))
        .join(Framework, Framework.id == Control.framework_id)
        .where(Control.deleted_at.is_(None), Framework.deleted_at.is_(None), _matches(Control.search, q))
        .subquery()
    )
    stmt = (
        select(
            Control,
            Framework.title,
            Framework.version,
            ranked.c.rank,
            _headline(Control.title, query, TITLE_HEADLINE),
            _headline(func.coalesce(Control.text, ""), query, TEXT_HEADLINE),
        )
        .join(ranked, ranked.c.id == Control.id)
        .join(Framework, Framework.id == Control.framework_id)
        .order_by(ranked.c.rank.desc(), Control.id)
        .limit(limit + 1)
    )
    if after is not None:
        after_rank = cast(literal(after[0]), Float(precision=24))  # float4, as ts_rank returns
        stmt = stmt.where(
            or_(ranked.c.rank < after_rank, and_(ranked.c.rank == after_rank, Control.id > after[1]))
        )
    hits = [
        ControlHit(c, str(ft), str(fv), float(r), str(th), str(tx))
        for c, ft, fv, r, th, tx in session.execute(stmt).all()
    ]
    more = len(hits) > limit
    hits = hits[:limit]
    cursor = (hits[-1].rank, hits[-1].control.id) if more and hits else None
    return hits, cursor


# --- the control tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeNode:
    control: Control
    child_count: int


def branch(
    session: Session,
    framework_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    *,
    after: tuple[int, str] | None = None,
    limit: int = 200,
) -> tuple[list[TreeNode], tuple[int, str] | None]:
    """One page of a node's live children (top level when parent_id is None) with their own live
    child counts; keyset on (sort_order, ref_id), unique within a framework."""
    child = aliased(Control)
    child_count = (
        select(func.count())
        .select_from(child)
        .where(child.parent_id == Control.id, child.deleted_at.is_(None))
        .correlate(Control)
        .scalar_subquery()
    )
    parent_filter = Control.parent_id.is_(None) if parent_id is None else Control.parent_id == parent_id
    stmt = (
        select(Control, child_count)
        .where(Control.framework_id == framework_id, parent_filter, Control.deleted_at.is_(None))
        .order_by(Control.sort_order, Control.ref_id)
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(tuple_(Control.sort_order, Control.ref_id) > tuple_(literal(after[0]), literal(after[1])))
    nodes = [TreeNode(c, int(n)) for c, n in session.execute(stmt).all()]
    more = len(nodes) > limit
    nodes = nodes[:limit]
    cursor = (nodes[-1].control.sort_order, nodes[-1].control.ref_id) if more and nodes else None
    return nodes, cursor


def ancestors(session: Session, control: Control) -> list[Control]:
    """The control's ancestors, root first, in one recursive statement."""
    if control.parent_id is None:
        return []
    up = select(Control.id, Control.parent_id, literal(1).label("depth")).where(Control.id == control.parent_id)
    chain = up.cte("chain", recursive=True)
    parent = aliased(Control)
    chain = chain.union_all(
        select(parent.id, parent.parent_id, (chain.c.depth + 1).label("depth"))
        .where(parent.id == chain.c.parent_id)
        .where(chain.c.depth < 50)  # a guard against a cycle the CHECK cannot see
    )
    stmt = (
        select(Control)
        .join(chain, chain.c.id == Control.id)
        .order_by(chain.c.depth.desc())
        .execution_options(include_deleted=True)
    )
    return list(session.scalars(stmt))


# --- mappings and coverage -------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedControl:
    mapping: Mapping
    other: Control  # the control at the other end, with its framework loaded
    outgoing: bool  # True: this control is the mapping's source


def mapped_controls(session: Session, control: Control) -> list[MappedControl]:
    """Live controls of other frameworks mapped from or to `control`, with relationship and rationale."""
    other = aliased(Control)
    outgoing = Mapping.source_control_id == control.id
    stmt = (
        select(Mapping, other, outgoing.label("outgoing"))
        .join(other, or_(
            and_(outgoing, other.id == Mapping.target_control_id),
            and_(Mapping.target_control_id == control.id, other.id == Mapping.source_control_id),
        ))
        .join(Framework, Framework.id == other.framework_id)
        .where(or_(Mapping.source_control_id == control.id, Mapping.target_control_id == control.id))
        .where(other.deleted_at.is_(None), Framework.deleted_at.is_(None))
        .options(joinedload(other.framework))
        .order_by(Framework.title, Framework.version, other.sort_order, other.ref_id)
    )
    return [MappedControl(m, o, bool(out)) for m, o, out in session.execute(stmt).all()]


@dataclass(frozen=True)
class Coverage:
    framework_id: uuid.UUID
    title: str
    version: str
    covered: int
    total: int

    @property
    def percent(self) -> Decimal:
        if not self.total:
            return Decimal(0)
        return (Decimal(100) * self.covered / self.total).quantize(Decimal("0.1"))


def coverage(session: Session, framework_id: uuid.UUID) -> list[Coverage]:
    """For every other live framework linked by a mapping (either direction) to this framework's live
    controls: how many of its live assessable controls are linked, out of how many. One statement."""
    mine = aliased(Control)
    linked = union(
        select(Mapping.target_control_id.label("control_id"))
        .join(mine, mine.id == Mapping.source_control_id)
        .where(mine.framework_id == framework_id, mine.deleted_at.is_(None)),
        select(Mapping.source_control_id.label("control_id"))
        .join(mine, mine.id == Mapping.target_control_id)
        .where(mine.framework_id == framework_id, mine.deleted_at.is_(None)),
    ).subquery("linked")
    theirs = aliased(Control)
    touched = (
        select(theirs.framework_id)
        .join(linked, linked.c.control_id == theirs.id)
        .where(theirs.deleted_at.is_(None), theirs.assessable.is_(True))
    )
    covered = func.count(linked.c.control_id)
    stmt = (
        select(Framework.id, Framework.title, Framework.version, covered, func.count(Control.id))
        .join(Control, Control.framework_id == Framework.id)
        .outerjoin(linked, linked.c.control_id == Control.id)
        .where(
            Framework.id != framework_id,
            Framework.deleted_at.is_(None),
            Framework.id.in_(touched),
            Control.deleted_at.is_(None),
            Control.assessable.is_(True),
        )
        .group_by(Framework.id, Framework.title, Framework.version)
        .order_by(covered.desc(), Framework.title, Framework.version)
    )
    return [Coverage(fid, str(t), str(v), int(c), int(n)) for fid, t, v, c, n in session.execute(stmt).all()]
