"""Report pages (blueprints/reports): request from a framework or an AI system, the list with its
polling, the download (streamed, hashed), the refusals and bounded statement counts."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from governance.models import AuditLog, Report, ReportStatus
from governance.services.reports import service
from tests import report_scene
from tests.conftest import count_statements


@pytest.fixture
def scene(db_session: Any, make_user: Any, make_control: Any, make_evidence: Any) -> report_scene.Scene:
    return report_scene.build(db_session, make_user, make_control, make_evidence)


def _form(client: Any, csrf_token: Any, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)
    return csrf_token(page.get_data(as_text=True))


def _post(client: Any, token: str, scope: str, target: Any, **fields: str) -> Any:
    today = datetime.now(UTC).date()
    data = {"csrf_token": token, "scope": scope, "target": str(target), "format": "csv",
            "period_start": (today - timedelta(days=30)).isoformat(), "period_end": today.isoformat(), **fields}
    return client.post("/reports/", data=data)


def _run_jobs(db_session: Any, storage: Any) -> None:
    for report in db_session.scalars(select(Report).where(Report.status == ReportStatus.QUEUED)):
        service.execute_report(lambda: contextlib.nullcontext(db_session()), storage, report.id)


def test_framework_and_system_pages_link_to_their_reports(client, login_as, scene) -> None:
    login_as("auditor")
    assert f"/reports/?framework={scene.framework.id}" in client.get(
        f"/frameworks/{scene.framework.id}").get_data(as_text=True)
    assert f"/reports/?ai_system={scene.system.id}" in client.get(
        f"/ai-systems/{scene.system.id}").get_data(as_text=True)


@pytest.mark.parametrize("scope", ["framework", "ai_system"])
def test_request_generate_and_download(client, login_as, csrf_token, db_session, storage, scene, scope) -> None:
    user = login_as("compliance_officer")
    target = scene.framework.id if scope == "framework" else scene.system.id
    page = client.get(f"/reports/?{scope}={target}")
    html = page.get_data(as_text=True)
    assert 'id="report-form"' in html and "50.00 %" in html  # the preview, from the cache
    response = _post(client, csrf_token(html), scope, target, format="csv")
    assert response.status_code == 303
    report = db_session.scalars(select(Report).where(Report.requested_by_id == user.id)).one()
    assert report.status == ReportStatus.QUEUED
    listing = client.get(f"/reports/?{scope}={target}").get_data(as_text=True)
    assert f'id="report-{report.id}"' in listing and 'hx-trigger="every 2s"' in listing
    _run_jobs(db_session, storage)
    db_session.expire_all()
    listing = client.get("/reports/").get_data(as_text=True)
    assert 'hx-trigger="every 2s"' not in listing and "succeeded" in listing
    download = client.get(f"/reports/{report.id}/download")
    assert download.status_code == 200
    body = download.get_data()
    assert hashlib.sha256(body).hexdigest() == download.headers["X-Content-SHA256"] == report.sha256
    assert download.headers["Content-Disposition"].startswith("attachment; filename=\"soa-")
    assert download.headers["Content-Type"].startswith("text/csv")
    actions = list(db_session.scalars(select(AuditLog.action).where(AuditLog.object_id == str(report.id))
                                      .order_by(AuditLog.seq)))
    assert actions == ["report.request", "report.generate"]


def test_the_list_polls_as_an_htmx_fragment(client, login_as, csrf_token, db_session, scene) -> None:
    login_as("admin")
    token = _form(client, csrf_token, f"/reports/?framework={scene.framework.id}")
    assert _post(client, token, "framework", scene.framework.id).status_code == 303
    fragment = client.get("/reports/", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and text.lstrip().startswith('<section class="section" id="reports-list"')
    assert "<html" not in text and "HX-Request" in fragment.headers["Vary"]


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"period_start": "2026-05-02", "period_end": "2026-05-01"}, "period_end", "ends before it starts"),
    ({"period_start": ""}, "period_start", "first day"),
    ({"period_end": (date.today() + timedelta(days=5)).isoformat()}, "period_end", "future"),
    ({"period_start": "not-a-date"}, "period_start", "valid date"),
])
def test_a_bad_period_is_422_beside_its_field(client, login_as, csrf_token, db_session, scene, fields, field,
                                             message) -> None:
    login_as("auditor")
    token = _form(client, csrf_token, f"/reports/?framework={scene.framework.id}")
    response = _post(client, token, "framework", scene.framework.id, **fields)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="{field}-error"' in html and message in html
    assert db_session.scalars(select(Report)).first() is None


def test_unknown_target_is_404(client, login_as, csrf_token, scene) -> None:
    import uuid

    login_as("admin")
    token = _form(client, csrf_token, f"/reports/?framework={scene.framework.id}")
    assert _post(client, token, "framework", uuid.uuid4()).status_code == 404
    assert _post(client, token, "ai_system", scene.framework.id).status_code == 404
    assert client.get(f"/reports/?framework={uuid.uuid4()}").status_code == 404
    assert client.get("/reports/not-a-uuid/download").status_code == 404


def test_engineers_read_but_may_not_request(client, login_as, csrf_token, scene) -> None:
    login_as("engineer")
    page = client.get(f"/reports/?framework={scene.framework.id}")
    assert page.status_code == 200 and 'id="report-form"' not in page.get_data(as_text=True)
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert _post(client, token, "framework", scene.framework.id).status_code == 403


def test_a_post_without_csrf_is_refused(client, login_as, db_session, scene) -> None:
    login_as("admin")
    response = _post(client, "forged", "framework", scene.framework.id)
    assert response.status_code == 400
    assert db_session.scalars(select(Report)).first() is None


def test_a_report_not_rendered_yet_is_not_downloadable(client, login_as, csrf_token, db_session, scene) -> None:
    login_as("admin")
    token = _form(client, csrf_token, f"/reports/?framework={scene.framework.id}")
    _post(client, token, "framework", scene.framework.id)
    report = db_session.scalars(select(Report)).one()
    assert client.get(f"/reports/{report.id}/download").status_code == 409


def _page_statements(client: Any, url: str) -> int:
    client.get(url)  # warm: caches, the session's user
    with count_statements() as statements:
        assert client.get(url).status_code == 200
    return len(statements)


def test_page_statement_counts_do_not_grow_with_the_data(client, login_as, csrf_token, db_session, storage,
                                                        make_user, make_control, make_evidence) -> None:
    login_as("admin")
    small = report_scene.build(db_session, make_user, make_control, make_evidence)
    big = report_scene.build(db_session, make_user, make_control, make_evidence)
    for i in range(40):
        control = make_control(ref_id=f"BIG-{i}", title=f"Big {i}", framework=big.framework)
        make_evidence(big.owner, f"%PDF-1.4 {i}\n".encode(), name=f"Ev {i}", control=control)
    token = _form(client, csrf_token, f"/reports/?framework={small.framework.id}")
    for _ in range(3):
        _post(client, token, "framework", small.framework.id)
    counts = {}
    for name, scene in (("small", small), ("big", big)):
        url = f"/reports/?framework={scene.framework.id}"
        counts[name] = _page_statements(client, url)
    assert counts["big"] <= counts["small"]
    for _ in range(10):
        _post(client, token, "framework", big.framework.id)
    assert _page_statements(client, "/reports/") == _page_statements(client, "/reports/")
    few = _page_statements(client, f"/reports/?framework={small.framework.id}")
    many = _page_statements(client, f"/reports/?framework={big.framework.id}")
    assert many <= few
