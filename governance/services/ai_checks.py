"""The standard AI checks of an AI system: one probe of kind ai_system for the system with four
checks, each assessing the EU AI Act controls it is evidence for (docs/probes.md, "ai_system").

add_standard_checks is idempotent: called again it returns the system's existing AI-checks probe
and adds only the standard checks it lacks (a check counts as present when the probe has one with
the same rule, whatever it was renamed to). The probe and checks are made through
governance.services.probes (validated and audited there); the whole call is audited as
"ai_system.add_checks" on the system. Flushes, never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance.models.ai import AISystem
from governance.models.enums import Severity
from governance.models.frameworks import Control, Framework
from governance.models.identity import User
from governance.models.probes import Check, Probe
from governance.probes import ai_system as kind
from governance.services import audit, libraries
from governance.services import probes as probe_service

EU_AI_ACT_LIBRARY = "eu-ai-act"
EU_AI_ACT_TITLE = "EU AI Act"
EU_AI_ACT_VERSION = "2024/1689"
# Daily at 06:00 UTC: the checks read only our own database and one evaluation report.
SCHEDULE = "0 6 * * *"
PROBE_NAME = "AI checks \u2014 {name}"


@dataclass(frozen=True)
class StandardCheck:
    name: str
    description: str
    parameters: Mapping[str, Any]
    refs: tuple[str, ...]  # EU AI Act control ref_ids, the primary one first
    rule: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", str(self.parameters["rule"]))


STANDARD_CHECKS: tuple[StandardCheck, ...] = (
    StandardCheck(
        "Model card is current",
        "An approved, unexpired model card linked to the system, uploaded within 180 days.",
        {"rule": kind.MODEL_CARD, "max_age_days": kind.DEFAULT_MAX_AGE_DAYS},
        ("Article 11(1)", "Annex IV(1)"),
    ),
    StandardCheck(
        "Evaluation metric meets its threshold",
        "The newest approved evaluation report of the system has accuracy >= 0.9 (edit the field and "
        "threshold to the metric that matters for this system).",
        {"rule": kind.EVALUATION_METRIC, "field": "accuracy", "operator": ">=", "threshold": "0.9"},
        ("Article 15(3)", "Article 9(8)"),
    ),
    StandardCheck(
        "Human-oversight owner is assigned",
        "A live, active user answers for the system's human oversight.",
        {"rule": kind.OVERSIGHT_OWNER},
        ("Article 14(1)", "Article 26(2)"),
    ),
    StandardCheck(
        "Impact assessment approved before production",
        "A system in production has an approved impact assessment.",
        {"rule": kind.IMPACT_ASSESSMENT},
        ("Article 27(1)",),
    ),
)


class AIChecksError(ValueError):
    """A refused request; `field` names the form field the message belongs beside (or None)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def eu_ai_act_framework(session: Session) -> Framework:
    """The live EU AI Act framework, imported from the library first when it is not there."""
    framework = session.scalars(
        select(Framework).where(Framework.title == EU_AI_ACT_TITLE, Framework.version == EU_AI_ACT_VERSION,
                                Framework.deleted_at.is_(None)).limit(1)
    ).one_or_none()
    if framework is None:
        framework = libraries.load_library(session, EU_AI_ACT_LIBRARY).framework
    return framework


def _controls(session: Session, framework: Framework) -> dict[str, uuid.UUID]:
    refs = {ref for check in STANDARD_CHECKS for ref in check.refs}
    return dict(session.execute(
        select(Control.ref_id, Control.id)
        .where(Control.framework_id == framework.id, Control.ref_id.in_(refs), Control.deleted_at.is_(None))
    ).all())


def ai_checks_probe(session: Session, system_id: uuid.UUID) -> Probe | None:
    """The system's AI-checks probe (the oldest one of kind ai_system for it), if it has one."""
    return session.scalars(
        select(Probe).where(Probe.ai_system_id == system_id, Probe.kind == kind.KIND.name)
        .order_by(Probe.created_at, Probe.id).limit(1)
    ).one_or_none()


def _free_name(wanted: str, taken: Callable[[str], bool]) -> str:
    """wanted, or wanted with a number (" (2)", " (3)" …) when that name is taken."""
    base = wanted[: probe_service.NAME_MAX]
    candidate, n = base, 1
    while taken(candidate):
        n += 1
        suffix = f" ({n})"
        candidate = base[: probe_service.NAME_MAX - len(suffix)] + suffix
    return candidate


def _probe_name_taken(session: Session) -> Callable[[str], bool]:
    def taken(name: str) -> bool:
        return session.scalar(select(Probe.id).where(func.lower(Probe.name) == name.lower()).limit(1)) is not None
    return taken


def _live_owner(session: Session, user_id: uuid.UUID | None) -> uuid.UUID | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    return user_id if user is not None and user.deleted_at is None and user.is_active else None


def add_standard_checks(session: Session, system_id: uuid.UUID, *, severity: Severity = Severity.HIGH) -> Probe:
    """The system's AI-checks probe with the four standard checks (made or completed); see the module doc."""
    system = session.scalars(
        # Locked: two concurrent calls for one system make one probe.
        select(AISystem).where(AISystem.id == system_id, AISystem.deleted_at.is_(None)).with_for_update()
    ).one_or_none()
    if system is None:
        raise AIChecksError(None, "That AI system does not exist (any more).")
    framework = eu_ai_act_framework(session)
    controls = _controls(session, framework)

    probe = ai_checks_probe(session, system.id)
    created = probe is None
    if probe is None:
        probe = probe_service.create_probe(
            session, name=_free_name(PROBE_NAME.format(name=system.name), _probe_name_taken(session)),
            kind=kind.KIND.name,
            description=f"The standard AI checks of the AI system {system.name}.", config={},
            schedule=SCHEDULE, owner_id=_live_owner(session, system.owner_id), enabled=True)
        probe.ai_system_id = system.id
        session.flush()

    existing = list(session.scalars(select(Check).where(Check.probe_id == probe.id)))
    present_rules = {str((c.parameters or {}).get("rule")) for c in existing}
    names = {c.name for c in existing}
    added: list[dict[str, Any]] = []
    for standard in STANDARD_CHECKS:
        if standard.rule in present_rules:
            continue
        control_ids = [controls[ref] for ref in standard.refs if ref in controls]
        if not control_ids:
            raise AIChecksError(None, f"The {EU_AI_ACT_TITLE} controls {', '.join(standard.refs)} do not exist "
                                      f"(any more): the check \u201c{standard.name}\u201d has nothing to assess.")
        name = _free_name(standard.name, names.__contains__)
        names.add(name)
        check = probe_service.create_check(
            session, probe, name=name, description=standard.description, severity=severity,
            control_ids=control_ids, parameters=dict(standard.parameters))
        added.append({"check_id": check.id, "name": check.name, "rule": standard.rule,
                      "controls": [ref for ref in standard.refs if ref in controls]})
    if created or added:
        audit.record(session, "ai_system.add_checks", object_type="ai_system", object_id=system.id,
                     after={"probe_id": probe.id, "checks": added},
                     details={"probe": probe.name, "probe_created": created, "severity": severity})
    return probe
