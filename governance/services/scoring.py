"""Compliance scores of controls, frameworks and owners, kept current incrementally.

The formula (FORMULA_TEXT says it in words on the pages):

- A check's latest outcome (checks.last_outcome, active checks only) gives points: compliant 1,
  partial 0.5, non-compliant 0. Error and not-applicable outcomes are left out and counted apart.
- A control assessed by several checks (check_controls) scores the mean of its counted checks'
  points; a control with no counted outcome is "unassessed".
- A framework's score is the weighted average (controls.weight) of the points of its scored controls
  that have a counted outcome, as a percentage. Scored = live (not deleted, not withdrawn) and
  assessable. Unassessed controls are counted apart, never as 0. A user's score is the same over the
  controls the user owns (controls.owner_id).

Incremental upkeep: each control's CurrentScore row stores the contribution it last made (its
weight and weight * points, one of compliant / partial / non-compliant / unassessed, its error and
not-applicable outcomes) and the framework and owner it made it to (details). A change recomputes
only the affected controls from their checks' last_outcome, and moves each framework's and owner's
sums by the difference. Rows are locked in one global order (controls, then frameworks, then
users, each sorted by id) so concurrent workers serialise on shared rows and never lose an update.

A framework or user row that does not exist yet is created from all of that subject's live controls
once (so its unassessed count covers controls nobody has touched); after that only differences are
applied. Controls added to an existing framework later count once a hook or `rebuild_all` sees
them: the importer should call `on_controls_changed` with the new ids (`flask scores rebuild`
repairs anything).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from governance.models.enums import CheckStatus, ControlStatus, ResultOutcome, ScoreScope
from governance.models.frameworks import Control
from governance.models.probes import Check, CheckControl
from governance.models.scoring import CurrentScore, Score

FORMULA_TEXT = (
    "Each check's latest outcome gives points: compliant 1, partial 0.5, non-compliant 0; error and "
    "not-applicable outcomes are left out and counted apart. A control scores the mean of its counted "
    "checks' points. The score is the weighted average (by control weight) of the controls that have at "
    "least one counted outcome, as a percentage, over live assessable controls; controls without a "
    "counted outcome are unassessed and counted apart, not as 0."
)

POINTS = {ResultOutcome.COMPLIANT: Decimal(1), ResultOutcome.PARTIAL: Decimal("0.5"),
          ResultOutcome.NON_COMPLIANT: Decimal(0)}
_Q3 = Decimal("0.001")
_Q2 = Decimal("0.01")
_ZERO = Decimal(0)

_table = cast(Table, CurrentScore.__table__)
_scores = cast(Table, Score.__table__)
COUNTERS = ("compliant", "partial", "non_compliant", "error", "not_applicable", "unassessed")


@dataclass(frozen=True)
class Contribution:
    """What one control adds to its framework's and owner's sums."""

    weight_counted: Decimal = _ZERO
    weighted_points: Decimal = _ZERO
    compliant: int = 0
    partial: int = 0
    non_compliant: int = 0
    error: int = 0
    not_applicable: int = 0
    unassessed: int = 0

    def _combine(self, other: Contribution, sign: int) -> Contribution:
        return Contribution(**{f.name: getattr(self, f.name) + sign * getattr(other, f.name)
                               for f in dataclasses.fields(self)})

    def __add__(self, other: Contribution) -> Contribution:
        return self._combine(other, 1)

    def __sub__(self, other: Contribution) -> Contribution:
        return self._combine(other, -1)

    def is_zero(self) -> bool:
        return self == ZERO


ZERO = Contribution()


@dataclass(frozen=True)
class ControlState:
    """A control as it is now, with its active checks' latest outcomes counted."""

    id: uuid.UUID
    framework_id: uuid.UUID
    owner_id: uuid.UUID | None
    weight: Decimal
    scored: bool  # live (not deleted, not withdrawn) and assessable
    counts: dict[str, int]

    @property
    def counted(self) -> int:
        return sum(self.counts[o.value] for o in POINTS)

    @property
    def points(self) -> Decimal | None:
        """Mean points of the counted checks (0..1), None without any."""
        if not self.counted:
            return None
        total = sum((POINTS[o] * self.counts[o.value] for o in POINTS), _ZERO)
        return total / self.counted

    @property
    def klass(self) -> str | None:
        points = self.points
        if points is None:
            return "unassessed"
        return "compliant" if points == 1 else "non_compliant" if points == 0 else "partial"

    def contribution(self) -> Contribution:
        if not self.scored:
            return ZERO
        extra: dict[str, Any] = {"error": self.counts[ResultOutcome.ERROR.value],
                 "not_applicable": self.counts[ResultOutcome.NOT_APPLICABLE.value]}
        points = self.points
        if points is None:
            return Contribution(unassessed=1, **extra)
        klass = self.klass
        assert klass is not None
        weight = Decimal(self.weight)
        return Contribution(weight_counted=weight, weighted_points=(weight * points).quantize(_Q3, ROUND_HALF_UP),
                            **{klass: 1}, **extra)


def percentage(weight_counted: Decimal, weighted_points: Decimal) -> Decimal | None:
    if weight_counted <= 0:
        return None
    return (Decimal(100) * Decimal(weighted_points) / Decimal(weight_counted)).quantize(_Q2, ROUND_HALF_UP)


# ---- reading the truth ---------------------------------------------------------------------------

def _states_stmt(control_ids: list[uuid.UUID] | None, checks: ColumnElement[bool] | None = None) -> Any:
    outcome_counts = [
        func.count(Check.id).filter(Check.last_outcome == outcome).label(outcome.value) for outcome in ResultOutcome
    ]
    counted = (Check.id == CheckControl.check_id) & (Check.status == CheckStatus.ACTIVE)
    if checks is not None:
        counted = counted & checks
    stmt = (
        select(Control.id, Control.framework_id, Control.owner_id, Control.weight, Control.assessable,
               Control.status, Control.deleted_at, *outcome_counts)
        .outerjoin(CheckControl, CheckControl.control_id == Control.id)
        .outerjoin(Check, counted)
        .group_by(Control.id)
        .execution_options(include_deleted=True)
    )
    if control_ids is not None:
        stmt = stmt.where(Control.id.in_(control_ids))
    return stmt


def _state(row: Any) -> ControlState:
    scored = row.deleted_at is None and row.status != ControlStatus.WITHDRAWN and bool(row.assessable)
    return ControlState(id=row.id, framework_id=row.framework_id, owner_id=row.owner_id,
                        weight=Decimal(row.weight), scored=scored,
                        counts={o.value: int(getattr(row, o.value)) for o in ResultOutcome})


# Bound parameters per statement stay far below PostgreSQL's 65,535 on the rare big sets (a whole
# framework's controls the first time it is scored).
CHUNK = 5000


def _chunks(ids: Iterable[uuid.UUID]) -> list[list[uuid.UUID]]:
    ordered = sorted(set(ids))
    return [ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK)]


def control_states(session: Session, control_ids: Iterable[uuid.UUID] | None = None, *,
                   checks: ColumnElement[bool] | None = None) -> dict[uuid.UUID, ControlState]:
    """The controls' states from their active checks. `checks`, a condition on Check, narrows which
    active checks count (an AI system's score counts only checks of its own or of no system's
    probes); without it every active check counts, as in the stored scores."""
    if control_ids is None:
        return {row.id: _state(row) for row in session.execute(_states_stmt(None, checks))}
    return {row.id: _state(row) for chunk in _chunks(control_ids)
            for row in session.execute(_states_stmt(chunk, checks))}


def total(states: Iterable[ControlState]) -> Contribution:
    """The sum of the states' contributions: percentage(total.weight_counted, total.weighted_points)
    is their score, as a framework's is of its controls."""
    return sum((state.contribution() for state in states), ZERO)


# ---- control rows: what each control last contributed ------------------------------------------

def _details(state: ControlState) -> dict[str, Any]:
    return {"framework_id": str(state.framework_id),
            "owner_id": None if state.owner_id is None else str(state.owner_id),
            "scored": state.scored, "class": state.klass if state.scored else None,
            "weight": str(state.weight)}


def _stored_contribution(row: Any) -> Contribution:
    details = row.details or {}
    if not details.get("scored"):
        return ZERO
    klass = details.get("class")
    extra: dict[str, Any] = {"error": int(row.error), "not_applicable": int(row.not_applicable)}
    if klass == "unassessed" or klass is None:
        return Contribution(unassessed=1, **extra)
    return Contribution(weight_counted=Decimal(row.weight_counted), weighted_points=Decimal(row.weighted_points),
                        **{klass: 1}, **extra)


def _stored_targets(row: Any) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    details = row.details or {}
    fw, owner = details.get("framework_id"), details.get("owner_id")
    return (uuid.UUID(fw) if fw else None, uuid.UUID(owner) if owner else None)


def _control_values(state: ControlState) -> dict[str, Any]:
    contribution = state.contribution()
    points = state.points
    return {
        "value": None if points is None else (points * 100).quantize(_Q2, ROUND_HALF_UP),
        "weight_counted": contribution.weight_counted,
        "weighted_points": contribution.weighted_points,
        "compliant": state.counts[ResultOutcome.COMPLIANT.value],
        "partial": state.counts[ResultOutcome.PARTIAL.value],
        "non_compliant": state.counts[ResultOutcome.NON_COMPLIANT.value],
        "error": state.counts[ResultOutcome.ERROR.value],
        "not_applicable": state.counts[ResultOutcome.NOT_APPLICABLE.value],
        "unassessed": 1 if state.scored and points is None else 0,
        "details": _details(state),
    }


def _subject_column(scope: ScoreScope) -> Any:
    return {ScoreScope.CONTROL: _table.c.control_id, ScoreScope.FRAMEWORK: _table.c.framework_id,
            ScoreScope.USER: _table.c.user_id}[scope]


def _ensure_rows(session: Session, scope: ScoreScope, ids: Iterable[uuid.UUID]) -> None:
    column = _subject_column(scope)
    for chunk in _chunks(ids):
        stmt = insert(_table).values([{"id": uuid.uuid4(), "scope": scope, column.name: i} for i in chunk])
        session.execute(stmt.on_conflict_do_nothing(index_elements=[column.name],
                                                    index_where=text(f"{column.name} IS NOT NULL")))


def _lock_rows(session: Session, scope: ScoreScope, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """SELECT … FOR UPDATE in id order (chunks are in order too): the global lock order."""
    column = _subject_column(scope)
    rows: dict[uuid.UUID, Any] = {}
    for chunk in _chunks(ids):
        stmt = select(_table).where(column.in_(chunk)).order_by(column).with_for_update()
        rows.update((getattr(row, column.name), row) for row in session.execute(stmt))
    return rows


# ---- applying differences ------------------------------------------------------------------------

def _existing(session: Session, scope: ScoreScope, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    column = _subject_column(scope)
    return {i for chunk in _chunks(ids) for i in session.execute(select(column).where(column.in_(chunk))).scalars()}


def _expand(session: Session, control_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Add every live control of a framework or owner whose row does not exist yet (see the module
    docstring): reads are bounded by those subjects, once in their life."""
    seen_fw: set[uuid.UUID] = set()
    seen_users: set[uuid.UUID] = set()
    todo = set(control_ids)
    while todo:
        states = control_states(session, todo)
        stored = {row.control_id: row for chunk in _chunks(todo) for row in session.execute(
            select(_table.c.control_id, _table.c.details).where(_table.c.control_id.in_(chunk)))}
        frameworks = {s.framework_id for s in states.values()}
        users = {s.owner_id for s in states.values() if s.owner_id is not None}
        for row in stored.values():
            fw, owner = _stored_targets(row)
            frameworks |= {fw} - {None}  # type: ignore[arg-type]
            users |= {owner} - {None}  # type: ignore[arg-type]
        frameworks -= seen_fw
        users -= seen_users
        seen_fw |= frameworks
        seen_users |= users
        missing_fw = frameworks - _existing(session, ScoreScope.FRAMEWORK, frameworks)
        missing_users = users - _existing(session, ScoreScope.USER, users)
        if not missing_fw and not missing_users:
            break
        more = set(session.execute(
            select(Control.id).where(Control.framework_id.in_(missing_fw) | Control.owner_id.in_(missing_users))
        ).scalars())
        todo = more - control_ids
        control_ids |= todo
    return control_ids


def _apply(session: Session, control_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Decimal | None]:
    """Recompute the given controls and move their frameworks' and owners' sums by the difference.
    Returns the new value of every framework whose row changed."""
    ids = _expand(session, set(control_ids))
    if not ids:
        return {}
    _ensure_rows(session, ScoreScope.CONTROL, ids)
    stored = _lock_rows(session, ScoreScope.CONTROL, ids)
    # Read after the lock: a worker that held it has committed its checks by now.
    states = control_states(session, ids)

    fw_delta: dict[uuid.UUID, Contribution] = defaultdict(Contribution)
    user_delta: dict[uuid.UUID, Contribution] = defaultdict(Contribution)
    control_updates: list[dict[str, Any]] = []
    for control_id, state in states.items():
        row = stored[control_id]
        old, new = _stored_contribution(row), state.contribution()
        old_fw, old_owner = _stored_targets(row)
        values = _control_values(state)
        if all(getattr(row, k) == v for k, v in values.items()):
            continue
        control_updates.append({"id": row.id, **values})
        for delta_map, old_key, new_key in ((fw_delta, old_fw, state.framework_id),
                                           (user_delta, old_owner, state.owner_id)):
            if old_key is not None:
                delta_map[old_key] = delta_map[old_key] - old
            if new_key is not None:
                delta_map[new_key] = delta_map[new_key] + new
        # A brand-new subject row must exist even when the difference is zero.
        fw_delta.setdefault(state.framework_id, ZERO)
        if state.owner_id is not None:
            user_delta.setdefault(state.owner_id, ZERO)

    _bulk_update(session, control_updates)
    changed = _apply_deltas(session, ScoreScope.FRAMEWORK, fw_delta)
    _apply_deltas(session, ScoreScope.USER, user_delta)
    session.flush()
    return changed


def _apply_deltas(session: Session, scope: ScoreScope,
                  deltas: dict[uuid.UUID, Contribution]) -> dict[uuid.UUID, Decimal | None]:
    if not deltas:
        return {}
    _ensure_rows(session, scope, deltas)
    rows = _lock_rows(session, scope, deltas)
    updates: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    changed: dict[uuid.UUID, Decimal | None] = {}
    for subject_id, delta in deltas.items():
        row = rows[subject_id]
        if delta.is_zero():
            continue
        totals = Contribution(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Contribution)}) + delta
        value = percentage(totals.weight_counted, totals.weighted_points)
        updates.append({"id": row.id, "value": value, **dataclasses.asdict(totals)})
        if scope is ScoreScope.FRAMEWORK and value != row.value:
            changed[subject_id] = value
            if value is not None:
                history.append(_history_row(subject_id, value, totals))
    _bulk_update(session, updates)
    if history:
        session.execute(insert(_scores), history)
    return changed


def _bulk_update(session: Session, rows: list[dict[str, Any]]) -> None:
    """One executemany UPDATE by id (bind names differ from the column names, as Core requires)."""
    if not rows:
        return
    names = [k for k in rows[0] if k != "id"]
    stmt = (update(_table).where(_table.c.id == bindparam("b_id"))
            .values(computed_at=func.now(), **{k: bindparam(f"b_{k}") for k in names}))
    session.execute(stmt, [{f"b_{k}": v for k, v in row.items()} for row in rows])


def _history_row(framework_id: uuid.UUID, value: Decimal, totals: Contribution) -> dict[str, Any]:
    counted = totals.compliant + totals.partial + totals.non_compliant
    return {"id": uuid.uuid4(), "scope": ScoreScope.FRAMEWORK, "framework_id": framework_id, "value": value,
            "passed": totals.compliant, "total": counted,
            "details": {k: getattr(totals, k) for k in COUNTERS}}


# ---- public interface ------------------------------------------------------------------------------

def on_checks_changed(session: Session, check_ids: Iterable[uuid.UUID]) -> None:
    """Call after checks' last_outcome (or status, or their controls) changed, in the same transaction.

    A deleted check no longer leads to its controls: call on_controls_changed with them instead."""
    ids = list(set(check_ids))
    if not ids:
        return
    control_ids = set(session.execute(
        select(CheckControl.control_id).where(CheckControl.check_id.in_(ids))
        .union(select(Check.control_id).where(Check.id.in_(ids)))
    ).scalars())
    _apply(session, control_ids)


def on_controls_changed(session: Session, control_ids: Iterable[uuid.UUID]) -> None:
    """Call after controls' weight, assessable, status, owner, deletion or checks changed (or after
    new controls were created), in the same transaction."""
    _apply(session, control_ids)


def on_control_changed(session: Session, control_id: uuid.UUID) -> None:
    _apply(session, [control_id])


def rebuild_all(session: Session) -> dict[str, int]:
    """Recompute every control, framework and user score from the checks (repair; tests compare the
    incremental upkeep with it). Appends history for frameworks whose value changed."""
    # Writers of current_scores wait until the rebuild commits (and it waits for them).
    session.execute(text("LOCK TABLE current_scores IN SHARE ROW EXCLUSIVE MODE"))
    states = control_states(session)
    existing = {(row.scope, row.framework_id or row.control_id or row.user_id): row
                for row in session.execute(select(_table))}
    fw_totals: dict[uuid.UUID, Contribution] = defaultdict(Contribution)
    user_totals: dict[uuid.UUID, Contribution] = defaultdict(Contribution)
    control_rows: list[dict[str, Any]] = []
    for state in states.values():
        contribution = state.contribution()
        fw_totals[state.framework_id] = fw_totals[state.framework_id] + contribution
        if state.owner_id is not None:
            user_totals[state.owner_id] = user_totals[state.owner_id] + contribution
        control_rows.append({"scope": ScoreScope.CONTROL, "control_id": state.id, **_control_values(state)})
    for (scope, subject_id), _row in existing.items():
        if scope == ScoreScope.FRAMEWORK:
            fw_totals.setdefault(subject_id, ZERO)
        elif scope == ScoreScope.USER:
            user_totals.setdefault(subject_id, ZERO)

    _upsert(session, ScoreScope.CONTROL, control_rows)
    history = []
    for scope, totals_map in ((ScoreScope.FRAMEWORK, fw_totals), (ScoreScope.USER, user_totals)):
        column = _subject_column(scope).name
        rows = []
        for subject_id, totals in totals_map.items():
            value = percentage(totals.weight_counted, totals.weighted_points)
            rows.append({"scope": scope, column: subject_id, "value": value, "details": {},
                         **dataclasses.asdict(totals)})
            old = existing.get((scope, subject_id))
            if scope is ScoreScope.FRAMEWORK and value is not None and (old is None or old.value != value):
                history.append(_history_row(subject_id, value, totals))
        _upsert(session, scope, rows)
    if history:
        session.execute(insert(_scores), history)
    session.flush()
    return {"controls": len(control_rows), "frameworks": len(fw_totals), "users": len(user_totals)}


def _upsert(session: Session, scope: ScoreScope, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    column = _subject_column(scope).name
    for row in rows:
        row.setdefault("id", uuid.uuid4())
    stmt = insert(_table)
    names = [k for k in rows[0] if k not in ("id", "scope", column)]
    stmt = stmt.on_conflict_do_update(
        index_elements=[column], index_where=text(f"{column} IS NOT NULL"),
        set_={**{k: stmt.excluded[k] for k in names}, "computed_at": func.now(), "updated_at": func.now()},
    )
    session.execute(stmt, rows)
