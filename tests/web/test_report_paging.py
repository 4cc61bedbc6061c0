"""The reports list pages (blueprints/reports): newest first, PAGE_SIZE at a time, "Older reports"
carries a keyset cursor (the same Cursor as notifications and alerts); a bad cursor is a 400 with a
link back to the newest."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from governance.models import Report, ReportFormat, ReportScope, ReportStatus
from governance.services.reports import service
from tests import report_scene


@pytest.fixture
def many(db_session: Any, make_user: Any, make_control: Any, make_evidence: Any) -> tuple[Any, list[Report]]:
    scene = report_scene.build(db_session, make_user, make_control, make_evidence)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    reports = []
    for i in range(service.PAGE_SIZE + 3):
        # Two reports share each timestamp: the id breaks the tie.
        report = Report(id=uuid.uuid4(), scope=ReportScope.FRAMEWORK, format=ReportFormat.CSV,
                        status=ReportStatus.FAILED, framework_id=scene.framework.id, error=f"r{i}",
                        period_start=report_scene.PERIOD[0], period_end=report_scene.PERIOD[1],
                        title=scene.framework.title, created_at=base + timedelta(minutes=i // 2))
        reports.append(report)
    db_session.add_all(reports)
    db_session.commit()
    newest_first = sorted(reports, key=lambda r: (r.created_at, r.id), reverse=True)
    return scene, newest_first


def _ids(html: str) -> list[str]:
    return re.findall(r'<tr id="report-([0-9a-f-]{36})"', html)


def _older(html: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next"[^>]*>Older reports</a>', html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_the_list_pages_with_older_reports(client, login_as, many) -> None:
    scene, newest_first = many
    login_as("auditor")
    first = client.get(f"/reports/?framework={scene.framework.id}")
    html = first.get_data(as_text=True)
    assert first.status_code == 200
    assert _ids(html) == [str(r.id) for r in newest_first[:service.PAGE_SIZE]]
    older = _older(html)
    assert older is not None and f"framework={scene.framework.id}" in older
    second = client.get(older, headers={"HX-Request": "true"})
    html = second.get_data(as_text=True)
    assert second.status_code == 200
    assert _ids(html) == [str(r.id) for r in newest_first[service.PAGE_SIZE:]]
    assert _older(html) is None and "(continued)" in html


def test_the_reports_page_runs_the_same_statements_on_any_page(client, login_as, many) -> None:
    from tests.conftest import count_statements

    scene, _ = many
    login_as("auditor")
    html = client.get(f"/reports/?framework={scene.framework.id}").get_data(as_text=True)
    older = _older(html)
    assert older is not None
    counts = []
    for url in (f"/reports/?framework={scene.framework.id}", older):
        with count_statements() as statements:
            assert client.get(url, headers={"HX-Request": "true"}).status_code == 200
        counts.append(len(statements))
    assert counts[1] <= counts[0]


@pytest.mark.parametrize("bad", ["nonsense", "2026-11-01T00:00:00_not-a-uuid", f"2026-11-01T00:00:00_{uuid.uuid4()}"])
def test_a_bad_cursor_is_a_clear_400(client, login_as, many, bad) -> None:
    scene, _ = many
    login_as("auditor")
    response = client.get(f"/reports/?framework={scene.framework.id}&after={bad}")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "This page link is not valid" in html and f'href="/reports/?framework={scene.framework.id}"' in html
    assert _ids(html) == []
