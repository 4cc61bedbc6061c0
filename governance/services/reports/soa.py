"""The statement of applicability (SoA) of a framework or an AI system: what every report format
renders (docs/reports.md).

Each control: applicable or not with the reason, its status and assessment, its owner, the
evidence linked to it (SHA-256 and review state) and its checks' latest results; then the score
with its formula (governance.services.scoring / ai_systems.system_score: never a second formula),
the open alerts and tasks, and the period covered.

The period filters (docs/reports.md, "The period"). It runs from period_start 00:00 UTC up to, not
including, the day after period_end 00:00 UTC. A check shows its latest result recorded within the
period (results.created_at), or none ("no result in the period"); evidence is listed when it
existed during the period: created before the period ended and not deleted before it began. The
score, each control's assessment and the open alerts and tasks are as of the report's as-of time:
the portal's one scoring formula reads the checks' current outcomes, it is not recomputed for a
past period.

Applicability. A framework: every live control applies unless its publisher withdrew or deprecated
it, or it is not assessable (a grouping heading). An AI system: the controls in ai_system_controls
apply (origin and reason from there), every other control of the same frameworks does not.

A bounded number of statements whatever the number of controls (subqueries, not id lists), and the
whole result serialises to JSON, so it is cached in the read cache's "reports" scope until a write
to one of its source tables commits.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, literal, or_, select, union
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from governance.models.ai import AISystem, AISystemControl
from governance.models.audit import Alert
from governance.models.enums import AlertStatus, ControlStatus, TaskStatus
from governance.models.evidence import Evidence, EvidenceLink
from governance.models.frameworks import Control, Framework
from governance.models.identity import User
from governance.models.probes import Check, CheckControl, Result
from governance.models.reports import ReportScope
from governance.services import ai_systems, read_cache, scoring

OPEN_TASK = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS)
OPEN_ALERT = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
# Cached entries also expire: a report names the owners and titles of the moment.
CACHE_MAX_AGE = timedelta(minutes=15)
DEFAULT_PERIOD_DAYS = 90
# What the period filters, for the reader of every format (docs/reports.md, "The period").
PERIOD_NOTE = ("Check results: each check's latest result recorded within the period (UTC days), or no result "
               "in the period. Evidence: what existed during the period (added before it ended, not deleted "
               "before it began), with its current review state. The score, the assessments and the open alerts "
               "and tasks are as of the data-as-of time.")
NO_RESULT = "no result in the period"


class UnknownTarget(LookupError):
    """No live framework or AI system with that id."""


@dataclass(frozen=True)
class EvidenceItem:
    id: str
    name: str
    sha256: str
    status: str
    period_start: str | None
    period_end: str | None
    deleted_at: str | None = None  # deleted during or after the period (it existed in it)


@dataclass(frozen=True)
class CheckItem:
    id: str
    name: str
    status: str
    outcome: str | None
    at: str | None
    message: str | None


@dataclass(frozen=True)
class SoARow:
    control_id: str
    framework: str
    ref_id: str
    title: str
    applicable: bool
    reason: str
    status: str  # the control's own status (draft, active, deprecated, withdrawn)
    assessment: str  # compliant / partial / non_compliant / unassessed, or "not applicable"
    owner: str | None
    evidence: list[EvidenceItem] = field(default_factory=list)
    checks: list[CheckItem] = field(default_factory=list)


@dataclass(frozen=True)
class OpenItem:
    id: str
    kind: str  # "alert" or "task"
    title: str
    severity: str
    status: str
    since: str


@dataclass(frozen=True)
class SoA:
    scope: str
    target_id: str
    title: str
    period_start: str
    period_end: str
    score: str | None  # a percentage with two decimals, None while nothing is assessed
    counts: dict[str, int]
    formula: str
    rows: list[SoARow]
    open_items: list[OpenItem]

    @property
    def applicable_count(self) -> int:
        return sum(1 for r in self.rows if r.applicable)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> SoA:
        data = json.loads(raw)
        rows = [SoARow(**{**r, "evidence": [EvidenceItem(**e) for e in r["evidence"]],
                          "checks": [CheckItem(**c) for c in r["checks"]]}) for r in data.pop("rows")]
        items = [OpenItem(**i) for i in data.pop("open_items")]
        return cls(**data, rows=rows, open_items=items)


def default_period(today: date | None = None) -> tuple[date, date]:
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=DEFAULT_PERIOD_DAYS), today


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


def period_bounds(period: tuple[date, date]) -> tuple[datetime, datetime]:
    """[start, end): period_start 00:00 UTC up to the day after period_end 00:00 UTC."""
    start = datetime.combine(period[0], time.min, tzinfo=UTC)
    return start, datetime.combine(period[1] + timedelta(days=1), time.min, tzinfo=UTC)


def _not_applicable_reason(control: Control) -> str | None:
    if control.status == ControlStatus.WITHDRAWN:
        return "Withdrawn by the framework's publisher."
    if control.status == ControlStatus.DEPRECATED:
        return "Deprecated by the framework's publisher."
    if not control.assessable:
        return "Not assessable (a grouping of other controls)."
    return None


def _controls(session: Session, framework_ids: Select[Any]) -> list[tuple[Control, str, str | None]]:
    return [(c, fw, owner) for c, fw, owner in session.execute(
        select(Control, Framework.title, User.name)
        .join(Framework, Framework.id == Control.framework_id)
        .outerjoin(User, User.id == Control.owner_id)
        .where(Control.framework_id.in_(framework_ids))
        .order_by(Framework.title, Control.sort_order, Control.ref_id))]


def _evidence(session: Session, control_ids: Select[Any],
              period: tuple[date, date]) -> dict[uuid.UUID, list[EvidenceItem]]:
    """Evidence attached to the controls, directly (evidence.control_id) or by a link, that existed
    during the period: created before it ended and not deleted before it began."""
    start, end = period_bounds(period)
    pairs = union(
        select(Evidence.control_id.label("control_id"), Evidence.id.label("evidence_id"))
        .where(Evidence.control_id.in_(control_ids)),
        select(EvidenceLink.control_id.label("control_id"), EvidenceLink.evidence_id.label("evidence_id"))
        .where(EvidenceLink.control_id.in_(control_ids)),
    ).subquery()
    found: dict[uuid.UUID, list[EvidenceItem]] = defaultdict(list)
    for control_id, ev in session.execute(
            select(pairs.c.control_id, Evidence).join(Evidence, Evidence.id == pairs.c.evidence_id)
            .where(Evidence.created_at < end, or_(Evidence.deleted_at.is_(None), Evidence.deleted_at >= start))
            .order_by(pairs.c.control_id, Evidence.name, Evidence.id)
            .execution_options(include_deleted=True)):  # the period, not today, decides
        found[control_id].append(EvidenceItem(str(ev.id), ev.name, ev.sha256, ev.status.value,
                                              _iso(ev.period_start), _iso(ev.period_end), _iso(ev.deleted_at)))
    return found


def _checks(session: Session, control_ids: Select[Any],
            period: tuple[date, date]) -> tuple[dict[uuid.UUID, list[CheckItem]], set[str]]:
    """The controls' checks, each with its latest result within the period (one statement for the
    checks, one for their results: DISTINCT ON over ix_results_check_id_created_at, the period's
    partitions only)."""
    start, end = period_bounds(period)
    linked = list(session.execute(
        select(CheckControl.control_id, Check).join(Check, Check.id == CheckControl.check_id)
        .where(CheckControl.control_id.in_(control_ids)).order_by(CheckControl.control_id, Check.name)))
    latest: dict[uuid.UUID, Result] = {}
    if linked:
        check_ids = select(CheckControl.check_id).where(CheckControl.control_id.in_(control_ids))
        latest = {r.check_id: r for r in session.scalars(
            select(Result).ext(distinct_on(Result.check_id))
            .where(Result.check_id.in_(check_ids), Result.created_at >= start, Result.created_at < end)
            .order_by(Result.check_id, Result.created_at.desc(), Result.id.desc()))}
    found: dict[uuid.UUID, list[CheckItem]] = defaultdict(list)
    ids: set[str] = set()
    for control_id, check in linked:
        ids.add(str(check.id))
        result = latest.get(check.id)
        found[control_id].append(CheckItem(
            str(check.id), check.name, check.status.value,
            None if result is None else result.outcome.value,
            None if result is None else _iso(result.created_at),
            None if result is None else result.message))
    return found, ids


def _open_items(session: Session, control_ids: Select[Any], check_ids: set[str], evidence_ids: set[str],
                system_id: uuid.UUID | None) -> list[OpenItem]:
    from governance.models.tasks import Task

    task_scope: ColumnElement[bool] = Task.control_id.in_(control_ids)
    if system_id is not None:
        task_scope = or_(task_scope, Task.ai_system_id == system_id)
    tasks = list(session.scalars(select(Task).where(task_scope, Task.status.in_(OPEN_TASK))
                                 .order_by(Task.created_at, Task.id)))
    task_alerts = {t.alert_id for t in tasks if t.alert_id is not None}
    alert_scope: list[ColumnElement[bool]] = [Alert.id.in_(task_alerts)] if task_alerts else []
    if check_ids:
        alert_scope.append(and_(Alert.source_type == "check", Alert.source_id.in_(check_ids)))
    if evidence_ids:
        alert_scope.append(and_(Alert.source_type == "evidence", Alert.source_id.in_(evidence_ids)))
    alerts = list(session.scalars(select(Alert).where(or_(*alert_scope), Alert.status.in_(OPEN_ALERT))
                                  .order_by(Alert.first_seen_at, Alert.id))) if alert_scope else []
    return ([OpenItem(str(a.id), "alert", a.title, a.severity.value, a.status.value, _iso(a.first_seen_at) or "")
             for a in alerts]
            + [OpenItem(str(t.id), "task", t.title, t.priority.value, t.status.value, _iso(t.created_at) or "")
               for t in tasks])


def _counts(totals: scoring.Contribution) -> dict[str, int]:
    return {name: int(getattr(totals, name)) for name in scoring.COUNTERS}


def framework_soa(session: Session, framework_id: uuid.UUID, period: tuple[date, date]) -> SoA:
    framework = session.get(Framework, framework_id)
    if framework is None or framework.deleted_at is not None:
        raise UnknownTarget(f"no framework {framework_id}")
    framework_ids = select(literal(framework_id, type_=Framework.id.type))
    control_ids = select(Control.id).where(Control.framework_id == framework_id)
    controls = _controls(session, framework_ids)
    states = scoring.control_states(session, [c.id for c, _, _ in controls]) if controls else {}
    evidence = _evidence(session, control_ids, period)
    checks, check_ids = _checks(session, control_ids, period)
    rows = []
    for control, fw_title, owner in controls:
        reason = _not_applicable_reason(control)
        state = states.get(control.id)
        assessment = (state.klass or "unassessed") if state is not None and state.scored else "not applicable"
        rows.append(SoARow(str(control.id), fw_title, control.ref_id, control.title, reason is None,
                           reason or "In force in this framework.", control.status.value, assessment, owner,
                           evidence.get(control.id, []), checks.get(control.id, [])))
    totals = scoring.total(s for s in states.values() if s.scored)
    score = scoring.percentage(totals.weight_counted, totals.weighted_points)
    evidence_ids = {e.id for items in evidence.values() for e in items}
    return SoA(ReportScope.FRAMEWORK.value, str(framework_id), f"{framework.title} {framework.version}",
               period[0].isoformat(), period[1].isoformat(), None if score is None else str(score),
               _counts(totals), scoring.FORMULA_TEXT, rows,
               _open_items(session, control_ids, check_ids, evidence_ids, None))


def system_soa(session: Session, system_id: uuid.UUID, period: tuple[date, date]) -> SoA:
    system = session.get(AISystem, system_id)
    if system is None or system.deleted_at is not None:
        raise UnknownTarget(f"no AI system {system_id}")
    linked = select(AISystemControl.control_id).where(AISystemControl.system_id == system_id)
    framework_ids = select(Control.framework_id).where(Control.id.in_(linked)).distinct()
    controls = _controls(session, framework_ids)
    applied: dict[uuid.UUID, list[str]] = defaultdict(list)
    for link in session.scalars(select(AISystemControl).where(AISystemControl.system_id == system_id)
                                .order_by(AISystemControl.origin)):
        applied[link.control_id].append(f"{link.origin}: {link.reason}" if link.reason else link.origin)
    states = scoring.control_states(session, list(applied), checks=ai_systems.counted_checks(system_id)) \
        if applied else {}
    evidence = _evidence(session, linked, period)
    checks, check_ids = _checks(session, linked, period)
    rows = []
    for control, fw_title, owner in controls:
        origins = applied.get(control.id)
        state = states.get(control.id)
        assessment = (state.klass or "unassessed") if origins and state is not None and state.scored \
            else "not applicable"
        reason = "; ".join(origins) if origins else "Not linked to this system (ai_system_controls)."
        rows.append(SoARow(str(control.id), fw_title, control.ref_id, control.title, bool(origins), reason,
                           control.status.value, assessment, owner,
                           evidence.get(control.id, []) if origins else [],
                           checks.get(control.id, []) if origins else []))
    score = ai_systems.system_score(session, system_id)
    counts = {"compliant": score.compliant, "partial": score.partial, "non_compliant": score.non_compliant,
              "error": score.error, "not_applicable": score.not_applicable, "unassessed": score.unassessed}
    evidence_ids = {e.id for items in evidence.values() for e in items}
    return SoA(ReportScope.AI_SYSTEM.value, str(system_id), system.name, period[0].isoformat(),
               period[1].isoformat(), None if score.value is None else str(score.value), counts,
               scoring.FORMULA_TEXT, rows, _open_items(session, linked, check_ids, evidence_ids, system_id))


def compute(session: Session, scope: ReportScope, target_id: uuid.UUID, period: tuple[date, date]) -> SoA:
    if scope == ReportScope.FRAMEWORK:
        return framework_soa(session, target_id, period)
    return system_soa(session, target_id, period)


def cache_key(scope: ReportScope, target_id: uuid.UUID, period: tuple[date, date]) -> str:
    return f"soa:{scope.value}:{target_id}:{period[0].isoformat()}:{period[1].isoformat()}"


def cached(session: Session, scope: ReportScope, target_id: uuid.UUID, period: tuple[date, date],
           now: datetime | None = None) -> tuple[SoA, bool]:
    """The SoA from the shared read cache ("reports" scope), computed and stored when missing or
    stale; (soa, hit). The caller commits (a cache row is not domain data)."""
    key = cache_key(scope, target_id, period)
    values = read_cache.get_or_compute(session, read_cache.REPORTS,
                                       {key: lambda _now: compute(session, scope, target_id, period).to_json()},
                                       CACHE_MAX_AGE, now=now)
    return SoA.from_json(values[key].value), values[key].hit

