"""manual_attestation: a named person states, every N days, whether the check holds, with a comment.

Check parameters: attester_id (the user who attests) and every_days (how often an attestation is
due). validate_parameters has no database session, so it checks only that attester_id is a UUID;
the service that saves the check (governance.services.probes) checks the user exists and is active,
and the attest page lets that person (and admins) record Attestation rows.

A run takes the latest attestation of each check: within every_days of the run's clock, its outcome
(compliant / partial / non_compliant) is the result with its comment as the message; older, or none,
the check is non_compliant ("attestation overdue since …", "never attested"). One query answers all
checks (the latest row per check through ix_attestations_check_id_created_at).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from governance.models.enums import ResultOutcome
from governance.probes import CheckSpec, ConfigError, Observation, RunContext, register
from governance.probes import _util as u

EVERY_DAYS_LIMIT = 3650

# The newest attestation of each check: a LATERAL LIMIT 1 per check reads one index entry each.
LATEST = text(
    """
    SELECT c.id AS check_id, a.outcome, a.comment, a.created_at, u.name AS attester
    FROM unnest(:ids) AS c(id)
    JOIN LATERAL (
        SELECT outcome, comment, created_at, attested_by_id FROM attestations
        WHERE check_id = c.id ORDER BY created_at DESC LIMIT 1
    ) a ON true
    LEFT JOIN users u ON u.id = a.attested_by_id
    """
).bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))))


class ManualAttestation:
    name = "manual_attestation"
    label = "Manual attestation"
    description = "A named person attests on a schedule, with a comment, that the check holds."
    config_fields: u.Fields = ()
    parameter_fields: u.Fields = (
        ("attester_id", "Attester", "The user who attests (must be an active user).", True),
        ("every_days", "Every (days)", "How often an attestation is due, e.g. 90.", True),
    )
    secret_fields: tuple[str, ...] = ()

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        attester = u.uuid_value(parameters, "attester_id")
        every = u.int_value(parameters, "every_days", minimum=1, maximum=EVERY_DAYS_LIMIT)
        if every is None:
            raise ConfigError("every_days", "Say how often, in days, an attestation is due.")
        return {"attester_id": attester, "every_days": every}

    def public_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def restore_secrets(self, config: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def run(self, ctx: RunContext, config: Mapping[str, Any], checks: list[CheckSpec]) -> list[Observation]:
        latest = {}
        if checks:
            latest = {row.check_id: row for row in ctx.session.execute(LATEST, {"ids": [c.id for c in checks]})}
        observations = []
        for check in checks:
            every = int(check.parameters.get("every_days") or 1)
            expected = {"every_days": every}
            row = latest.get(check.id)
            if row is None:
                observations.append(Observation(check.id, ResultOutcome.NON_COMPLIANT, expected=expected,
                                                message="Never attested."))
                continue
            due = row.created_at + timedelta(days=every)
            observed = {"outcome": row.outcome, "attested_at": row.created_at.isoformat(),
                        "attested_by": row.attester, "due": due.isoformat()}
            if due <= ctx.now:
                observations.append(Observation(
                    check.id, ResultOutcome.NON_COMPLIANT, observed=observed, expected=expected,
                    message=f"Attestation overdue since {due:%Y-%m-%d} (last by {row.attester} on "
                            f"{row.created_at:%Y-%m-%d}).",
                ))
                continue
            observations.append(Observation(
                check.id, ResultOutcome(row.outcome), observed=observed, expected=expected,
                message=f"{row.comment} — {row.attester}, {row.created_at:%Y-%m-%d} (due again {due:%Y-%m-%d})",
            ))
        return observations


KIND = register(ManualAttestation())
