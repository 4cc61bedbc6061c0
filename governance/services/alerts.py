"""Alert rules: raise (deduplicated), acknowledge, resolve, clear by themselves; the periodic sweep.

One unresolved alert per rule and subject (dedup_key "<rule>:<subject_id>", the partial unique
index uq_alerts_unresolved_dedup_key): raising it again while it is open or acknowledged adds one to
`occurrences` and moves `last_seen_at` (one INSERT … ON CONFLICT, safe between any number of
connections), and is neither audited nor notified again (a failing check re-run every minute must
not flood anyone). Once resolved, the next raise opens a new alert; the old one stays as history.

A new alert gets its "raised" history event (alert_events), an audit entry by the system, in-app
notifications (which the e-mail outbox sends when SMTP is configured) and, when high or critical, a
remediation task (governance.services.tasks.open_for_alert). Who is told: the owner always; the
responders (every active user whose role holds alerts:update: admins and compliance officers by
default) when the alert is high or critical, or has no owner, so that someone always hears of it.

Alerts inserted by SQL alone (the schema-change event trigger) have no "raised" event yet:
process_unhandled(), every minute, gives them the same treatment and also clears denial bursts
whose window has passed quietly. Services flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, cast, exists, func, literal_column, or_, select, text, update
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from governance import context
from governance.models.audit import Alert, AlertEvent, AuditLog
from governance.models.enums import AlertStatus, AuditOutcome, ResultOutcome, Severity
from governance.models.frameworks import Control
from governance.models.identity import Permission, Role, User
from governance.models.probes import Check, Probe
from governance.services import audit, notifications
from governance.services.notifications import Cursor, NewNotification

CHECK_FAILING = "check.failing"
EVIDENCE_EXPIRED = "evidence.expired"
DENIAL_BURST = "access.denied_burst"
SCHEMA_CHANGE = "schema.change"
AUDIT_CHAIN = "audit.chain_broken"
BACKUP_FAILED = "backup.failed"
DRILL_FAILED = "backup.drill_failed"
BACKUP_STALE = "backup.stale"


@dataclass(frozen=True)
class Rule:
    title: str
    severity: Severity
    clears: str  # what resolves it by itself, or that only a person can


RULES: dict[str, Rule] = {
    CHECK_FAILING: Rule("A check is failing", Severity.MEDIUM,
                        "the check's next compliant or not-applicable result"),
    EVIDENCE_EXPIRED: Rule("Evidence has expired", Severity.MEDIUM,
                           "a newer approved revision (renewal) of the evidence"),
    DENIAL_BURST: Rule("A burst of refused requests", Severity.HIGH,
                       "the denial window passing with no new refused request from that user"),
    SCHEMA_CHANGE: Rule("The database schema changed outside a migration", Severity.HIGH,
                        "only a person (after checking the change was intended)"),
    AUDIT_CHAIN: Rule("The audit log's hash chain is broken", Severity.CRITICAL,
                      "only a person (after investigating the tampering)"),
    BACKUP_FAILED: Rule("A backup failed", Severity.HIGH, "the next successful backup"),
    DRILL_FAILED: Rule("A restore drill failed", Severity.HIGH, "the next successful restore drill"),
    BACKUP_STALE: Rule("No recent successful backup", Severity.HIGH,
                       "the next successful backup (the age check, every 15 minutes)"),
}

SEVERITY_ORDER = {s: i for i, s in enumerate((Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL))}
URGENT = frozenset({Severity.HIGH, Severity.CRITICAL})
ACTIVE = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
PAGE_SIZE = 50
OPEN_COUNT_CAP = 100
TITLE_MAX = 500
COMMENT_MAX = 4000
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_UNRESOLVED = text("status <> 'resolved' AND dedup_key IS NOT NULL")


class AlertRuleError(ValueError):
    """A change the alert rules refuse; `field` names the form field the page shows it beside."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Raise:
    """One alert to raise (raise_many takes many at once, e.g. every failing check of a run)."""

    rule: str
    subject_type: str
    subject_id: Any
    title: str
    severity: Severity
    details: Mapping[str, Any] | None = None
    owner_id: uuid.UUID | None = None
    message: str | None = None
    # False where the caller tells the owner itself, in its own words (expired evidence).
    notify_owner: bool = True

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.rule, self.subject_id)


def dedup_key(rule: str, subject_id: Any) -> str:
    return f"{rule}:{subject_id}"


def link(alert: Alert) -> str:
    return f"/alerts/{alert.id}"


def _system_ctx() -> context.ActionContext:
    """Raising and clearing are the system's doing, whoever's request set them off (same request id)."""
    return context.ActionContext(actor_name="system:alerts", request_id=context.current().request_id)


def _settings() -> Any:
    """The running app's settings (a job or request), else the defaults."""
    from flask import current_app, has_app_context

    if has_app_context() and "SETTINGS" in current_app.config:
        return current_app.config["SETTINGS"]
    from config import Settings

    return Settings()


def _event(alert: Alert, kind: str, *, actor_id: uuid.UUID | None = None, comment: str | None = None,
           details: Mapping[str, Any] | None = None) -> AlertEvent:
    # The clock, not the transaction's start: a history written in one transaction keeps its order.
    return AlertEvent(alert_id=alert.id, kind=kind, actor_id=actor_id, comment=comment, details=dict(details or {}),
                      created_at=func.clock_timestamp())


def _snapshot(alert: Alert) -> dict[str, Any]:
    return {"status": alert.status, "severity": alert.severity, "acknowledged_by_id": alert.acknowledged_by_id,
            "acknowledged_at": alert.acknowledged_at, "resolved_by_id": alert.resolved_by_id,
            "resolved_at": alert.resolved_at, "resolution": alert.resolution}


# --- raising -------------------------------------------------------------------------------------

def raise_alert(session: Session, *, rule: str, subject_type: str, subject_id: Any, title: str,
                severity: Severity, details: Mapping[str, Any] | None = None,
                owner_id: uuid.UUID | None = None, message: str | None = None) -> Alert:
    """Raise (or repeat) the alert of `rule` about this subject; returns it."""
    return raise_many(session, [Raise(rule, subject_type, subject_id, title, severity, details, owner_id,
                                      message)])[0]


def raise_many(session: Session, items: Sequence[Raise]) -> list[Alert]:
    """Raise several alerts in one INSERT … ON CONFLICT; returns them in the order given (repeats of
    one dedup key in `items` collapse into the last). New ones are handled (_on_new) in bulk."""
    for item in items:
        if item.rule not in RULES:
            raise AlertRuleError("rule", f"unknown alert rule {item.rule!r}")
    latest: dict[str, Raise] = {}
    for item in items:
        latest[item.dedup_key] = item
    if not latest:
        return []
    rows = [{"rule": r.rule, "severity": Severity(r.severity), "title": (r.title or RULES[r.rule].title)[:TITLE_MAX],
             "details": audit._jsonable(dict(r.details or {})), "source_type": r.subject_type,
             "source_id": str(r.subject_id), "dedup_key": key, "owner_id": r.owner_id, "message": r.message,
             # The clock, not the transaction's start (a probe run's batch may be a long transaction).
             "created_at": func.clock_timestamp(), "first_seen_at": func.clock_timestamp(),
             "last_seen_at": func.clock_timestamp()}
            # Keys in one order: two batches overlapping in subjects lock them alike (no deadlock).
            for key, r in sorted(latest.items())]
    base = insert(Alert).values(rows)
    excluded = base.excluded
    stmt: Any = base.on_conflict_do_update(
        index_elements=["dedup_key"], index_where=_UNRESOLVED,
        set_={
            "occurrences": Alert.occurrences + 1,
            # The statement's own time: a long transaction (a probe run's batch) still moves it.
            "last_seen_at": func.clock_timestamp(),
            # The latest observation describes it; severity only ever escalates; an owner found later sticks.
            "title": excluded.title,
            "details": excluded.details,
            "message": func.coalesce(excluded.message, Alert.message),
            "severity": func.greatest(Alert.severity, excluded.severity),
            "owner_id": func.coalesce(Alert.owner_id, excluded.owner_id),
        },
    ).returning(Alert.id, Alert.dedup_key, literal_column("xmax = 0").label("inserted"),
                Alert.severity)
    result = session.execute(stmt).all()
    inserted = {row.id for row in result if row.inserted}
    by_key = {row.dedup_key: row.id for row in result}
    ids = list(by_key.values())
    alerts = {a.id: a for a in session.scalars(
        select(Alert).where(Alert.id.in_(ids)).execution_options(populate_existing=True))}
    new = [alerts[i] for i in ids if i in inserted]
    if new:
        quiet = {by_key[key] for key, r in latest.items() if not r.notify_owner}
        _on_new(session, new, quiet_owner=quiet)
    # A repeat that escalated an alert to high or critical gets the remediation task it now needs.
    escalated = [alerts[i] for i in ids if i not in inserted and alerts[i].severity in URGENT]
    if escalated:
        from governance.services import tasks

        tasks.open_for_alerts(session, escalated)
    return [alerts[by_key[item.dedup_key]] for item in items]


def _responders(session: Session) -> list[uuid.UUID]:
    """Active users whose role holds alerts:update (admins and compliance officers by default)."""
    roles = select(Permission.v0).where(Permission.ptype == "p", Permission.v1 == "alerts",
                                        Permission.v2 == "update",
                                        func.coalesce(Permission.v3, "allow") == "allow")
    return list(session.scalars(
        select(User.id).join(Role, Role.id == User.role_id)
        .where(Role.name.in_(roles), User.is_active.is_(True), User.deleted_at.is_(None))))


def _on_new(session: Session, new: list[Alert], *, quiet_owner: Iterable[uuid.UUID] = ()) -> None:
    """What a new alert gets once: its "raised" event, its audit entry, notices and (urgent) a task.
    quiet_owner: alerts whose owner the caller has told already."""
    ctx = _system_ctx()
    quiet = set(quiet_owner)
    session.add_all([_event(a, "raised", details={"severity": a.severity.value, "dedup_key": a.dedup_key})
                     for a in new])
    for a in new:
        audit.record(session, "alert.raise", object_type="alert", object_id=a.id, ctx=ctx,
                     details={"rule": a.rule, "severity": a.severity, "title": a.title,
                              "subject_type": a.source_type, "subject_id": a.source_id, "owner_id": a.owner_id})
    responders: list[uuid.UUID] | None = None
    notices: list[NewNotification] = []
    for a in new:
        people: list[uuid.UUID] = [a.owner_id] if a.owner_id and a.id not in quiet else []
        if a.severity in URGENT or a.owner_id is None:
            if responders is None:
                responders = _responders(session)
            people += [r for r in responders if r != a.owner_id]
        # A rule written by SQL alone may be unknown here: it still reaches people, as itself.
        body = a.message or (RULES[a.rule].title if a.rule in RULES else a.rule)
        notices += [NewNotification(user_id=person, kind="alert", title=f"[{a.severity.value}] {a.title}",
                                    body=body, link=link(a), dedup_key=f"alert:{a.id}:{person}")
                    for person in people]
    notifications.notify_many(session, notices)
    session.flush()
    urgent = [a for a in new if a.severity in URGENT]
    if urgent:
        from governance.services import tasks

        tasks.open_for_alerts(session, urgent)


# --- the rules' hooks ------------------------------------------------------------------------------

FAILING = frozenset({ResultOutcome.NON_COMPLIANT, ResultOutcome.ERROR})
PASSING = frozenset({ResultOutcome.COMPLIANT, ResultOutcome.NOT_APPLICABLE})


def on_check_results(session: Session, outcomes: Iterable[tuple[uuid.UUID, ResultOutcome | str, str | None]]) -> None:
    """A probe run wrote these (check id, outcome, message): failing checks (non_compliant, error)
    raise CHECK_FAILING, passing ones (compliant, not_applicable) clear it; partial changes
    nothing. Grouped: a few statements per batch of results, whatever their number.

    Owner: the probe's owner, else the check's primary control's owner. Severity: the check's, an
    error at least medium (a probe that cannot run hides whatever it guards)."""
    failing: dict[uuid.UUID, tuple[ResultOutcome, str | None]] = {}
    passing: list[uuid.UUID] = []
    for check_id, outcome, message in outcomes:
        result = ResultOutcome(outcome)
        if result in FAILING:
            failing[check_id] = (result, message)
        elif result in PASSING:
            passing.append(check_id)
    if passing:
        clear_many(session, rule=CHECK_FAILING, subject_ids=passing, reason="the check passed again")
    if not failing:
        return
    rows = session.execute(
        select(Check.id, Check.name, Check.severity, Check.control_id, Check.probe_id, Probe.name.label("probe"),
               func.coalesce(Probe.owner_id, Control.owner_id).label("owner_id"), Control.ref_id)
        .join(Probe, Probe.id == Check.probe_id)
        .join(Control, Control.id == Check.control_id)
        .where(Check.id.in_(list(failing)))
        .execution_options(include_deleted=True)
    ).all()
    items = []
    for row in rows:
        result, message = failing[row.id]
        severity = Severity(row.severity)
        if result == ResultOutcome.ERROR and SEVERITY_ORDER[severity] < SEVERITY_ORDER[Severity.MEDIUM]:
            severity = Severity.MEDIUM
        verb = "cannot be evaluated" if result == ResultOutcome.ERROR else "is failing"
        items.append(Raise(
            rule=CHECK_FAILING, subject_type="check", subject_id=row.id,
            title=f"Check {row.name} ({row.probe}) {verb}", severity=severity, owner_id=row.owner_id,
            message=message,
            details={"outcome": result, "check": row.name, "probe": row.probe, "probe_id": row.probe_id,
                     "control_id": row.control_id, "control": row.ref_id}))
    raise_many(session, items)


# --- clearing and people's actions ------------------------------------------------------------------

def clear(session: Session, *, rule: str, subject_id: Any, reason: str) -> Alert | None:
    """The condition cleared: resolve the unresolved alert of this rule and subject (None if none)."""
    cleared = clear_many(session, rule=rule, subject_ids=[subject_id], reason=reason)
    return cleared[0] if cleared else None


def clear_many(session: Session, *, rule: str, subject_ids: Iterable[Any], reason: str) -> list[Alert]:
    """clear() for many subjects in one UPDATE (e.g. every check of a run that passed)."""
    keys = sorted({dedup_key(rule, s) for s in subject_ids})
    if not keys:
        return []
    return _auto_resolve(session, and_(Alert.dedup_key.in_(keys), Alert.status.in_(ACTIVE)), reason)


def _auto_resolve(session: Session, condition: Any, reason: str) -> list[Alert]:
    befores = {a.id: _snapshot(a) for a in session.scalars(
        select(Alert).where(condition).with_for_update().execution_options(populate_existing=True))}
    if not befores:
        return []
    session.execute(update(Alert).where(Alert.id.in_(list(befores))).values(
        status=AlertStatus.RESOLVED, resolved_at=func.now(), resolved_by_id=None, resolution=reason)
        .execution_options(synchronize_session=False))
    alerts = list(session.scalars(select(Alert).where(Alert.id.in_(list(befores)))
                                  .execution_options(populate_existing=True)))
    ctx = _system_ctx()
    session.add_all([_event(a, "auto_resolved", comment=reason) for a in alerts])
    for a in alerts:
        audit.record(session, "alert.auto_resolve", object_type="alert", object_id=a.id, ctx=ctx,
                     before=befores[a.id], after=_snapshot(a), details={"rule": a.rule, "reason": reason})
    session.flush()
    return alerts


def _locked(session: Session, alert_id: uuid.UUID) -> Alert:
    alert = session.scalars(select(Alert).where(Alert.id == alert_id).with_for_update()
                            .execution_options(populate_existing=True)).one_or_none()
    if alert is None:
        raise AlertRuleError("alert", "That alert does not exist.")
    return alert


def _comment(comment: str | None) -> str | None:
    clean = (comment or "").strip()
    if len(clean) > COMMENT_MAX:
        raise AlertRuleError("comment", f"Keep the comment under {COMMENT_MAX} characters.")
    return clean or None


def acknowledge(session: Session, alert_id: uuid.UUID, *, comment: str | None = None) -> Alert:
    """Someone is on it: open → acknowledged, by the current actor."""
    alert = _locked(session, alert_id)
    note = _comment(comment)
    if alert.status != AlertStatus.OPEN:
        raise AlertRuleError("status", f"This alert is {alert.status.value} already: only an open alert "
                                       "can be acknowledged.")
    ctx = context.current()
    before = _snapshot(alert)
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_by_id = ctx.actor_id
    alert.acknowledged_at = func.now()  # type: ignore[assignment]
    session.add(_event(alert, "acknowledged", actor_id=ctx.actor_id, comment=note))
    session.flush()
    session.refresh(alert)
    audit.record(session, "alert.acknowledge", object_type="alert", object_id=alert.id, before=before,
                 after=_snapshot(alert), details={"rule": alert.rule, "comment": note})
    return alert


def resolve(session: Session, alert_id: uuid.UUID, *, comment: str | None) -> Alert:
    """A person resolves it (open or acknowledged), saying how: the comment is required."""
    alert = _locked(session, alert_id)
    note = _comment(comment)
    if note is None:
        raise AlertRuleError("comment", "Say how the alert was resolved.")
    if alert.status == AlertStatus.RESOLVED:
        raise AlertRuleError("status", "This alert is resolved already.")
    ctx = context.current()
    before = _snapshot(alert)
    alert.status = AlertStatus.RESOLVED
    alert.resolved_by_id = ctx.actor_id
    alert.resolved_at = func.now()  # type: ignore[assignment]
    alert.resolution = note
    session.add(_event(alert, "resolved", actor_id=ctx.actor_id, comment=note))
    session.flush()
    session.refresh(alert)
    audit.record(session, "alert.resolve", object_type="alert", object_id=alert.id, before=before,
                 after=_snapshot(alert), details={"rule": alert.rule, "comment": note})
    return alert


# --- the periodic sweep ----------------------------------------------------------------------------

SWEEP_BATCH = 500


def process_unhandled(session: Session, *, settings: Any = None) -> int:
    """Handle alerts raised in SQL alone (no alert_events row: no "raised" event yet) as raise_alert
    would have, and clear denial bursts whose window passed without a new refused request from
    that user. Rows are claimed FOR UPDATE SKIP LOCKED, so two workers never handle one twice.
    Returns how many alerts it handled (raised + cleared)."""
    settings = settings or _settings()
    unhandled = list(session.scalars(
        select(Alert)
        .where(~exists().where(AlertEvent.alert_id == Alert.id))
        .order_by(Alert.created_at, Alert.id)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)))
    if unhandled:
        _on_new(session, unhandled)
    window = timedelta(minutes=settings.denial_alert_window_minutes)
    since = func.now() - window
    # CASE fixes the order: source_id is cast only when it is a UUID (PostgreSQL may otherwise
    # evaluate the cast before the rule test, on another rule's subject).
    actor = case((Alert.source_id.op("~*")(UUID_PATTERN), cast(Alert.source_id, PG_UUID(as_uuid=True))),
                 else_=None)
    recent_denial = exists().where(
        AuditLog.actor_id == actor,
        AuditLog.action == "access.denied", AuditLog.outcome == AuditOutcome.DENIED,
        AuditLog.created_at >= since)
    quiet = and_(Alert.rule == DENIAL_BURST, Alert.status.in_(ACTIVE), Alert.last_seen_at < since,
                 ~recent_denial)
    cleared = _auto_resolve(
        session, quiet,
        f"no refused request from this user for {settings.denial_alert_window_minutes} minutes")
    return len(unhandled) + len(cleared)


# --- queries for the pages ------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    items: list[Alert]
    next_cursor: Cursor | None


def get(session: Session, alert_id: uuid.UUID) -> Alert | None:
    return session.get(Alert, alert_id)


def history(session: Session, alert_id: uuid.UUID, limit: int = 200) -> list[AlertEvent]:
    """The alert's events, oldest first (bounded)."""
    return list(session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert_id)
                                .order_by(AlertEvent.created_at, AlertEvent.id).limit(limit)))


def list_alerts(session: Session, *, status: AlertStatus | str | None = None, severity: Severity | str | None = None,
                rule: str | None = None, after: Cursor | None = None, limit: int = PAGE_SIZE) -> Page:
    """One page of alerts, newest first (keyset on created_at, id: one statement).

    status: an AlertStatus, or "active" for open and acknowledged together; severity, rule: exact."""
    stmt = select(Alert)
    if status == "active":
        stmt = stmt.where(Alert.status.in_(ACTIVE))
    elif status:
        stmt = stmt.where(Alert.status == AlertStatus(status))
    if severity:
        stmt = stmt.where(Alert.severity == Severity(severity))
    if rule:
        stmt = stmt.where(Alert.rule == rule)
    if after is not None:
        stmt = stmt.where(or_(Alert.created_at < after.created_at,
                              and_(Alert.created_at == after.created_at, Alert.id < after.id)))
    limit = max(1, min(limit, 200))
    rows = list(session.scalars(stmt.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, Cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)


def open_count_query(cap: int = OPEN_COUNT_CAP) -> Any:
    """The scalar subquery counting open alerts up to `cap` (an index-only probe of
    ix_alerts_open_severity_created_at), for embedding in a combined statement."""
    capped = select(Alert.id).where(Alert.status == AlertStatus.OPEN).limit(cap).subquery()
    return select(func.count()).select_from(capped).scalar_subquery()


def open_count(session: Session, cap: int = OPEN_COUNT_CAP) -> int:
    """Open (not yet acknowledged) alerts, counted up to `cap` (the navigation shows "99+")."""
    return int(session.scalar(select(open_count_query(cap))) or 0)


def counts_by_status(session: Session) -> dict[AlertStatus, int]:
    """How many alerts have each status (one grouped statement; for the list's filter tabs)."""
    rows = session.execute(select(Alert.status, func.count()).group_by(Alert.status)).all()
    found: dict[AlertStatus, int] = {row[0]: int(row[1]) for row in rows}
    return {status: found.get(status, 0) for status in AlertStatus}


def is_active(alert: Alert) -> bool:
    return alert.status in ACTIVE

