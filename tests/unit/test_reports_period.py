"""The report's period filters (docs/reports.md, "The period"): a check shows its latest result
within the period or none, evidence is listed when it existed during the period; the CSV, PDF and
OSCAL say so, and the read cache keeps one entry per period."""

from __future__ import annotations

import csv
import html as html_text
import io
import uuid
from datetime import UTC, date, datetime

from governance.models import ReportScope, Result, ResultOutcome
from governance.services.reports import oscal, render_csv, render_pdf, soa
from tests import report_scene

PERIOD = report_scene.PERIOD  # 2026-09-01 .. 2026-11-30
BEFORE = datetime(2026, 8, 31, 23, 59, 59, tzinfo=UTC)
FIRST = datetime(2026, 9, 1, 0, 0, tzinfo=UTC)
LAST = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
AFTER = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


def _scene(db_session, make_user, make_control, make_evidence):
    return report_scene.build(db_session, make_user, make_control, make_evidence)


def _rows(db_session, scene, period=PERIOD):
    return {r.ref_id: r for r in soa.framework_soa(db_session(), scene.framework.id, period).rows}


def test_a_check_shows_its_latest_result_within_the_period(db_session, make_user, make_control,
                                                           make_evidence) -> None:
    scene = _scene(db_session, make_user, make_control, make_evidence)
    check = scene.checks[0]  # compliant at IN_PERIOD (2026-10-15)
    db_session.add_all([
        Result(check_id=check.id, outcome=ResultOutcome.ERROR, message="after", created_at=AFTER),
        Result(check_id=check.id, outcome=ResultOutcome.NON_COMPLIANT, message="before", created_at=BEFORE),
        Result(check_id=check.id, outcome=ResultOutcome.PARTIAL, message="last second", created_at=LAST),
    ])
    db_session.flush()
    (item,) = _rows(db_session, scene)["RP-1"].checks
    assert (item.outcome, item.message) == ("partial", "last second")
    assert item.at == LAST.isoformat()
    # A period that holds only the result before: that one.
    (item,) = _rows(db_session, scene, (date(2026, 8, 1), date(2026, 8, 31)))["RP-1"].checks
    assert (item.outcome, item.message) == ("non_compliant", "before")
    # A period without any result: none, said as such in every format.
    empty = (date(2026, 6, 1), date(2026, 6, 30))
    data = soa.framework_soa(db_session(), scene.framework.id, empty)
    (item,) = {r.ref_id: r for r in data.rows}["RP-1"].checks
    assert item.outcome is None and item.at is None
    table = list(csv.DictReader(io.StringIO(render_csv.render(data, as_of="x").decode())))
    rp1 = next(r for r in table if r["control_ref"] == "RP-1")
    assert f"{check.name}: {soa.NO_RESULT}" in rp1["latest_results"]
    assert {r["framework"]: r["control_ref"] for r in table if r["kind"] == "report"}["period_note"] == soa.PERIOD_NOTE
    html = html_text.unescape(render_pdf.html(data, as_of="x", report_id="r"))
    assert soa.NO_RESULT in html and soa.PERIOD_NOTE in html
    doc = oscal.document(data, as_of="2026-12-01T00:00:00+00:00", report_id=uuid.uuid4())
    (result,) = doc["assessment-results"]["results"]
    assert result["start"] == "2026-06-01T00:00:00Z" and result["end"].startswith("2026-06-30T23:59:59")
    assert soa.PERIOD_NOTE in result["description"]
    assert any(soa.NO_RESULT in o["description"] for o in result["observations"])


def test_the_first_and_last_second_of_the_period_count(db_session, make_user, make_control, make_evidence) -> None:
    scene = _scene(db_session, make_user, make_control, make_evidence)
    check = scene.checks[1]
    db_session.add(Result(check_id=check.id, outcome=ResultOutcome.COMPLIANT, message="first", created_at=FIRST))
    db_session.flush()
    (item,) = _rows(db_session, scene, (date(2026, 9, 1), date(2026, 9, 1)))["RP-2"].checks
    assert item.message == "first"
    (item,) = _rows(db_session, scene, (date(2026, 8, 1), date(2026, 8, 31)))["RP-2"].checks
    assert item.outcome is None


def test_evidence_is_listed_when_it_existed_during_the_period(db_session, make_user, make_control,
                                                              make_evidence) -> None:
    scene = _scene(db_session, make_user, make_control, make_evidence)
    control = scene.controls[0]
    late = make_evidence(scene.owner, b"%PDF-1.4 late\n", name="Added after", control=control)
    gone = make_evidence(scene.owner, b"%PDF-1.4 gone\n", name="Deleted before", control=control)
    during = make_evidence(scene.owner, b"%PDF-1.4 during\n", name="Deleted during", control=control)
    late.created_at = AFTER
    gone.created_at, gone.deleted_at = datetime(2026, 1, 1, tzinfo=UTC), BEFORE
    during.created_at, during.deleted_at = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)
    db_session.flush()
    names = {e.name for e in _rows(db_session, scene)["RP-1"].evidence}
    assert names == {"Policy document", "Deleted during"}
    (shown,) = [e for e in _rows(db_session, scene)["RP-1"].evidence if e.name == "Deleted during"]
    assert shown.deleted_at == during.deleted_at.isoformat()
    # The period that holds the late one's first day lists it (and nothing deleted before).
    names = {e.name for e in _rows(db_session, scene, (date(2026, 12, 1), date(2026, 12, 1)))["RP-1"].evidence}
    assert names == {"Policy document", "Added after"}


def test_the_read_cache_keeps_one_entry_per_period(db_session, make_user, make_control, make_evidence) -> None:
    scene = _scene(db_session, make_user, make_control, make_evidence)
    other = (date(2026, 6, 1), date(2026, 6, 30))
    assert soa.cache_key(ReportScope.FRAMEWORK, scene.framework.id, PERIOD) != \
        soa.cache_key(ReportScope.FRAMEWORK, scene.framework.id, other)
    inside, hit = soa.cached(db_session(), ReportScope.FRAMEWORK, scene.framework.id, PERIOD)
    db_session.commit()
    outside, hit_other = soa.cached(db_session(), ReportScope.FRAMEWORK, scene.framework.id, other)
    assert (hit, hit_other) == (False, False)
    assert {r.ref_id: r for r in inside.rows}["RP-1"].checks[0].outcome == "compliant"
    assert {r.ref_id: r for r in outside.rows}["RP-1"].checks[0].outcome is None
    assert {r.ref_id: r for r in outside.rows}["RP-1"].evidence == []
