"""evidence_freshness: every control a check assesses has approved, unexpired evidence newer than N days.

Fresh evidence for a control: live (not deleted) evidence linked to the control (evidence_links),
whose status is approved, that has not expired (expires_at empty or after the run's clock), and
whose current revision was uploaded within max_age_days (a check parameter; else the probe's
configuration; default 90). Expired and stale evidence count for nothing, so a control with only
those is not compliant.

Outcome per check: compliant when every control has fresh evidence, non_compliant when none has,
partial when some have; the message names the controls that lack it and why. All checks of a run
are answered by one grouped query over their controls.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from governance.models.enums import EvidenceStatus, ResultOutcome
from governance.models.evidence import Evidence, EvidenceLink, EvidenceRevision
from governance.models.frameworks import Control
from governance.probes import CheckSpec, Observation, RunContext, register
from governance.probes import _util as u

DEFAULT_MAX_AGE_DAYS = 90
MAX_AGE_LIMIT = 3650


class EvidenceFreshness:
    name = "evidence_freshness"
    label = "Evidence freshness"
    description = "The check's controls have approved, unexpired evidence uploaded within N days."
    config_fields: u.Fields = (
        ("max_age_days", "Default maximum age (days)", "For checks that do not set their own; default 90.", False),
    )
    parameter_fields: u.Fields = (
        ("max_age_days", "Maximum age (days)", "Evidence uploaded longer ago counts as stale; default: the "
                                               "probe's setting, else 90.", False),
    )
    secret_fields: tuple[str, ...] = ()

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        days = u.int_value(config, "max_age_days", minimum=1, maximum=MAX_AGE_LIMIT)
        return {} if days is None else {"max_age_days": days}

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        days = u.int_value(parameters, "max_age_days", minimum=1, maximum=MAX_AGE_LIMIT)
        return {} if days is None else {"max_age_days": days}

    def public_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def restore_secrets(self, config: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def run(self, ctx: RunContext, config: Mapping[str, Any], checks: list[CheckSpec]) -> list[Observation]:
        control_ids = {cid for check in checks for cid in check.control_ids}
        state = self._control_state(ctx, control_ids)
        default_days = int(config.get("max_age_days") or DEFAULT_MAX_AGE_DAYS)
        return [self._judge(ctx.now, check, state, int(check.parameters.get("max_age_days") or default_days))
                for check in checks]

    @staticmethod
    def _control_state(ctx: RunContext, control_ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """Per control: its ref, the newest upload time of approved unexpired evidence, whether any
        linked evidence expired, how many are in review. One query whatever the number of checks."""
        if not control_ids:
            return {}
        approved_live = and_(
            Evidence.status == EvidenceStatus.APPROVED,
            EvidenceRevision.status == EvidenceStatus.APPROVED,
            or_(Evidence.expires_at.is_(None), Evidence.expires_at > ctx.now),
        )
        expired = or_(
            Evidence.status == EvidenceStatus.EXPIRED,
            and_(Evidence.status == EvidenceStatus.APPROVED, Evidence.expires_at <= ctx.now),
        )
        rows = ctx.session.execute(
            select(
                Control.id, Control.ref_id,
                func.max(case((approved_live, EvidenceRevision.created_at))).label("newest"),
                func.count(case((expired, 1))).label("expired"),
                func.count(case((Evidence.status == EvidenceStatus.IN_REVIEW, 1))).label("in_review"),
            )
            .select_from(Control)
            .outerjoin(EvidenceLink, EvidenceLink.control_id == Control.id)
            .outerjoin(Evidence, and_(Evidence.id == EvidenceLink.evidence_id, Evidence.deleted_at.is_(None)))
            .outerjoin(EvidenceRevision, and_(EvidenceRevision.evidence_id == Evidence.id,
                                              EvidenceRevision.number == Evidence.revision_number))
            .where(Control.id.in_(control_ids))
            .group_by(Control.id, Control.ref_id)
        ).all()
        return {row.id: row for row in rows}

    @staticmethod
    def _judge(now: datetime, check: CheckSpec, state: Mapping[uuid.UUID, Any], max_age: int) -> Observation:
        expected = {"max_age_days": max_age, "controls": len(check.control_ids)}
        if not check.control_ids:
            return Observation(check.id, ResultOutcome.NOT_APPLICABLE, expected=expected,
                               message="The check assesses no control.")
        fresh: list[str] = []
        lacking: list[dict[str, Any]] = []
        for control_id in check.control_ids:
            row = state.get(control_id)
            ref = row.ref_id if row is not None else str(control_id)
            if row is None:
                lacking.append({"control": ref, "reason": "control not found"})
                continue
            if row.newest is not None:
                age = now - row.newest
                if age <= timedelta(days=max_age):
                    fresh.append(ref)
                    continue
                reason = f"newest approved evidence is {age.days} days old"
            elif row.expired:
                reason = "its evidence expired"
            elif row.in_review:
                reason = "evidence awaits review"
            else:
                reason = "no approved evidence"
            lacking.append({"control": ref, "reason": reason})
        observed = {"fresh": len(fresh), "controls": len(check.control_ids), "lacking": lacking}
        resource = ", ".join(sorted({*fresh, *(item["control"] for item in lacking)}))[:1024]
        if not lacking:
            outcome = ResultOutcome.COMPLIANT
            message = (f"All {len(fresh)} controls have" if len(fresh) > 1 else f"{fresh[0]} has") + \
                f" approved evidence uploaded within {max_age} days."
        else:
            outcome = ResultOutcome.PARTIAL if fresh else ResultOutcome.NON_COMPLIANT
            detail = "; ".join(f"{item['control']}: {item['reason']}" for item in lacking)
            message = (f"{len(fresh)} of {len(check.control_ids)} controls have approved evidence uploaded within "
                       f"{max_age} days. Lacking: {detail}.")
        return Observation(check.id, outcome, observed=observed, expected=expected, message=message,
                           resource=resource)


KIND = register(EvidenceFreshness())
