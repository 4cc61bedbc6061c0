"""The statement of applicability as CSV: one row per (control, evidence) so a spreadsheet can
filter on either; a control without evidence has one row with empty evidence cells. The report's
metadata (target, as-of, period, score, formula) come first as rows of kind "report", and open
alerts and tasks last as "open_alert" / "open_task" rows, so the file stays one rectangular table."""

from __future__ import annotations

import csv
import io

from governance.services.csv_cells import cell
from governance.services.reports.soa import NO_RESULT, PERIOD_NOTE, SoA

COLUMNS = ("kind", "framework", "control_ref", "control_title", "applicable", "reason", "control_status",
           "assessment", "owner", "evidence_name", "evidence_sha256", "evidence_review_state",
           "checks", "latest_results")


def render(soa: SoA, *, as_of: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    meta = [("target", soa.title), ("scope", soa.scope), ("as_of", as_of),
            ("period", f"{soa.period_start}/{soa.period_end}"), ("period_note", PERIOD_NOTE),
            ("score", soa.score or "unassessed"),
            ("formula", soa.formula)]
    for key, value in meta:
        writer.writerow([cell(v) for v in ("report", key, value)] + [""] * (len(COLUMNS) - 3))
    for row in soa.rows:
        checks = "; ".join(c.name for c in row.checks)
        results = "; ".join(f"{c.name}: {c.outcome or NO_RESULT}" + (f" at {c.at}" if c.at else "")
                            for c in row.checks)
        base = ["control", row.framework, row.ref_id, row.title, "yes" if row.applicable else "no", row.reason,
                row.status, row.assessment, row.owner]
        evidence: list[list[str | None]] = [
            [ev.name, ev.sha256, ev.status + (f"; deleted {ev.deleted_at}" if ev.deleted_at else "")]
            for ev in row.evidence]
        for ev_cells in evidence or [[None, None, None]]:
            writer.writerow([cell(v) for v in (*base, *ev_cells, checks, results)])
    for item in soa.open_items:
        writer.writerow([cell(v) for v in (f"open_{item.kind}", None, None, item.title, None, None, item.status,
                                           item.severity, None, None, None, None, None, item.since)])
    return out.getvalue().encode("utf-8")
