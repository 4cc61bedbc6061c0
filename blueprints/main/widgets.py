"""The dashboard widgets' reads: each a fixed number of statements on pre-aggregated rows
(current_scores, metrics, checks.last_outcome, the evidence expiry index), never on results."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance.models import Control, Evidence, Framework
from governance.models.enums import CheckStatus, EvidenceStatus, ResultOutcome, ScoreScope
from governance.models.probes import Check, CheckControl, Probe
from governance.models.scoring import CurrentScore, Metric
from governance.services import kpis

FRAMEWORKS_SHOWN = 12
FAILING_SHOWN = 10
EXPIRING_SHOWN = 10
TREND_DAYS = 30
FAILING_OUTCOMES = (ResultOutcome.NON_COMPLIANT, ResultOutcome.PARTIAL, ResultOutcome.ERROR)
SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 120, 32, 2


@dataclass(frozen=True)
class Sparkline:
    """Points of a 0..100 trend as SVG coordinates, and its description in words."""

    points: str
    last_x: float
    last_y: float
    label: str
    empty: bool
    width: int = SPARK_WIDTH
    height: int = SPARK_HEIGHT


def sparkline(title: str, series: list[tuple[date, Decimal]]) -> Sparkline:
    """series: (day, percentage) oldest first; the x axis spans TREND_DAYS days ending with the last."""
    if not series:
        return Sparkline("", 0, 0, f"{title}: no score history yet", True)
    end = series[-1][0]
    inner_w, inner_h = SPARK_WIDTH - 2 * SPARK_PAD, SPARK_HEIGHT - 2 * SPARK_PAD
    coords = []
    for day, value in series:
        age = (end - day).days
        x = SPARK_PAD + inner_w * (TREND_DAYS - age) / TREND_DAYS
        y = SPARK_PAD + inner_h * (1 - float(value) / 100)
        coords.append((round(x, 1), round(y, 1)))
    if len(coords) == 1:  # one day: a short flat stroke so it is visible
        coords.insert(0, (round(coords[0][0] - 4, 1), coords[0][1]))
    first, last = series[0][1], series[-1][1]
    lo, hi = min(v for _, v in series), max(v for _, v in series)
    label = (f"{title}: score trend over the last {TREND_DAYS} days, {len(series)} day(s) from "
             f"{first:.1f}% on {series[0][0]:%Y-%m-%d} to {last:.1f}% on {end:%Y-%m-%d} "
             f"(lowest {lo:.1f}%, highest {hi:.1f}%)")
    return Sparkline(" ".join(f"{x},{y}" for x, y in coords), coords[-1][0], coords[-1][1], label, False)


@dataclass
class FrameworkScore:
    id: uuid.UUID
    title: str
    version: str
    value: Decimal | None
    counted: int
    compliant: int
    partial: int
    non_compliant: int
    unassessed: int
    error: int
    not_applicable: int
    computed_at: datetime | None
    trend: Sparkline | None = None


@dataclass
class ScoresWidget:
    frameworks: list[FrameworkScore]
    more: bool
    as_of: datetime


def _score(row: Any, **names: Any) -> FrameworkScore:
    counted = (row.compliant or 0) + (row.partial or 0) + (row.non_compliant or 0)
    return FrameworkScore(value=row.value, counted=counted, compliant=row.compliant or 0, partial=row.partial or 0,
                          non_compliant=row.non_compliant or 0, unassessed=row.unassessed or 0,
                          error=row.error or 0, not_applicable=row.not_applicable or 0,
                          computed_at=row.computed_at, **names)


def framework_scores(session: Session, now: datetime) -> ScoresWidget:
    """Two statements: live frameworks with their current score, and their last 30 days of metrics.
    The same for every viewer (cached as one fragment); the viewer's own score is own_score()."""
    cs = CurrentScore
    rows = session.execute(
        select(Framework.id, Framework.title, Framework.version, cs.value, cs.compliant, cs.partial,
               cs.non_compliant, cs.unassessed, cs.error, cs.not_applicable, cs.computed_at)
        .outerjoin(cs, cs.framework_id == Framework.id)
        .order_by(Framework.title, Framework.version, Framework.id)
        .limit(FRAMEWORKS_SHOWN + 1)
    ).all()
    more = len(rows) > FRAMEWORKS_SHOWN
    scores = [_score(r, id=r.id, title=r.title, version=r.version) for r in rows[:FRAMEWORKS_SHOWN]]

    series: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    today = now.date()
    if scores:
        since, _ = kpis.day_period(today - timedelta(days=TREND_DAYS))
        framework_key = Metric.dimensions["framework_id"].astext
        for fid, start, value in session.execute(
            select(framework_key, Metric.period_start, Metric.value)
            .where(Metric.key == kpis.FRAMEWORK_SCORE, Metric.period_start >= since,
                   Metric.period_start < kpis.day_period(today)[0],
                   framework_key.in_([str(s.id) for s in scores]))
            .order_by(Metric.period_start)
        ):
            series[fid].append((start.astimezone(UTC).date(), Decimal(value)))
    for score in scores:
        points = series.get(str(score.id), [])
        if score.value is not None:
            points = [*points, (today, score.value)]
        score.trend = sparkline(f"{score.title} {score.version}", points)

    return ScoresWidget(scores, more, now)


@dataclass
class OwnScore:
    score: FrameworkScore | None
    as_of: datetime


def own_score(session: Session, now: datetime, user_id: uuid.UUID) -> OwnScore:
    """One statement: the score over the controls the user owns (None when they own none)."""
    cs = CurrentScore
    row = session.execute(
        select(cs.value, cs.compliant, cs.partial, cs.non_compliant, cs.unassessed, cs.error,
               cs.not_applicable, cs.computed_at).where(cs.user_id == user_id, cs.scope == ScoreScope.USER)
    ).one_or_none()
    mine = None if row is None else _score(row, id=user_id, title="Controls you own", version="")
    return OwnScore(mine, now)


@dataclass
class FailingCheck:
    id: uuid.UUID
    name: str
    outcome: ResultOutcome
    message: str | None
    result_at: datetime | None
    probe_id: uuid.UUID
    probe_name: str
    controls: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)  # (id, ref_id, framework title)


@dataclass
class FailingWidget:
    checks: list[FailingCheck]
    total: int
    as_of: datetime


def failing_checks(session: Session, now: datetime) -> FailingWidget:
    """Two statements: the newest failing checks with their probe and the total, then their controls.

    The newest come from a backward scan of ix_checks_failing_last_result_at_id that stops after
    FAILING_SHOWN rows (a failing check always has its last_result_at); the total is one count over
    the same partial index, not a window over every failing row."""
    failing = (Check.last_outcome.in_(FAILING_OUTCOMES), Check.status == CheckStatus.ACTIVE,
               Check.last_result_at.is_not(None))
    total = select(func.count()).select_from(Check).where(*failing).scalar_subquery()
    rows = session.execute(
        select(Check.id, Check.name, Check.last_outcome, Check.last_message, Check.last_result_at,
               Probe.id.label("probe_id"), Probe.name.label("probe_name"), total.label("total"))
        .join(Probe, Probe.id == Check.probe_id)
        .where(*failing)
        .order_by(Check.last_result_at.desc(), Check.id.desc())
        .limit(FAILING_SHOWN)
    ).all()
    checks = {r.id: FailingCheck(r.id, r.name, r.last_outcome, r.last_message, r.last_result_at, r.probe_id,
                                 r.probe_name) for r in rows}
    if checks:
        for check_id, control_id, ref_id, title in session.execute(
            select(CheckControl.check_id, Control.id, Control.ref_id, Framework.title)
            .join(Control, Control.id == CheckControl.control_id)
            .join(Framework, Framework.id == Control.framework_id)
            .where(CheckControl.check_id.in_(list(checks)))
            .order_by(Framework.title, Control.ref_id)
        ):
            checks[check_id].controls.append((control_id, ref_id, title))
    return FailingWidget(list(checks.values()), int(rows[0].total) if rows else 0, now)


@dataclass
class ExpiringWidget:
    evidence: list[Any]
    total: int
    as_of: datetime


def expiring_evidence(session: Session, now: datetime) -> ExpiringWidget:
    """One statement on ix_evidence_approved_expires_at: approved live evidence expiring within 30
    days (or already lapsed and waiting for the daily sweep), soonest first."""
    rows = session.execute(
        select(Evidence.id, Evidence.name, Evidence.expires_at, func.count().over().label("total"))
        .where(Evidence.status == EvidenceStatus.APPROVED, Evidence.expires_at.is_not(None),
               Evidence.expires_at <= now + kpis.EXPIRING_WITHIN)
        .order_by(Evidence.expires_at, Evidence.id)
        .limit(EXPIRING_SHOWN)
    ).all()
    return ExpiringWidget(list(rows), int(rows[0].total) if rows else 0, now)
