"""Probes and checks: create and change them with configuration validated by their kind, enable and
disable, attest a manual_attestation check; and the reads behind the probe, check and control pages.

Each change validates, flushes (never commits) and writes its audit entry with before/after in the
caller's transaction. A probe's configuration may hold secrets (a DSN with a password, a token):
audit entries and pages only ever see the kind's public view of it (public_config), never the
stored values. Running a probe is governance.services.probe_runs' business; "run now" and an
attestation ask it for a run.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, tuple_
from sqlalchemy.orm import Session, joinedload, selectinload

from governance import probes as kinds
from governance.models.enums import CheckStatus, ResultOutcome, Severity
from governance.models.frameworks import Control, Framework
from governance.models.identity import User
from governance.models.probes import Attestation, Check, CheckControl, Probe, ProbeRun, Result
from governance.services import audit, probe_runs, scoring

NAME_MAX = 255
DESCRIPTION_MAX = 10_000
SCHEDULE_MAX = 128
COMMENT_MAX = 10_000
MAX_CONTROLS_PER_CHECK = 50
CONTROL_CHOICES_LIMIT = 20
MANUAL_ATTESTATION = "manual_attestation"
ATTESTER_PARAMETER = "attester_id"
ATTESTATION_OUTCOMES = (ResultOutcome.COMPLIANT, ResultOutcome.PARTIAL, ResultOutcome.NON_COMPLIANT)
MASK = "••••••"
# Configuration fields treated as secret when a kind does not say itself (no public_config).
_SECRET_NAME = re.compile(r"password|secret|token|dsn|api_key|authorization|credential", re.I)


class ProbeServiceError(ValueError):
    """A refused change; `field` names the form field the message belongs beside (or None);
    `status` is what the web layer answers with (422 for input, 409 for a refused state)."""

    def __init__(self, field: str | None, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


# --- kinds, schedules, secrets ----------------------------------------------------------------------


def kind_of(name: str) -> kinds.ProbeKind:
    """The registered kind, or ProbeServiceError beside the kind field."""
    try:
        return kinds.get(name)
    except kinds.ConfigError:
        raise ProbeServiceError("kind", "Choose one of the listed probe kinds.") from None


def validate_schedule(raw: str | None) -> str | None:
    """A cron expression (five fields, UTC), or None for "manual runs only"."""
    schedule = " ".join((raw or "").split())
    if not schedule:
        return None
    if len(schedule) > SCHEDULE_MAX:
        raise ProbeServiceError("schedule", f"Keep the schedule to {SCHEDULE_MAX} characters.")
    try:
        return probe_runs.validate_cron(schedule)
    except kinds.ConfigError as exc:
        raise ProbeServiceError("schedule", exc.message) from None


def next_run_at(schedule: str | None, enabled: bool, now: datetime | None = None) -> datetime | None:
    """When the scheduler should run the probe next: never while disabled or unscheduled."""
    if not enabled or not schedule:
        return None
    return probe_runs.next_run(schedule, now or datetime.now(UTC))


def secret_fields(kind: kinds.ProbeKind) -> frozenset[str]:
    """The config fields that hold (or may hold) secrets: never echoed back into a new form, and
    masked on pages and in audit entries."""
    declared = getattr(kind, "secret_fields", None)
    if declared is not None:
        return frozenset(declared)
    return frozenset(name for name, *_rest in kind.config_fields if _SECRET_NAME.search(name))


def password_fields(kind: kinds.ProbeKind) -> frozenset[str]:
    """Secret fields that are wholly secret (a password, a token): password inputs, always empty.
    The others (a DSN, headers) are shown in their masked form."""
    return frozenset(name for name in secret_fields(kind) if re.search(r"password|secret|token", name, re.I))


def public_config(kind: kinds.ProbeKind, config: Mapping[str, Any]) -> dict[str, Any]:
    """What pages and audit entries may show of a configuration: the kind's public view (it masks
    what is secret inside a value, e.g. the password in a DSN); a kind without one gets its secret
    fields masked whole."""
    own = getattr(kind, "public_config", None)
    if callable(own):
        return dict(own(config))
    shown = dict(config)
    for name in secret_fields(kind):
        if shown.get(name) not in (None, ""):
            shown[name] = MASK
    return shown


def _public_config_safe(kind_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    try:
        kind = kinds.get(kind_name)
    except kinds.ConfigError:  # a plug-in kind since removed: show no values at all
        return dict.fromkeys(config, MASK)
    return public_config(kind, config)


def config_as_form(kind: kinds.ProbeKind, config: Mapping[str, Any]) -> dict[str, str]:
    """The stored configuration as the edit form's text values: the public (masked) view, password
    fields empty. Saving it back keeps what is masked (restore_secrets)."""
    shown = public_config(kind, config)
    blank = password_fields(kind)
    return {name: "" if name in blank else as_text(shown.get(name)) for name, *_rest in kind.config_fields}


def parameters_as_form(kind: kinds.ProbeKind, parameters: Mapping[str, Any]) -> dict[str, str]:
    return {name: as_text(parameters.get(name)) for name, *_rest in kind.parameter_fields}


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _validated(validate: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    try:
        clean = validate(values)
    except kinds.ConfigError as exc:
        raise ProbeServiceError(exc.field, exc.message) from None
    return dict(clean)


# --- probes ---------------------------------------------------------------------------------------


def probe_snapshot(probe: Probe) -> dict[str, Any]:
    return {
        "name": probe.name, "kind": probe.kind, "description": probe.description,
        "config": _public_config_safe(probe.kind, probe.config or {}), "schedule": probe.schedule,
        "owner_id": probe.owner_id, "enabled": bool(probe.enabled),
    }


def _clean_name(raw: str | None, label: str = "probe") -> str:
    name = " ".join((raw or "").split())
    if not name:
        raise ProbeServiceError("name", f"Enter a name for the {label}.")
    if len(name) > NAME_MAX:
        raise ProbeServiceError("name", f"Keep the name to {NAME_MAX} characters.")
    return name


def _clean_description(raw: str | None) -> str | None:
    description = (raw or "").strip() or None
    if description and len(description) > DESCRIPTION_MAX:
        raise ProbeServiceError("description", f"Keep the description to {DESCRIPTION_MAX:,} characters.")
    return description


def _check_owner(session: Session, owner_id: uuid.UUID | None, field: str = "owner_id") -> None:
    if owner_id is None:
        return
    user = session.get(User, owner_id)
    if user is None or user.deleted_at is not None or not user.is_active:
        raise ProbeServiceError(field, "Choose an active user.")


def _name_taken(session: Session, name: str, probe_id: uuid.UUID | None) -> bool:
    stmt = select(Probe.id).where(func.lower(Probe.name) == name.lower())
    if probe_id is not None:
        stmt = stmt.where(Probe.id != probe_id)
    return session.scalar(stmt.limit(1)) is not None


def _edited_config(kind: kinds.ProbeKind, config: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration edited from its public form: validated, then what is still masked or left
    empty gets its stored secret back (the kind's restore_secrets; without one, an empty secret
    field keeps the stored value)."""
    restore = getattr(kind, "restore_secrets", None)
    if callable(restore):
        return dict(restore(_validated(kind.validate_config, config), stored))
    merged = dict(config)
    for name in secret_fields(kind):
        if not str(merged.get(name) or "").strip() and stored.get(name) not in (None, ""):
            merged[name] = as_text(stored[name])
    return _validated(kind.validate_config, merged)


def create_probe(
    session: Session, *, name: str | None, kind: str | None, description: str | None,
    config: Mapping[str, Any], schedule: str | None, owner_id: uuid.UUID | None, enabled: bool,
) -> Probe:
    probe_kind = kind_of(kind or "")
    clean_name = _clean_name(name)
    clean_description = _clean_description(description)
    clean_config = _validated(probe_kind.validate_config, config)
    clean_schedule = validate_schedule(schedule)
    _check_owner(session, owner_id)
    if _name_taken(session, clean_name, None):
        raise ProbeServiceError("name", "Another probe already has this name.")
    probe = Probe(
        name=clean_name, kind=probe_kind.name, description=clean_description, config=clean_config,
        schedule=clean_schedule, owner_id=owner_id, enabled=bool(enabled),
        next_run_at=next_run_at(clean_schedule, bool(enabled)),
    )
    session.add(probe)
    session.flush()
    audit.record(session, "probe.create", object_type="probe", object_id=probe.id, after=probe_snapshot(probe))
    return probe


def update_probe(
    session: Session, probe: Probe, *, name: str | None, description: str | None,
    config: Mapping[str, Any], schedule: str | None, owner_id: uuid.UUID | None,
    enabled: bool | None = None,
) -> bool:
    """Apply the edits (the kind is fixed: the checks' parameters belong to it). Returns whether
    anything changed; nothing changed is not audited."""
    probe_kind = kind_of(probe.kind)
    clean_name = _clean_name(name)
    clean_description = _clean_description(description)
    clean_config = _edited_config(probe_kind, config, probe.config or {})
    clean_schedule = validate_schedule(schedule)
    _check_owner(session, owner_id)
    if _name_taken(session, clean_name, probe.id):
        raise ProbeServiceError("name", "Another probe already has this name.")
    before = probe_snapshot(probe)
    new_enabled = probe.enabled if enabled is None else bool(enabled)
    changed = (clean_name != probe.name or clean_description != probe.description
               or clean_config != (probe.config or {}) or clean_schedule != probe.schedule
               or owner_id != probe.owner_id or new_enabled != probe.enabled)
    if not changed:
        return False
    schedule_changed = clean_schedule != probe.schedule or new_enabled != probe.enabled
    stored = probe.config or {}
    # Which secrets were set anew: named in the entry, their values never.
    secrets_changed = sorted(n for n in secret_fields(probe_kind) if stored.get(n) != clean_config.get(n))
    probe.name, probe.description, probe.config = clean_name, clean_description, clean_config
    probe.schedule, probe.owner_id, probe.enabled = clean_schedule, owner_id, new_enabled
    if schedule_changed:
        probe.next_run_at = next_run_at(clean_schedule, new_enabled)
    session.flush()
    after = probe_snapshot(probe)
    details: dict[str, Any] = {"secrets_changed": secrets_changed} if secrets_changed else {}
    audit.record(session, "probe.update", object_type="probe", object_id=probe.id,
                 before=_changed_only(before, after), after=_changed_only(after, before), details=details)
    return True


def _changed_only(side: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in side.items() if other.get(k) != v}


def set_enabled(session: Session, probe: Probe, enabled: bool) -> bool:
    """Enable or disable the probe (its schedule stops or starts again). Returns whether it changed."""
    if bool(probe.enabled) == bool(enabled):
        return False
    before = {"enabled": bool(probe.enabled), "next_run_at": probe.next_run_at}
    probe.enabled = bool(enabled)
    probe.next_run_at = next_run_at(probe.schedule, probe.enabled)
    session.flush()
    audit.record(session, "probe.enable" if enabled else "probe.disable", object_type="probe",
                 object_id=probe.id, before=before,
                 after={"enabled": probe.enabled, "next_run_at": probe.next_run_at})
    return True


def run_now(session: Session, probe: Probe, *, requested_by_id: uuid.UUID | None) -> probe_runs.RunRequest:
    """Queue a manual run, or join the one already queued (probe_runs audits it as probe.run)."""
    if not probe.enabled:
        raise ProbeServiceError(None, "This probe is disabled: enable it to run it.", status=409)
    try:
        return probe_runs.submit_run(session, probe, trigger="manual", requested_by_id=requested_by_id)
    except probe_runs.RunRefused as exc:
        raise ProbeServiceError(None, exc.message, status=409) from None


# --- checks ---------------------------------------------------------------------------------------


def check_snapshot(check: Check, control_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    return {
        "name": check.name, "description": check.description, "severity": check.severity,
        "status": check.status, "parameters": dict(check.parameters or {}),
        "control_ids": [str(c) for c in control_ids],
    }


def _clean_severity(raw: str | Severity | None) -> Severity:
    try:
        return Severity(raw or "")
    except ValueError:
        raise ProbeServiceError("severity", "Choose a severity.") from None


def _clean_controls(session: Session, control_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    ordered = list(dict.fromkeys(control_ids))
    if not ordered:
        raise ProbeServiceError("control_ids", "Choose at least one control the check assesses.")
    if len(ordered) > MAX_CONTROLS_PER_CHECK:
        raise ProbeServiceError("control_ids", f"A check may assess at most {MAX_CONTROLS_PER_CHECK} controls.")
    live = set(session.scalars(
        select(Control.id).join(Framework, Framework.id == Control.framework_id)
        .where(Control.id.in_(ordered), Control.deleted_at.is_(None), Framework.deleted_at.is_(None))
    ))
    if len(live) != len(ordered):
        raise ProbeServiceError("control_ids", "One of the chosen controls does not exist (any more).")
    return ordered


def _clean_parameters(session: Session, kind: kinds.ProbeKind, parameters: Mapping[str, Any]) -> dict[str, Any]:
    clean = _validated(kind.validate_parameters, parameters)
    attester = clean.get(ATTESTER_PARAMETER)
    if attester is not None:
        try:
            attester_id = uuid.UUID(str(attester))
        except ValueError:
            raise ProbeServiceError(ATTESTER_PARAMETER, "Choose the person who attests.") from None
        _check_owner(session, attester_id, ATTESTER_PARAMETER)
    return clean


def _check_name_taken(session: Session, probe_id: uuid.UUID, name: str, check_id: uuid.UUID | None) -> bool:
    stmt = select(Check.id).where(Check.probe_id == probe_id, Check.name == name)
    if check_id is not None:
        stmt = stmt.where(Check.id != check_id)
    return session.scalar(stmt.limit(1)) is not None


def check_control_ids(session: Session, check: Check) -> list[uuid.UUID]:
    """The check's controls, the primary one first."""
    others = session.scalars(
        select(CheckControl.control_id).where(CheckControl.check_id == check.id,
                                              CheckControl.control_id != check.control_id)
        .order_by(CheckControl.control_id)
    ).all()
    return [check.control_id, *others]


def create_check(
    session: Session, probe: Probe, *, name: str | None, description: str | None,
    severity: str | Severity | None, control_ids: Sequence[uuid.UUID], parameters: Mapping[str, Any],
) -> Check:
    kind = kind_of(probe.kind)
    clean_name = _clean_name(name, "check")
    clean_description = _clean_description(description)
    clean_severity = _clean_severity(severity)
    controls = _clean_controls(session, control_ids)
    clean_parameters = _clean_parameters(session, kind, parameters)
    if _check_name_taken(session, probe.id, clean_name, None):
        raise ProbeServiceError("name", "This probe already has a check with this name.")
    check = Check(probe_id=probe.id, control_id=controls[0], name=clean_name, description=clean_description,
                  severity=clean_severity, parameters=clean_parameters, status=CheckStatus.ACTIVE)
    session.add(check)
    session.flush()
    session.execute(insert(CheckControl), [{"check_id": check.id, "control_id": c} for c in controls])
    audit.record(session, "check.create", object_type="check", object_id=check.id,
                 after=check_snapshot(check, controls), details={"probe_id": probe.id, "probe": probe.name})
    _controls_changed(session, set(controls))
    return check


def update_check(
    session: Session, check: Check, *, name: str | None, description: str | None,
    severity: str | Severity | None, control_ids: Sequence[uuid.UUID], parameters: Mapping[str, Any],
) -> bool:
    """Apply the edits; returns whether anything changed (nothing changed is not audited)."""
    probe = check.probe
    kind = kind_of(probe.kind)
    clean_name = _clean_name(name, "check")
    clean_description = _clean_description(description)
    clean_severity = _clean_severity(severity)
    controls = _clean_controls(session, control_ids)
    clean_parameters = _clean_parameters(session, kind, parameters)
    if _check_name_taken(session, probe.id, clean_name, check.id):
        raise ProbeServiceError("name", "This probe already has a check with this name.")
    old_controls = check_control_ids(session, check)
    before = check_snapshot(check, old_controls)
    if (clean_name, clean_description, clean_severity, clean_parameters, controls) == (
            check.name, check.description, check.severity, dict(check.parameters or {}), old_controls):
        return False
    check.name, check.description, check.severity = clean_name, clean_description, clean_severity
    check.parameters, check.control_id = clean_parameters, controls[0]
    removed = set(old_controls) - set(controls)
    added = [c for c in controls if c not in old_controls]
    if removed:
        session.execute(delete(CheckControl).where(CheckControl.check_id == check.id,
                                                   CheckControl.control_id.in_(removed)))
    if added:
        session.execute(insert(CheckControl), [{"check_id": check.id, "control_id": c} for c in added])
    session.flush()
    after = check_snapshot(check, controls)
    audit.record(session, "check.update", object_type="check", object_id=check.id,
                 before=_changed_only(before, after), after=_changed_only(after, before),
                 details={"probe_id": probe.id})
    _controls_changed(session, removed | set(added))
    return True


def set_check_enabled(session: Session, check: Check, enabled: bool) -> bool:
    status = CheckStatus.ACTIVE if enabled else CheckStatus.DISABLED
    if check.status == status:
        return False
    before = {"status": check.status}
    check.status = status
    session.flush()
    audit.record(session, "check.enable" if enabled else "check.disable", object_type="check",
                 object_id=check.id, before=before, after={"status": status}, details={"probe_id": check.probe_id})
    _controls_changed(session, set(check_control_ids(session, check)))
    return True


def _controls_changed(session: Session, control_ids: set[uuid.UUID]) -> None:
    """A control gained or lost a check (or a check was switched off): its score changes."""
    if control_ids:
        scoring.on_controls_changed(session, sorted(control_ids))


# --- attestation ----------------------------------------------------------------------------------


def attester_id(check: Check) -> uuid.UUID | None:
    raw = (check.parameters or {}).get(ATTESTER_PARAMETER)
    try:
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


def may_attest(check: Check, probe: Probe, user_id: uuid.UUID | None) -> bool:
    return probe.kind == MANUAL_ATTESTATION and user_id is not None and attester_id(check) == user_id


def attest(session: Session, check: Check, *, user: User, outcome: str | None, comment: str | None) -> Attestation:
    """The named attester states the check's outcome with a comment; a run of the probe follows so
    the statement becomes the check's result (and counts in the scores)."""
    probe = check.probe
    if probe.kind != MANUAL_ATTESTATION:
        raise ProbeServiceError(None, "Only manual attestation checks take attestations.", status=409)
    if attester_id(check) != user.id:
        raise ProbeServiceError(None, "Only the person named on this check may attest it.", status=409)
    if check.status != CheckStatus.ACTIVE or not probe.enabled:
        raise ProbeServiceError(None, "This check is disabled: it takes no attestations now.", status=409)
    try:
        clean_outcome = ResultOutcome(outcome or "")
    except ValueError:
        clean_outcome = None  # type: ignore[assignment]
    if clean_outcome not in ATTESTATION_OUTCOMES:
        raise ProbeServiceError("outcome", "Choose compliant, partial or non-compliant.")
    text = (comment or "").strip()
    if not text:
        raise ProbeServiceError("comment", "Say what you checked: a comment is required.")
    if len(text) > COMMENT_MAX:
        raise ProbeServiceError("comment", f"Keep the comment to {COMMENT_MAX:,} characters.")
    attestation = Attestation(check_id=check.id, attested_by_id=user.id, outcome=clean_outcome, comment=text)
    session.add(attestation)
    session.flush()
    audit.record(session, "check.attest", object_type="check", object_id=check.id,
                 after={"outcome": clean_outcome, "comment": text},
                 details={"attestation_id": attestation.id, "probe_id": probe.id})
    # RunRefused: a run is already waiting in the queue, and it reads this attestation when it starts.
    with contextlib.suppress(probe_runs.RunRefused):
        probe_runs.request_run(session, probe, trigger="manual", requested_by_id=user.id)
    session.flush()
    return attestation


# --- reads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeRow:
    probe: Probe
    last_run: ProbeRun | None
    check_count: int


def list_probes(
    session: Session, *, after: str | None = None, limit: int = 50,
) -> tuple[list[ProbeRow], str | None]:
    """Probes by name (keyset on name, which is unique), each with its owner, its latest run and
    its number of checks: one statement."""
    latest = (
        select(ProbeRun.id)
        .where(ProbeRun.probe_id == Probe.id)
        .order_by(ProbeRun.created_at.desc(), ProbeRun.id.desc())
        .limit(1)
        .correlate(Probe)
        .scalar_subquery()
    )
    checks = select(func.count()).where(Check.probe_id == Probe.id).correlate(Probe).scalar_subquery()
    stmt = (
        select(Probe, ProbeRun, checks)
        .outerjoin(ProbeRun, ProbeRun.id == latest)
        .options(joinedload(Probe.owner))
        .order_by(Probe.name)
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(Probe.name > after)
    rows = [ProbeRow(p, r, int(n)) for p, r, n in session.execute(stmt).unique().all()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].probe.name if more and rows else None)


def get_probe(session: Session, probe_id: uuid.UUID) -> Probe | None:
    return session.scalars(
        select(Probe).where(Probe.id == probe_id).options(joinedload(Probe.owner))
    ).one_or_none()


def get_check(session: Session, check_id: uuid.UUID) -> Check | None:
    return session.scalars(
        select(Check).where(Check.id == check_id)
        .options(joinedload(Check.probe).joinedload(Probe.owner), selectinload(Check.controls)
                 .joinedload(Control.framework))
    ).one_or_none()


def probe_checks(session: Session, probe_id: uuid.UUID) -> list[Check]:
    """The probe's checks with their controls (two statements)."""
    return list(session.scalars(
        select(Check).where(Check.probe_id == probe_id)
        .options(selectinload(Check.controls))
        .order_by(Check.name)
    ))


def recent_runs(session: Session, probe_id: uuid.UUID, limit: int = 10) -> list[ProbeRun]:
    return list(session.scalars(
        select(ProbeRun).where(ProbeRun.probe_id == probe_id)
        .order_by(ProbeRun.created_at.desc(), ProbeRun.id.desc()).limit(limit)
    ))


def get_run(session: Session, probe_id: uuid.UUID, run_id: uuid.UUID) -> ProbeRun | None:
    run = session.get(ProbeRun, run_id)
    return run if run is not None and run.probe_id == probe_id else None


def check_results(
    session: Session, check_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None = None, limit: int = 50,
) -> tuple[list[Result], tuple[datetime, uuid.UUID] | None]:
    """The check's results newest first, keyset on (created_at, id) (ix_results_check_id_created_at)."""
    stmt = (
        select(Result).where(Result.check_id == check_id)
        .order_by(Result.created_at.desc(), Result.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(tuple_(Result.created_at, Result.id) < tuple_(*after))
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].created_at, rows[-1].id) if more and rows else None)


def recent_attestations(session: Session, check_id: uuid.UUID, limit: int = 10) -> list[Attestation]:
    return list(session.scalars(
        select(Attestation).where(Attestation.check_id == check_id)
        .options(joinedload(Attestation.attested_by))
        .order_by(Attestation.created_at.desc(), Attestation.id.desc()).limit(limit)
    ))


@dataclass(frozen=True)
class ControlCheckRow:
    check: Check
    probe: Probe


CONTROL_CHECKS_LIMIT = 50


def control_checks(
    session: Session, control_id: uuid.UUID, *, limit: int = CONTROL_CHECKS_LIMIT,
) -> tuple[list[ControlCheckRow], int]:
    """The checks assessing a control (through check_controls) with their probes and latest
    outcomes (kept on the check by the run engine: no scan of results), by name, at most `limit`,
    and how many there are: one statement."""
    total = func.count().over()
    rows = session.execute(
        select(Check, Probe, total)
        .join(CheckControl, CheckControl.check_id == Check.id)
        .join(Probe, Probe.id == Check.probe_id)
        .where(CheckControl.control_id == control_id)
        .order_by(Check.name, Check.id)
        .limit(limit)
    ).all()
    count = int(rows[0][2]) if rows else 0
    return [ControlCheckRow(c, p) for c, p, _n in rows], count


def active_users(session: Session, limit: int = 500) -> list[User]:
    return list(session.scalars(
        select(User).where(User.deleted_at.is_(None), User.is_active.is_(True))
        .order_by(User.name, User.email).limit(limit)
    ))


def users_by_id(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, User]:
    if not ids:
        return {}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}


def controls_by_id(session: Session, ids: Sequence[uuid.UUID]) -> list[Control]:
    """Live controls in the order given (the chosen ones of a check form)."""
    if not ids:
        return []
    found = {c.id: c for c in session.scalars(
        select(Control).where(Control.id.in_(list(ids)), Control.deleted_at.is_(None))
        .options(joinedload(Control.framework)))}
    return [found[i] for i in ids if i in found]


def control_choices(session: Session, q: str, *, exclude: Sequence[uuid.UUID] = ()) -> list[Control]:
    """Live controls whose identifier starts with q or whose title and text have q's words as
    prefixes, at most CONTROL_CHOICES_LIMIT; nothing for an empty query."""
    q = (q or "").replace("\x00", " ").strip()[:200]
    words = re.findall(r"\w+", q)[:8]
    if not q:
        return []
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    by_ref = Control.ref_id.ilike(escaped + "%", escape="\\")
    conditions = [by_ref]
    if words:
        query = " & ".join(f"{w}:*" for w in words)
        conditions.append(Control.search.bool_op("@@")(func.to_tsquery("english", query)))
    stmt = (
        select(Control).join(Framework, Framework.id == Control.framework_id)
        .where(Control.deleted_at.is_(None), Framework.deleted_at.is_(None), or_(*conditions))
        .options(joinedload(Control.framework))
        .order_by(Framework.title, Control.sort_order, Control.ref_id)
        .limit(CONTROL_CHOICES_LIMIT)
    )
    if exclude:
        stmt = stmt.where(Control.id.not_in(list(exclude)))
    return list(session.scalars(stmt))
