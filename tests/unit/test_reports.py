"""Reports (governance.services.reports): the statement of applicability, each format generated
through the job function for a framework and an AI system, the stored hash, audit entries, the
read cache and the refusals."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pypdf
import pytest
from sqlalchemy import select

from governance.models import AuditLog, Report, ReportFormat, ReportScope, ReportStatus
from governance.services.reports import oscal, service, soa
from tests import report_scene

PERIOD = report_scene.PERIOD


def factory(db_session: Any) -> Any:
    """The job's session factory over the test's transaction, left open (a real factory makes a
    new session each time; closing the test's would detach the scene's objects)."""
    return lambda: contextlib.nullcontext(db_session())


@pytest.fixture
def scene(db_session: Any, make_user: Any, make_control: Any, make_evidence: Any) -> report_scene.Scene:
    return report_scene.build(db_session, make_user, make_control, make_evidence)


def _generate(db_session: Any, storage: Any, scope: ReportScope, target: uuid.UUID, fmt: ReportFormat,
              requester: Any = None) -> tuple[Report, bytes]:
    report = service.request_report(db_session(), scope=scope, target_id=target, fmt=fmt, period=PERIOD,
                                    requested_by_id=requester.id if requester else None)
    db_session.commit()
    assert service.execute_report(factory(db_session), storage, report.id) == "succeeded"
    db_session.expire_all()
    report = db_session.get(Report, report.id)
    body = b"".join(storage.open(report.object_key))
    return report, body


def _audit(db_session: Any, report_id: uuid.UUID) -> list[AuditLog]:
    return list(db_session.scalars(select(AuditLog).where(AuditLog.object_type == "report",
                                                          AuditLog.object_id == str(report_id))
                                   .order_by(AuditLog.seq)))


def test_framework_soa_rows_applicability_score_and_open_items(db_session, scene) -> None:
    data = soa.framework_soa(db_session(), scene.framework.id, PERIOD)
    rows = {r.ref_id: r for r in data.rows}
    assert set(rows) == {"RP-1", "RP-2", "RP-3", "RP-9"}
    assert rows["RP-9"].applicable is False and "Withdrawn" in rows["RP-9"].reason
    assert rows["RP-1"].applicable and rows["RP-1"].assessment == "compliant"
    assert rows["RP-1"].owner == scene.owner.name
    assert [e.sha256 for e in rows["RP-1"].evidence] == [scene.evidence.sha256]
    assert [e.sha256 for e in rows["RP-2"].evidence] == [scene.linked_evidence.sha256]  # through a link
    assert rows["RP-2"].checks[0].outcome == "non_compliant"
    assert rows["RP-3"].assessment == "unassessed"
    # compliant 1 + non-compliant 0 over two counted controls of weight 1: 50 %.
    assert data.score == "50.00"
    assert data.counts["compliant"] == 1 and data.counts["non_compliant"] == 1 and data.counts["unassessed"] == 1
    assert {(i.kind, i.title) for i in data.open_items} == {("alert", scene.alert.title), ("task", scene.task.title)}
    assert soa.SoA.from_json(data.to_json()) == data


def test_system_soa_applies_its_linked_controls_only(db_session, scene) -> None:
    data = soa.system_soa(db_session(), scene.system.id, PERIOD)
    rows = {r.ref_id: r for r in data.rows}
    assert rows["RP-1"].applicable and "Tickets carry personal data" in rows["RP-1"].reason
    assert rows["RP-2"].applicable and rows["RP-2"].reason == "manual"
    assert not rows["RP-3"].applicable and rows["RP-3"].evidence == [] and rows["RP-3"].checks == []
    from governance.services import ai_systems

    assert data.score == str(ai_systems.system_score(db_session(), scene.system.id).value) == "50.00"


def test_unknown_target_is_refused(db_session) -> None:
    with pytest.raises(soa.UnknownTarget):
        service.request_report(db_session(), scope=ReportScope.FRAMEWORK, target_id=uuid.uuid4(),
                               fmt=ReportFormat.CSV, period=PERIOD, requested_by_id=None)


@pytest.mark.parametrize(("start", "end", "field"), [
    (date(2026, 5, 2), date(2026, 5, 1), "period_end"),
    (None, date(2026, 5, 1), "period_start"),
    (date(2026, 5, 1), datetime.now(UTC).date() + timedelta(days=2), "period_end"),
    (date(2020, 1, 1), date(2026, 1, 1), "period_start"),
])
def test_a_bad_period_is_refused_beside_its_field(start, end, field) -> None:
    with pytest.raises(service.ReportRefused) as refused:
        service.validate_period(start, end)
    assert refused.value.field == field


@pytest.mark.parametrize("scope", [ReportScope.FRAMEWORK, ReportScope.AI_SYSTEM])
def test_csv_through_the_job(db_session, storage, scene, scope) -> None:
    target = scene.framework.id if scope == ReportScope.FRAMEWORK else scene.system.id
    report, body = _generate(db_session, storage, scope, target, ReportFormat.CSV, scene.owner)
    assert report.status == ReportStatus.SUCCEEDED and report.sha256 == hashlib.sha256(body).hexdigest()
    assert report.size_bytes == len(body) and report.object_key == f"reports/{report.id}.csv"
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    meta = {r["framework"]: r["control_ref"] for r in rows if r["kind"] == "report"}
    assert meta["as_of"] == report.as_of.astimezone(UTC).isoformat() and meta["score"] == "50.00"
    controls = [r for r in rows if r["kind"] == "control"]
    by_ref = {r["control_ref"]: r for r in controls}
    assert by_ref["RP-1"]["evidence_sha256"] == scene.evidence.sha256 and by_ref["RP-1"]["applicable"] == "yes"
    assert by_ref["RP-3"]["applicable"] == ("yes" if scope == ReportScope.FRAMEWORK else "no")
    assert "non_compliant" in by_ref["RP-2"]["latest_results"]
    assert {r["kind"] for r in rows} >= {"open_alert", "open_task"}
    entries = _audit(db_session, report.id)
    assert [e.action for e in entries] == ["report.request", "report.generate"]
    assert entries[1].details["sha256"] == report.sha256


def test_csv_cells_never_start_a_formula(db_session, storage, make_user, make_control, make_evidence) -> None:
    scene = report_scene.build(db_session, make_user, make_control, make_evidence)
    scene.controls[2].title = "=HYPERLINK(\"http://x\")"
    db_session.commit()
    _, body = _generate(db_session, storage, ReportScope.FRAMEWORK, scene.framework.id, ReportFormat.CSV)
    titles = [r["control_title"] for r in csv.DictReader(io.StringIO(body.decode()))]
    assert "'=HYPERLINK(\"http://x\")" in titles


@pytest.mark.parametrize("scope", [ReportScope.FRAMEWORK, ReportScope.AI_SYSTEM])
def test_oscal_assessment_results_through_the_job(db_session, storage, scene, scope) -> None:
    target = scene.framework.id if scope == ReportScope.FRAMEWORK else scene.system.id
    report, body = _generate(db_session, storage, scope, target, ReportFormat.OSCAL)
    assert report.sha256 == hashlib.sha256(body).hexdigest()
    doc = json.loads(body)["assessment-results"]
    # The OSCAL assessment-results model's required fields.
    assert {"uuid", "metadata", "import-ap", "results"} <= set(doc)
    assert {"title", "last-modified", "version", "oscal-version"} <= set(doc["metadata"])
    assert doc["metadata"]["oscal-version"] == oscal.OSCAL_VERSION
    assert "href" in doc["import-ap"]
    (result,) = doc["results"]
    assert {"uuid", "title", "description", "start", "reviewed-controls"} <= set(result)
    assert result["reviewed-controls"]["control-selections"]
    uuids = [doc["uuid"], result["uuid"]]
    observations = {o["uuid"]: o for o in result["observations"]}
    for obs in observations.values():
        assert {"uuid", "description", "methods", "collected"} <= set(obs)
        uuids.append(obs["uuid"])
    findings = {f["title"].split()[0]: f for f in result["findings"]}
    for finding in findings.values():
        assert {"uuid", "title", "description", "target"} <= set(finding)
        assert {"type", "target-id", "status"} <= set(finding["target"])
        assert finding["target"]["status"]["state"] in ("satisfied", "not-satisfied")
        for related in finding.get("related-observations", []):
            assert related["observation-uuid"] in observations
        uuids.append(finding["uuid"])
    assert all(uuid.UUID(u).version == 4 for u in uuids) and len(set(uuids)) == len(uuids)
    assert findings["RP-1"]["target"]["status"]["state"] == "satisfied"
    assert findings["RP-2"]["target"]["status"]["state"] == "not-satisfied"
    assert "RP-9" not in findings
    evidence_props = [p["value"] for o in observations.values() for p in o.get("props", [])
                      if p["name"] == "evidence-sha256"]
    assert scene.evidence.sha256 in evidence_props
    excluded = result["reviewed-controls"]["control-selections"][0]["exclude-controls"]
    assert {"control-id": "rp-9"} in excluded


@pytest.mark.parametrize("scope", [ReportScope.FRAMEWORK, ReportScope.AI_SYSTEM])
def test_pdf_through_the_job_has_the_ids_hashes_score_and_as_of(db_session, storage, scene, scope) -> None:
    target = scene.framework.id if scope == ReportScope.FRAMEWORK else scene.system.id
    report, body = _generate(db_session, storage, scope, target, ReportFormat.PDF)
    assert body.startswith(b"%PDF-") and report.sha256 == hashlib.sha256(body).hexdigest()
    reader = pypdf.PdfReader(io.BytesIO(body))
    # Long hashes may wrap: compare with whitespace removed.
    text = "".join("".join(page.extract_text() for page in reader.pages).split())
    for ref in ("RP-1", "RP-2", "RP-3", "RP-9"):
        assert ref in text
    assert scene.evidence.sha256 in text and scene.linked_evidence.sha256 in text
    assert "50.00%" in text
    assert report.as_of.astimezone(UTC).isoformat().replace(" ", "") in text
    assert "".join(scene.alert.title.split()) in text


def test_a_failed_rendering_marks_the_report_failed_and_audits_it(db_session, scene) -> None:
    class Broken:
        def put(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError("the object store is down")

    report = service.request_report(db_session(), scope=ReportScope.FRAMEWORK, target_id=scene.framework.id,
                                    fmt=ReportFormat.CSV, period=PERIOD, requested_by_id=None)
    db_session.commit()
    assert service.execute_report(factory(db_session), Broken(), report.id) == "failed"
    db_session.expire_all()
    failed = db_session.get(Report, report.id)
    assert failed.status == ReportStatus.FAILED and "object store is down" in failed.error
    assert [(e.action, e.outcome.value) for e in _audit(db_session, report.id)] == [
        ("report.request", "success"), ("report.generate", "error")]


def test_the_request_defers_the_render_job_in_its_transaction(db_session, scene) -> None:
    from sqlalchemy import text

    report = service.request_report(db_session(), scope=ReportScope.FRAMEWORK, target_id=scene.framework.id,
                                    fmt=ReportFormat.PDF, period=PERIOD, requested_by_id=None)
    jobs = db_session.execute(text("SELECT task_name, queue_name, args FROM procrastinate_jobs "
                                   "WHERE args->>'report_id' = :id"), {"id": str(report.id)}).all()
    assert [(j.task_name, j.queue_name) for j in jobs] == [("gov:render_report", "reports")]


def test_the_soa_is_cached_and_a_write_invalidates_it(db_session, scene) -> None:
    first, hit = soa.cached(db_session(), ReportScope.FRAMEWORK, scene.framework.id, PERIOD)
    db_session.commit()
    assert hit is False
    again, hit = soa.cached(db_session(), ReportScope.FRAMEWORK, scene.framework.id, PERIOD)
    assert hit is True and again == first
    scene.controls[2].title = "Renamed control"
    db_session.commit()  # the test's SET CONSTRAINTS ALL IMMEDIATE bumps at the statement
    after, hit = soa.cached(db_session(), ReportScope.FRAMEWORK, scene.framework.id, PERIOD)
    assert hit is False and "Renamed control" in {r.title for r in after.rows}


def test_the_snapshot_of_an_engine_session_is_repeatable_read(app) -> None:
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from extensions import db

    with Session(db.engine) as session:
        as_of = service._snapshot(session)
        level = session.execute(text("SHOW transaction_isolation")).scalar()
        now = session.execute(text("SELECT now()")).scalar()
    assert level == "repeatable read" and as_of == now


def test_computing_the_soa_runs_the_same_statements_whatever_the_size(db_session, make_user, make_control,
                                                                      make_evidence) -> None:
    from tests.conftest import count_statements

    small = report_scene.build(db_session, make_user, make_control, make_evidence)
    big = report_scene.build(db_session, make_user, make_control, make_evidence)
    for i in range(30):
        control = make_control(ref_id=f"BIG-{i}", title=f"Big {i}", framework=big.framework)
        make_evidence(big.owner, f"%PDF-1.4 {i}\n".encode(), name=f"Ev {i}", control=control)
    counts = {}
    for name, scene in (("small", small), ("big", big)):
        db_session.expire_all()
        with count_statements() as statements:
            soa.framework_soa(db_session(), scene.framework.id, PERIOD)
            soa.system_soa(db_session(), scene.system.id, PERIOD)
        counts[name] = len(statements)
    assert counts["big"] <= counts["small"] <= 20
