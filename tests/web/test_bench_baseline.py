"""/layout-baseline, the yardstick of bench/probes_dashboard.py: the full layout (navigation included)
for any signed-in role, and no statement beyond what every signed-in page runs (session, permission
and navigation lookups), whatever the data."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import count_statements


def _statements(client: FlaskClient, path: str) -> list[str]:
    with count_statements() as statements:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    # The test transaction's savepoints are numbered per request: the names say nothing of the page.
    return [re.sub(r"sa_savepoint_\d+", "sa_savepoint", s) for s in statements]


def test_the_baseline_renders_the_layout_with_its_navigation(client: FlaskClient,
                                                            login_as: Callable[[str], Any]) -> None:
    user = login_as("auditor")

    html = client.get("/layout-baseline").get_data(as_text=True)

    assert "<html" in html and "</html>" in html and "<h1>Layout baseline</h1>" in html
    assert 'class="site-nav"' in html and 'id="nav-notifications"' in html and user.name in html


def test_the_baseline_runs_only_the_statements_every_signed_in_page_runs(
    client: FlaskClient, login_as: Callable[[str], Any], make_control: Callable[..., Any]
) -> None:
    login_as("engineer")
    for number in range(3):
        make_control(ref_id=f"B-{number}")
    client.get("/layout-baseline")  # first request of the session: caches warm

    baseline = _statements(client, "/layout-baseline")
    # The password form renders the same layout and queries nothing of its own either.
    form_page = _statements(client, "/account/password")
    client.get("/")  # computes the widgets and keeps them in the read cache (and commits)
    dashboard = _statements(client, "/")  # the steady state the benchmark measures

    assert len(baseline) == len(form_page), (baseline, form_page)
    assert sorted(baseline) == sorted(form_page)
    assert not any(table in s for s in baseline for table in ("controls", "frameworks", "current_scores", "checks"))
    # ... and the dashboard runs those same statements plus its own.
    assert len(dashboard) > len(baseline)
    assert all(s in dashboard for s in baseline)
