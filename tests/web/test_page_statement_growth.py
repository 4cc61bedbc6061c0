"""Each page of the scale benchmark (issue 10, point 4) runs the same number of SQL statements with a
few rows as with more rows than one page shows: a count that grew with the data would be an N+1.

Measured here, each with 3 rows and then 60 or more (past the page size), first page and the next:
- the frameworks list (/frameworks; 50 a page)
- search (/frameworks?q=...; 25 hits a page)
- the evidence list, unfiltered (/evidence; 50 a page)
- the audit log: the first page unfiltered, deep pages (?older= cursors, three pages down and back
  up with ?newer=), and filtered by action, outcome and object type (/audit; 50 a page)

Measured elsewhere (not repeated here):
- the dashboard (/), computed and from the cache:
  tests/web/test_dashboard.py::test_statement_counts_are_bounded_and_the_same_for_small_and_large_data
- a framework page with 1,220 controls against one with 14, a tree branch, a group and a control page:
  tests/web/test_framework_pages.py::test_framework_and_control_pages_run_a_bounded_number_of_statements
- a control page with 1 and with 12 pieces of evidence:
  tests/web/test_evidence_pages.py::test_control_page_statement_count_does_not_grow_with_its_evidence
- the evidence page (revisions, reviews, links) and a searched evidence list:
  tests/web/test_evidence_pages.py::test_page_statement_counts_do_not_grow_with_rows_revisions_or_links
- audit log pages within a date range, ten pages deep, and with an actor filter:
  tests/web/test_audit_pages.py::test_a_deep_page_runs_the_same_statements_as_the_first
- one audit entry expanded: tests/web/test_audit_pages.py::test_an_entry_expands_with_a_fixed_number_of_statements
- the audit log filtered over sealed (erased) entries:
  tests/web/test_erasure_pages.py (the /audit?action=bulk.sealed count)
- the layout baseline the benchmark divides by:
  tests/web/test_bench_baseline.py::test_the_baseline_runs_only_the_statements_every_signed_in_page_runs

Rows are committed through the db_session fixture (rolled back after each test). The first request
after signing in also loads the access rules, so every test makes one before it counts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select

from blueprints.audit import routes as audit_routes
from blueprints.evidence import routes as evidence_routes
from blueprints.frameworks import routes as framework_routes
from extensions import db
from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.models.frameworks import Control, Framework
from tests.conftest import count_statements

FEW, MANY = 3, 60
HX = {"HX-Request": "true"}


def _get(client: FlaskClient, url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(statements the request ran, its HTML); fails on anything but 200 and on OFFSET paging."""
    with count_statements() as statements:
        response = client.get(url, headers=headers or {})
    assert response.status_code == 200, (url, response.status_code)
    assert not any("OFFSET" in s.upper() for s in statements), url
    return len(statements), response.get_data(as_text=True)


def _next(html: str, rel: str = "next") -> str | None:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def _frameworks(prefix: str, start: int, stop: int) -> None:
    for i in range(start, stop):
        db.session.add(Framework(title=f"{prefix} {i:03d}", version="1.0"))
    db.session.commit()


def test_the_frameworks_list_runs_the_same_statements_with_3_and_60_frameworks(
        client: FlaskClient, login_as: Callable[[str], Any]) -> None:
    assert MANY > framework_routes.PAGE_SIZE
    login_as("auditor")
    client.get("/frameworks")
    _frameworks("Growth catalogue", 0, FEW)
    few, html = _get(client, "/frameworks")
    assert "Growth catalogue 002" in html
    _frameworks("Growth catalogue", FEW, MANY)
    many, html = _get(client, "/frameworks")
    assert html.count("Growth catalogue") >= framework_routes.PAGE_SIZE - 5
    url = _next(html)
    assert url is not None  # more than a page
    second, second_html = _get(client, url, HX)
    third_url = _next(second_html)
    assert few == many, (few, many)
    # The next page is its fragment: no layout, so no more than the full page.
    assert second <= many, (second, many)
    assert third_url is None or _get(client, third_url, HX)[0] == second


def _controls(framework: Framework, start: int, stop: int) -> None:
    for i in range(start, stop):
        db.session.add(Control(framework_id=framework.id, ref_id=f"TL-{i:03d}", title=f"Telemetry retention {i}",
                               text="Telemetry is kept and reviewed.", sort_order=i))
    db.session.commit()


def test_search_runs_the_same_statements_with_3_and_60_hits(client: FlaskClient,
                                                           login_as: Callable[[str], Any]) -> None:
    assert MANY > framework_routes.SEARCH_PAGE_SIZE
    login_as("auditor")
    client.get("/frameworks?q=telemetry")
    framework = Framework(title=f"Growth search {uuid.uuid4().hex[:6]}", version="1.0")
    db.session.add(framework)
    db.session.flush()
    _controls(framework, 0, FEW)
    few, html = _get(client, "/frameworks?q=telemetry")
    assert len(re.findall(r'id="hit-', html)) == FEW
    _controls(framework, FEW, MANY)
    many, html = _get(client, "/frameworks?q=telemetry")
    assert len(re.findall(r'id="hit-', html)) == framework_routes.SEARCH_PAGE_SIZE
    pages = []
    url = _next(html)
    while url:  # every further page of hits, to the last
        count, html = _get(client, url)
        pages.append(count)
        url = _next(html)
    assert len(pages) == 2  # 60 hits: 25 + 25 + 10
    # Matching frameworks are listed on the first page only: one statement fewer on the later ones.
    assert few == many and set(pages) == {many - 1}, (few, many, pages)


def test_the_evidence_list_runs_the_same_statements_with_3_and_60_rows(
        client: FlaskClient, login_as: Callable[[str], Any], make_user: Callable[..., Any],
        make_evidence: Callable[..., Any]) -> None:
    assert MANY > evidence_routes.PAGE_SIZE
    login_as("auditor")
    engineer = make_user("engineer")
    client.get("/evidence")
    for i in range(FEW):
        make_evidence(engineer, f"growth {i}".encode(), name=f"Growth evidence {i}")
    few, html = _get(client, "/evidence")
    assert len(re.findall(r'id="evidence-[0-9a-f-]{36}"', html)) == FEW
    for i in range(FEW, MANY):
        make_evidence(engineer, f"growth {i}".encode(), name=f"Growth evidence {i}")
    many, html = _get(client, "/evidence")
    assert len(re.findall(r'id="evidence-[0-9a-f-]{36}"', html)) == evidence_routes.PAGE_SIZE
    url = _next(html)
    assert url is not None
    full_second, second_html = _get(client, url)
    fragment_second, _ = _get(client, url, HX)
    assert len(re.findall(r'id="evidence-[0-9a-f-]{36}"', second_html)) == MANY - evidence_routes.PAGE_SIZE
    assert few == many == full_second, (few, many, full_second)
    assert fragment_second <= full_second


def _entries(count: int, *, action: str = "growth.sample", outcome: AuditOutcome = AuditOutcome.SUCCESS,
             object_type: str = "evidence", start: datetime | None = None) -> None:
    """`count` audit entries a minute apart (newest last), committed."""
    at = start or datetime.now(UTC) - timedelta(hours=2)
    for i in range(count):
        db.session.add(AuditLog(created_at=at + timedelta(seconds=i), actor_id=None, actor_name=f"growth-{i}",
                                action=action, object_type=object_type, object_id=f"g-{i}", outcome=outcome,
                                ip="192.0.2.20", request_id=uuid.uuid4().hex, details={"i": i}))
    db.session.commit()


def _rows(html: str) -> int:
    return len(re.findall(r'<tbody id="audit-entry-', html))


def test_the_audit_log_first_and_deep_pages_run_the_same_statements_with_few_and_many_entries(
        client: FlaskClient, login_as: Callable[[str], Any]) -> None:
    page_size = audit_routes.PAGE_SIZE
    login_as("auditor")
    client.get("/audit")
    _entries(FEW)
    # The log is never empty: the migrations' schema.change entries are in it (some hundreds).
    before = db.session.scalar(select(func.count()).select_from(AuditLog))
    few, html = _get(client, "/audit")
    assert _rows(html) == min(page_size, before)
    # Three full pages and a bit more (their clock lies before the test's own sign-in).
    _entries(3 * page_size + 10, start=datetime.now(UTC) - timedelta(hours=1))
    many, html = _get(client, "/audit")
    assert _rows(html) == page_size
    deep: list[int] = []
    url = _next(html)
    for _ in range(3):
        assert url is not None
        count, html = _get(client, url)
        assert "older=" in url and _rows(html) >= 1
        deep.append(count)
        url = _next(html)
    # And back up with the "newer" links (the ?newer= cursor), as a fragment too.
    up = _next(html, "prev")
    assert up is not None and "newer=" in up
    newer, _ = _get(client, up)
    newer_fragment, _ = _get(client, up, HX)
    assert few == many and set(deep) == {many} and newer == many, (few, many, deep, newer)
    assert newer_fragment <= newer


def test_the_filtered_audit_log_runs_the_same_statements_with_few_and_many_matches(
        client: FlaskClient, login_as: Callable[[str], Any]) -> None:
    page_size = audit_routes.PAGE_SIZE
    login_as("auditor")
    filters = "action=growth.denied&outcome=denied&object_type=control"
    client.get(f"/audit?{filters}")
    _entries(FEW, action="growth.denied", outcome=AuditOutcome.DENIED, object_type="control")
    _entries(FEW)  # not matching: another action, outcome and type
    few, html = _get(client, f"/audit?{filters}")
    assert _rows(html) == FEW
    _entries(page_size + 10, action="growth.denied", outcome=AuditOutcome.DENIED, object_type="control")
    _entries(page_size)  # more that do not match
    many, html = _get(client, f"/audit?{filters}")
    assert _rows(html) == page_size
    url = _next(html)
    assert url is not None and "action=growth.denied" in url
    deep, html = _get(client, url)
    assert _rows(html) == FEW + 10
    assert few == many == deep, (few, many, deep)
