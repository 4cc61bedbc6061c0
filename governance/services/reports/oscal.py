"""The statement of applicability as OSCAL assessment-results JSON (NIST OSCAL 1.2.3).

One result covering the period (its start and end: what the period filters is in
soa.PERIOD_NOTE, repeated in the result's description); per applicable control one finding (target: the control's
statement, state satisfied when its checks score it compliant, else not-satisfied) related to one
observation per check result and per piece of evidence (relevant-evidence carries its SHA-256).
Controls that do not apply are listed in the result's reviewed-controls as excluded, with the
reason in their remarks. UUIDs are version 4, fresh per document (OSCAL asks for per-subject
stability only across revisions of one document; each report is a new document).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from governance.services.reports import soa as soa_module
from governance.services.reports.soa import SoA, SoARow

OSCAL_VERSION = "1.2.3"
NS = "https://governance.example/ns/oscal"  # our own props live in our namespace
SATISFIED = {"compliant"}


def _uuid() -> str:
    return str(uuid.uuid4())


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": value}


def _control_id(row: SoARow) -> str:
    # OSCAL control ids are tokens (lower case by convention): "GV-1.2" -> "gv-1.2".
    token = "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in row.ref_id.lower())
    return token if token[:1].isalpha() or token[:1] == "_" else f"c-{token}"


def _observations(row: SoARow, collected: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for check in row.checks:
        found.append({
            "uuid": _uuid(), "title": f"Check {check.name}",
            "description": f"Latest result in the period of check {check.name!r} on {row.ref_id}: "
                           f"{check.outcome or soa_module.NO_RESULT}."
                           + (f" {check.message}" if check.message else ""),
            "methods": ["TEST"], "types": ["control-objective"],
            "props": [_prop("check-outcome", check.outcome or "none")],
            "collected": check.at or collected,
        })
    for ev in row.evidence:
        found.append({
            "uuid": _uuid(), "title": f"Evidence {ev.name}",
            "description": f"Evidence {ev.name!r} linked to {row.ref_id}, review state {ev.status}.",
            "methods": ["EXAMINE"], "types": ["control-objective"],
            "props": [_prop("evidence-sha256", ev.sha256), _prop("review-state", ev.status)]
                     + ([_prop("deleted-at", ev.deleted_at)] if ev.deleted_at else []),
            "relevant-evidence": [{"href": f"#evidence-{ev.id}",
                                   "description": f"{ev.name} (SHA-256 {ev.sha256}, {ev.status})"}],
            "collected": collected,
        })
    return found


def document(soa: SoA, *, as_of: str, report_id: uuid.UUID) -> dict[str, Any]:
    observations: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    included: list[dict[str, Any]] = []
    for row in soa.rows:
        control_id = _control_id(row)
        if not row.applicable:
            excluded.append({"control-id": control_id})
            continue
        included.append({"control-id": control_id})
        related = _observations(row, as_of)
        observations.extend(related)
        finding: dict[str, Any] = {
            "uuid": _uuid(), "title": f"{row.ref_id} {row.title}",
            "description": f"{row.ref_id} is {row.assessment}. Applicable: {row.reason}",
            "props": [_prop("control-status", row.status), _prop("assessment", row.assessment)]
                     + ([_prop("owner", row.owner)] if row.owner else []),
            "target": {"type": "statement-id", "target-id": f"{control_id}_smt",
                       "status": {"state": "satisfied" if row.assessment in SATISFIED else "not-satisfied"}},
        }
        if related:
            finding["related-observations"] = [{"observation-uuid": o["uuid"]} for o in related]
        findings.append(finding)
    selection: dict[str, Any] = {"description": "The controls that apply; the others are excluded."}
    if included:
        selection["include-controls"] = included
    if excluded:
        selection["exclude-controls"] = excluded
    reasons = "; ".join(f"{r.ref_id}: {r.reason}" for r in soa.rows if not r.applicable)
    result: dict[str, Any] = {
        "uuid": _uuid(),
        "title": f"Statement of applicability: {soa.title}",
        "description": f"Score {soa.score or 'unassessed'}% ({soa.formula}) {soa_module.PERIOD_NOTE}",
        # The period the results were collected in: [start 00:00 UTC, the day after the end 00:00 UTC).
        "start": f"{soa.period_start}T00:00:00Z",
        "end": f"{soa.period_end}T23:59:59.999999Z",
        "props": [_prop("score", soa.score or "unassessed"), _prop("as-of", as_of)],
        "reviewed-controls": {"control-selections": [selection]},
    }
    if reasons:
        result["reviewed-controls"]["remarks"] = f"Not applicable: {reasons}"
    if observations:
        result["observations"] = observations
    if findings:
        result["findings"] = findings
    if soa.open_items:
        result["remarks"] = "Open: " + "; ".join(f"{i.kind} {i.title} ({i.severity}, {i.status})"
                                                for i in soa.open_items)
    return {"assessment-results": {
        "uuid": str(report_id),
        "metadata": {"title": f"Statement of applicability: {soa.title}", "last-modified": as_of,
                     "version": as_of, "oscal-version": OSCAL_VERSION,
                     "props": [_prop("scope", soa.scope), _prop("target-id", soa.target_id)]},
        "import-ap": {"href": f"#assessment-plan-{soa.scope}-{soa.target_id}",
                      "remarks": "The portal's controls and checks are the assessment plan."},
        "results": [result],
    }}


def render(soa: SoA, *, as_of: str, report_id: uuid.UUID) -> bytes:
    return json.dumps(document(soa, as_of=as_of, report_id=report_id), indent=2, sort_keys=True).encode("utf-8")
