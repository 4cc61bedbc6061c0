"""ai_system: the AI checks of one AI system (docs/probes.md, "ai_system").

A check's `rule` says what it verifies of its system (`system`, default: the AI system its probe
checks, probes.ai_system_id):

- model_card: a live model card (evidence of category model_card linked to the system through
  evidence_links.ai_system_id), approved, not expired, whose current revision was uploaded within
  max_age_days (default 180);
- evaluation_metric: a number read from the system's newest approved, unexpired evaluation report
  (field / row / operator / threshold, read as metric_threshold reads evidence) meets the threshold;
  no such report is non-compliance, a report the field cannot be read from an `error`;
- oversight_owner: someone (a live, active user) answers for the system's human oversight;
- impact_assessment: a system in production has an approved impact assessment (a system not in
  production passes, and the message says so).

An unknown or deleted system is an `error` for its checks. All checks of a run are answered by a
few grouped queries (the probe's system, the systems, then one or two per rule in use), whatever
the number of checks; each evaluation report is read from the store once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, case, cast, func, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, distinct_on

from governance.models.ai import AISystem, ImpactAssessment
from governance.models.enums import (
    AILifecycleStage,
    AssessmentStatus,
    EvidenceCategory,
    EvidenceStatus,
    ResultOutcome,
)
from governance.models.evidence import Evidence, EvidenceLink, EvidenceRevision
from governance.models.identity import User
from governance.models.probes import Probe
from governance.probes import CheckSpec, ConfigError, Observation, RunContext, TransientProbeError, register
from governance.probes import _util as u
from governance.probes import metric_threshold as metric

MODEL_CARD = "model_card"
EVALUATION_METRIC = "evaluation_metric"
OVERSIGHT_OWNER = "oversight_owner"
IMPACT_ASSESSMENT = "impact_assessment"
RULES = (MODEL_CARD, EVALUATION_METRIC, OVERSIGHT_OWNER, IMPACT_ASSESSMENT)
DEFAULT_MAX_AGE_DAYS = 180
MAX_AGE_LIMIT = 3650


@dataclass(frozen=True)
class _System:
    id: uuid.UUID
    name: str
    stage: AILifecycleStage
    oversight_owner_id: uuid.UUID | None
    oversight_owner_name: str | None  # None: no owner, or not a live active user


@dataclass(frozen=True)
class _Report:
    evidence_id: uuid.UUID
    name: str
    number: int
    bucket: str
    key: str
    version_id: str | None
    filename: str
    content_type: str


def _stage_text(stage: AILifecycleStage) -> str:
    return stage.value.replace("_", " ")


class AISystemChecks:
    name = "ai_system"
    label = "AI system checks"
    description = ("An AI system has a fresh model card, meets an evaluation metric, has a human-oversight owner, "
                   "and has an approved impact assessment before production.")
    config_fields: u.Fields = ()
    parameter_fields: u.Fields = (
        ("rule", "Rule", "model_card, evaluation_metric, oversight_owner or impact_assessment.", True),
        ("system", "AI system id", "Default: the AI system the probe checks.", False),
        ("max_age_days", "Maximum age (days)", "model_card: a model card uploaded longer ago is stale; "
                                               "default 180.", False),
        ("format", "Format", "evaluation_metric: json or csv; default from the report's file name.", False),
        ("field", "Field", "evaluation_metric: a dotted JSON path such as metrics.accuracy, or a CSV column.",
         False),
        ("row", "Row (CSV)", "evaluation_metric: optional column=value selecting the last matching row.", False),
        ("operator", "Operator", "evaluation_metric: one of >=, <=, >, <, ==.", False),
        ("threshold", "Threshold", "evaluation_metric: a number, e.g. 0.9.", False),
    )
    secret_fields: tuple[str, ...] = ()

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        rule = u.choice_value(parameters, "rule", RULES, required=True)
        clean: dict[str, Any] = {"rule": rule}
        system = u.uuid_value(parameters, "system", required=False)
        if system is not None:
            clean["system"] = system
        if rule == MODEL_CARD:
            days = u.int_value(parameters, "max_age_days", minimum=1, maximum=MAX_AGE_LIMIT)
            if days is not None:
                clean["max_age_days"] = days
        elif rule == EVALUATION_METRIC:
            fmt = u.choice_value(parameters, "format", metric.FORMATS)
            if fmt is not None:
                clean["format"] = fmt
            for name in ("field", "operator", "threshold"):
                if u.blank(parameters.get(name)):
                    raise ConfigError(name, "Required for the evaluation_metric rule.")
            clean.update(metric.reading_parameters(parameters, fmt))
        return clean

    def public_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def restore_secrets(self, config: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    # --- run ---------------------------------------------------------------------------------------

    def run(self, ctx: RunContext, config: Mapping[str, Any], checks: list[CheckSpec]) -> list[Observation]:
        if not checks:
            return []
        targets = self._targets(ctx, checks)
        systems = self._systems(ctx, {s for s in targets.values() if s is not None})
        by_rule: dict[str, set[uuid.UUID]] = {}
        for check in checks:
            system_id = targets[check.id]
            if system_id in systems:
                by_rule.setdefault(str(check.parameters.get("rule")), set()).add(system_id)
        cards = self._model_cards(ctx, by_rule.get(MODEL_CARD, set()))
        reports = self._reports(ctx, by_rule.get(EVALUATION_METRIC, set()))
        assessments = self._assessments(ctx, by_rule.get(IMPACT_ASSESSMENT, set()))
        documents: dict[uuid.UUID, bytes | metric.ReadFailed] = {}

        observations: list[Observation] = []
        transient: list[str] = []
        for check in checks:
            system_id = targets[check.id]
            rule = str(check.parameters.get("rule"))
            if system_id is None:
                observations.append(Observation(
                    check.id, ResultOutcome.ERROR, expected={"rule": rule},
                    message="The check names no AI system and its probe checks none: set the system."))
                continue
            system = systems.get(system_id)
            if system is None:
                observations.append(Observation(
                    check.id, ResultOutcome.ERROR, expected={"rule": rule}, resource=f"ai_system:{system_id}",
                    message=f"AI system {system_id} does not exist (any more)."))
                continue
            if rule == MODEL_CARD:
                observations.append(self._model_card(ctx.now, check, system, cards.get(system.id)))
            elif rule == EVALUATION_METRIC:
                observation, failure = self._evaluation(ctx, check, system, reports.get(system.id), documents)
                observations.append(observation)
                if failure:
                    transient.append(failure)
            elif rule == OVERSIGHT_OWNER:
                observations.append(self._oversight(check, system))
            elif rule == IMPACT_ASSESSMENT:
                observations.append(self._impact(check, system, assessments.get(system.id)))
            else:
                observations.append(Observation(check.id, ResultOutcome.ERROR, resource=system.name,
                                                message=f"Unknown rule {rule!r}: edit the check."))
        if len(transient) == len(checks):
            raise TransientProbeError(f"{len(transient)} of {len(checks)} checks could not read their evaluation "
                                      f"report; first: {transient[0]}")
        return observations

    # --- queries -----------------------------------------------------------------------------------

    @staticmethod
    def _targets(ctx: RunContext, checks: list[CheckSpec]) -> dict[uuid.UUID, uuid.UUID | None]:
        """Each check's system: its own parameter, else the probe's (read only when needed)."""
        targets: dict[uuid.UUID, uuid.UUID | None] = {}
        probe_system: uuid.UUID | None = None
        probe_read = False
        for check in checks:
            raw = check.parameters.get("system")
            if not u.blank(raw):
                try:
                    targets[check.id] = uuid.UUID(str(raw))
                    continue
                except ValueError:
                    pass
            if not probe_read:
                probe_system = ctx.session.scalar(select(Probe.ai_system_id).where(Probe.id == ctx.probe_id))
                probe_read = True
            targets[check.id] = probe_system
        return targets

    @staticmethod
    def _systems(ctx: RunContext, ids: set[uuid.UUID]) -> dict[uuid.UUID, _System]:
        """The live systems among ids, with their oversight owner if that is a live, active user."""
        if not ids:
            return {}
        rows = ctx.session.execute(
            select(AISystem.id, AISystem.name, AISystem.lifecycle_stage, AISystem.oversight_owner_id,
                   User.name.label("owner_name"))
            .outerjoin(User, and_(User.id == AISystem.oversight_owner_id, User.deleted_at.is_(None),
                                  User.is_active.is_(True)))
            .where(AISystem.id.in_(ids), AISystem.deleted_at.is_(None))
        ).all()
        return {r.id: _System(r.id, r.name, AILifecycleStage(r.lifecycle_stage), r.oversight_owner_id,
                              r.owner_name) for r in rows}

    @staticmethod
    def _linked(category: EvidenceCategory, system_ids: set[uuid.UUID]) -> Any:
        """Live evidence of a category linked to the systems, with its current revision."""
        return (
            select(EvidenceLink.ai_system_id)
            .join(Evidence, and_(Evidence.id == EvidenceLink.evidence_id, Evidence.deleted_at.is_(None)))
            .join(EvidenceRevision, and_(EvidenceRevision.evidence_id == Evidence.id,
                                         EvidenceRevision.number == Evidence.revision_number))
            .where(EvidenceLink.ai_system_id.in_(system_ids), Evidence.category == category)
        )

    @staticmethod
    def _approved_live(now: datetime) -> Any:
        return and_(
            Evidence.status == EvidenceStatus.APPROVED,
            EvidenceRevision.status == EvidenceStatus.APPROVED,
            or_(Evidence.expires_at.is_(None), Evidence.expires_at > now),
        )

    def _model_cards(self, ctx: RunContext, system_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """Per system: the newest approved, unexpired model card (name, upload time) and how many
        are expired or awaiting review. Two queries."""
        if not system_ids:
            return {}
        approved = self._approved_live(ctx.now)
        expired = or_(
            Evidence.status == EvidenceStatus.EXPIRED,
            and_(Evidence.status == EvidenceStatus.APPROVED, Evidence.expires_at <= ctx.now),
        )
        counts = ctx.session.execute(
            self._linked(EvidenceCategory.MODEL_CARD, system_ids)
            .add_columns(func.count().label("total"),
                         func.count(case((expired, 1))).label("expired"),
                         func.count(case((Evidence.status == EvidenceStatus.IN_REVIEW, 1))).label("in_review"))
            .group_by(EvidenceLink.ai_system_id)
        ).all()
        state: dict[uuid.UUID, dict[str, Any]] = {
            r.ai_system_id: {"total": r.total, "expired": r.expired, "in_review": r.in_review, "newest": None}
            for r in counts}
        newest = ctx.session.execute(
            self._linked(EvidenceCategory.MODEL_CARD, system_ids)
            .add_columns(Evidence.id, Evidence.name, EvidenceRevision.created_at)
            .where(approved)
            .ext(distinct_on(EvidenceLink.ai_system_id))
            .order_by(EvidenceLink.ai_system_id, EvidenceRevision.created_at.desc(), Evidence.id)
        ).all()
        for r in newest:
            state[r.ai_system_id]["newest"] = (r.id, r.name, r.created_at)
        return state

    def _reports(self, ctx: RunContext, system_ids: set[uuid.UUID]) -> dict[uuid.UUID, _Report]:
        """Per system: its newest approved, unexpired evaluation report and that revision's object. One query."""
        if not system_ids:
            return {}
        rows = ctx.session.execute(
            self._linked(EvidenceCategory.EVALUATION_REPORT, system_ids)
            .add_columns(Evidence.id, Evidence.name, EvidenceRevision.number, EvidenceRevision.bucket,
                         EvidenceRevision.object_key, EvidenceRevision.version_id, EvidenceRevision.filename,
                         EvidenceRevision.content_type)
            .where(self._approved_live(ctx.now))
            .ext(distinct_on(EvidenceLink.ai_system_id))
            .order_by(EvidenceLink.ai_system_id, EvidenceRevision.created_at.desc(), Evidence.id)
        ).all()
        return {r.ai_system_id: _Report(r.id, r.name, r.number, r.bucket, r.object_key, r.version_id, r.filename,
                                        r.content_type) for r in rows}

    @staticmethod
    def _assessments(ctx: RunContext, system_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """Per system: its newest impact assessment version and status, and its newest approved
        version and when that was decided. One query."""
        if not system_ids:
            return {}
        approved = ImpactAssessment.status == AssessmentStatus.APPROVED
        rows = ctx.session.execute(
            select(ImpactAssessment.system_id,
                   func.max(ImpactAssessment.version).label("newest"),
                   # Newest first: the first status is the newest version's.
                   func.array_agg(aggregate_order_by(cast(ImpactAssessment.status, String),
                                                     ImpactAssessment.version.desc())).label("statuses"),
                   func.max(case((approved, ImpactAssessment.version))).label("approved_version"),
                   func.max(case((approved, ImpactAssessment.decided_at))).label("approved_at"))
            .where(ImpactAssessment.system_id.in_(system_ids))
            .group_by(ImpactAssessment.system_id)
        ).all()
        state: dict[uuid.UUID, dict[str, Any]] = {}
        for r in rows:
            state[r.system_id] = {"newest": r.newest, "newest_status": r.statuses[0],
                                  "approved_version": r.approved_version, "approved_at": r.approved_at}
        return state

    # --- rules -------------------------------------------------------------------------------------

    @staticmethod
    def _model_card(now: datetime, check: CheckSpec, system: _System, state: Mapping[str, Any] | None) -> Observation:
        max_age = int(check.parameters.get("max_age_days") or DEFAULT_MAX_AGE_DAYS)
        expected = {"rule": MODEL_CARD, "max_age_days": max_age}
        newest = state["newest"] if state else None
        if newest is not None:
            evidence_id, name, uploaded = newest
            age = now - uploaded
            observed = {"evidence_id": str(evidence_id), "name": name, "age_days": age.days}
            if age <= timedelta(days=max_age):
                return Observation(check.id, ResultOutcome.COMPLIANT, observed=observed, expected=expected,
                                   resource=system.name,
                                   message=f"Model card \u201c{name}\u201d is approved and was uploaded {age.days} "
                                           f"days ago (limit {max_age} days).")
            return Observation(check.id, ResultOutcome.NON_COMPLIANT, observed=observed, expected=expected,
                               resource=system.name,
                               message=f"The newest approved model card, \u201c{name}\u201d, is {age.days} days "
                                       f"old (limit {max_age} days): upload a current one.")
        observed = {"model_cards": 0, "expired": 0, "in_review": 0}
        if state:
            observed = {"model_cards": state["total"], "expired": state["expired"], "in_review": state["in_review"]}
        if not state:
            reason = f"No model card is linked to {system.name}."
        elif state["expired"]:
            reason = f"The model card of {system.name} has expired."
        elif state["in_review"]:
            reason = f"The model card of {system.name} awaits review: none is approved yet."
        else:
            reason = f"No approved model card is linked to {system.name}."
        return Observation(check.id, ResultOutcome.NON_COMPLIANT, observed=observed, expected=expected,
                           resource=system.name, message=reason)

    @staticmethod
    def _evaluation(ctx: RunContext, check: CheckSpec, system: _System, report: _Report | None,
                    documents: dict[uuid.UUID, bytes | metric.ReadFailed]) -> tuple[Observation, str | None]:
        params = check.parameters
        operator = str(params.get("operator") or ">=")
        threshold = params.get("threshold")
        field = str(params.get("field") or "")
        expected = {"rule": EVALUATION_METRIC, "operator": operator, "threshold": threshold, "field": field}
        if report is None:
            return Observation(check.id, ResultOutcome.NON_COMPLIANT, expected=expected, resource=system.name,
                               message=f"{system.name} has no evaluation report: link an approved, unexpired "
                                       f"one (evidence of kind evaluation report)."), None
        resource = f"{system.name}: evidence:{report.evidence_id} revision {report.number}"[:1024]
        try:
            if report.bucket != ctx.storage.bucket:
                raise metric.ReadFailed(f"Evaluation report \u201c{report.name}\u201d is in bucket {report.bucket}, "
                                        f"not in the evidence bucket.")
            fmt = params.get("format") or metric.format_of(report.filename, report.content_type)
            if fmt is None:
                raise metric.ReadFailed(f"Cannot tell whether {report.filename} is JSON or CSV: set the format of "
                                        f"the check.")
            if report.evidence_id not in documents:
                try:
                    documents[report.evidence_id] = metric.read_object(
                        ctx.storage, report.key, report.version_id, f"evidence:{report.evidence_id}")
                except metric.ReadFailed as exc:
                    documents[report.evidence_id] = exc
            document = documents[report.evidence_id]
            if isinstance(document, metric.ReadFailed):
                raise document
            value = metric.extract(document, str(fmt), field, params.get("row"))
        except metric.ReadFailed as exc:
            message = f"Evaluation report \u201c{report.name}\u201d: {exc.message}"
            return Observation(check.id, ResultOutcome.ERROR, expected=expected, message=message,
                               resource=resource), (message if exc.transient else None)
        observation = metric.judge(check.id, value, field=field, operator=operator, threshold=threshold,
                                   expected=expected, resource=resource)
        observation.message = f"Evaluation report \u201c{report.name}\u201d: {observation.message}"
        return observation, None

    @staticmethod
    def _oversight(check: CheckSpec, system: _System) -> Observation:
        expected = {"rule": OVERSIGHT_OWNER, "oversight_owner": "a live, active user"}
        observed = {"oversight_owner_id": str(system.oversight_owner_id) if system.oversight_owner_id else None}
        if system.oversight_owner_name is not None:
            return Observation(check.id, ResultOutcome.COMPLIANT, observed=observed, expected=expected,
                               resource=system.name,
                               message=f"{system.oversight_owner_name} answers for the human oversight of "
                                       f"{system.name}.")
        if system.oversight_owner_id is None:
            message = f"Nobody is assigned to the human oversight of {system.name}: name an oversight owner."
        else:
            message = (f"The oversight owner of {system.name} is no longer an active user: name another "
                       f"oversight owner.")
        return Observation(check.id, ResultOutcome.NON_COMPLIANT, observed=observed, expected=expected,
                           resource=system.name, message=message)

    @staticmethod
    def _impact(check: CheckSpec, system: _System, state: Mapping[str, Any] | None) -> Observation:
        expected = {"rule": IMPACT_ASSESSMENT, "approved_before": AILifecycleStage.PRODUCTION.value}
        approved = state["approved_version"] if state else None
        observed = {
            "stage": system.stage.value, "approved_version": approved,
            "newest_version": state["newest"] if state else None,
            "newest_status": state["newest_status"] if state else None,
        }
        if approved is not None:
            when = state["approved_at"].date().isoformat() if state and state["approved_at"] else "?"
            assessment = f"impact assessment version {approved} was approved on {when}"
        elif state:
            assessment = (f"its newest impact assessment (version {state['newest']}) is "
                          f"{state['newest_status']}, none is approved")
        else:
            assessment = "it has no impact assessment yet"
        if system.stage == AILifecycleStage.PRODUCTION:
            if approved is not None:
                return Observation(check.id, ResultOutcome.COMPLIANT, observed=observed, expected=expected,
                                   resource=system.name,
                                   message=f"{system.name} is in production and its {assessment}.")
            return Observation(check.id, ResultOutcome.NON_COMPLIANT, observed=observed, expected=expected,
                               resource=system.name,
                               message=f"{system.name} is in production but {assessment}: an impact assessment "
                                       f"must be approved before production.")
        if system.stage == AILifecycleStage.RETIRED:
            where = f"{system.name} is retired, no longer in production"
        else:
            where = f"{system.name} is not in production yet (stage: {_stage_text(system.stage)})"
        return Observation(check.id, ResultOutcome.COMPLIANT, observed=observed, expected=expected,
                           resource=system.name, message=f"{where}; {assessment}.")


KIND = register(AISystemChecks())
