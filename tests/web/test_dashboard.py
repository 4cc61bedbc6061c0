"""The dashboard widgets: framework scores with their trend sparkline and formula, failing checks,
evidence expiring soon, the counts; each its own htmx fragment that reloads itself; a bounded number
of statements whatever the data."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from governance.models.enums import EvidenceStatus, ResultOutcome
from governance.models.frameworks import Control, Framework
from governance.models.probes import Check, CheckControl, Probe
from governance.models.scoring import Metric
from governance.services import kpis, scoring
from tests.conftest import count_statements

HX = {"HX-Request": "true"}
WIDGETS = {"counts": "dashboard-counts", "scores": "dashboard-scores", "failing": "dashboard-failing",
           "expiring": "dashboard-expiring"}


class Data:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.probe = Probe(name=f"Dashboard probe {uuid.uuid4().hex[:6]}", kind="manual_attestation")
        session.add(self.probe)
        session.flush()

    def framework(self, title: str, outcomes: list[ResultOutcome | None], *, when: datetime | None = None) -> Any:
        fw = Framework(title=title, version="1")
        self.session.add(fw)
        self.session.flush()
        checks = []
        for i, outcome in enumerate(outcomes):
            control = Control(framework_id=fw.id, ref_id=f"{title[:3].upper()}-{i}", title=f"{title} {i}")
            self.session.add(control)
            self.session.flush()
            checks.append(self.check(control, outcome, name=f"{title} check {i}",
                                     when=(when or datetime.now(UTC)) - timedelta(minutes=i)))
        scoring.on_checks_changed(self.session, [c.id for c in checks])
        return fw

    def check(self, control: Any, outcome: ResultOutcome | None, *, name: str, when: datetime) -> Check:
        check = Check(probe_id=self.probe.id, control_id=control.id, name=name, last_outcome=outcome,
                      last_result_at=when if outcome else None, last_message=f"{name} says so")
        self.session.add(check)
        self.session.flush()
        self.session.add(CheckControl(check_id=check.id, control_id=control.id))
        self.session.flush()
        return check

    def history(self, fw: Any, values: list[str]) -> None:
        today = datetime.now(UTC).date()
        for age, value in enumerate(reversed(values), start=1):
            start, end = kpis.day_period(today - timedelta(days=age))
            self.session.add(Metric(key=kpis.FRAMEWORK_SCORE, value=Decimal(value), period_start=start,
                                    period_end=end, dimensions={"framework_id": str(fw.id)}))
        self.session.flush()


@pytest.fixture
def data(db_session: Any) -> Data:
    return Data(db_session())


def _section(html: str, element_id: str) -> str:
    match = re.search(rf'<section id="{element_id}".*?</section>', html, re.S)
    assert match, f"{element_id} missing"
    return match.group(0)


def test_page_has_every_widget_reloading_itself_with_its_own_fragment(
        client: FlaskClient, login_as: Any, override_settings: Any) -> None:
    override_settings(dashboard_refresh_seconds=45)
    login_as("compliance_officer")
    html = client.get("/").get_data(as_text=True)
    for widget, element_id in WIDGETS.items():
        section = _section(html, element_id)
        opening = section.split(">", 1)[0]
        assert f'hx-get="/?widget={widget}"' in opening
        assert 'hx-trigger="every 45s, probe-run-finished from:body"' in opening
        assert 'hx-swap="outerHTML"' in opening
        assert "As of <time datetime=" in section

        fragment = client.get(f"/?widget={widget}", headers=HX)
        body = fragment.get_data(as_text=True).strip()
        assert fragment.status_code == 200
        assert body.startswith(f'<section id="{element_id}"') and body.endswith("</section>")
        assert "<html" not in body
    assert "style=" not in html and "<script>" not in html.replace('<script src', '')
    # An unknown widget name is not an error: the counts block, as the Refresh button asks.
    other = client.get("/?widget=nope", headers=HX).get_data(as_text=True).strip()
    assert other.startswith('<section id="dashboard-counts"')


def test_framework_scores_show_value_counts_formula_link_and_trend(
        client: FlaskClient, login_as: Any, data: Data) -> None:
    fw = data.framework("Alpha Scores", [ResultOutcome.COMPLIANT, ResultOutcome.PARTIAL, ResultOutcome.ERROR,
                                         ResultOutcome.NOT_APPLICABLE, None])
    data.history(fw, ["20", "40.5"])
    login_as("auditor")
    html = client.get("/?widget=scores", headers=HX).get_data(as_text=True)

    row = re.search(rf'<tr id="score-{fw.id}".*?</tr>', html, re.S)
    assert row, html
    row_html = row.group(0)
    # (1 + 0.5) / 2 counted controls
    assert 'data-value="75.00"' in row_html and "75.0%" in row_html
    assert f'href="/frameworks/{fw.id}"' in row_html
    assert re.search(r'class="score-counted"[^>]*>2 ', row_html)
    assert re.search(r'class="score-unassessed">3<', row_html)  # error-only, NA-only, no outcome
    assert re.search(r'class="score-error">1<', row_html) and re.search(r'class="score-na">1<', row_html)
    svg = re.search(r"<svg.*?</svg>", row_html, re.S)
    assert svg
    svg_html = svg.group(0)
    assert 'role="img"' in svg_html and "aria-labelledby=" in svg_html
    title = re.search(r"<title[^>]*>(.*?)</title>", svg_html, re.S)
    assert title and "3 day(s) from 20.0%" in title.group(1) and "to 75.0%" in title.group(1)
    points = re.search(r'points="([^"]+)"', svg_html)
    assert points and len(points.group(1).split()) == 3
    assert "weighted average" in html and "partial 0.5" in html  # the formula, in words
    assert "style=" not in html


def test_failing_checks_newest_first_with_probe_and_controls(
        client: FlaskClient, login_as: Any, data: Data) -> None:
    now = datetime.now(UTC)
    fw = data.framework("Beta Failing", [ResultOutcome.NON_COMPLIANT, ResultOutcome.COMPLIANT], when=now)
    control = Control(framework_id=fw.id, ref_id="BET-X", title="shared")
    data.session.add(control)
    data.session.flush()
    newest = data.check(control, ResultOutcome.ERROR, name="Newest error", when=now + timedelta(minutes=5))
    data.session.add(CheckControl(check_id=newest.id, control_id=data.session.execute(
        Control.__table__.select().where(Control.ref_id == "BET-0", Control.framework_id == fw.id)).one().id))
    data.session.flush()
    login_as("engineer")
    html = client.get("/?widget=failing", headers=HX).get_data(as_text=True)
    items = re.findall(r'<li id="failing-([0-9a-f-]+)"', html)
    assert items[0] == str(newest.id)
    assert "Beta Failing check 1" not in html  # compliant checks are not failing
    first = re.search(rf'<li id="failing-{newest.id}".*?</li>', html, re.S).group(0)  # type: ignore[union-attr]
    assert "Error" in first and data.probe.name in first
    assert f'href="/probes/{data.probe.id}"' in first and f'href="/checks/{newest.id}"' in first
    assert ">BET-0<" in first and ">BET-X<" in first
    assert "Newest error says so" in first


def test_expiring_evidence_lists_approved_within_30_days_soonest_first(
        client: FlaskClient, login_as: Any, make_user: Any, make_evidence: Any, db_session: Any) -> None:
    owner = make_user("engineer")
    now = datetime.now(UTC)
    made = {}
    for name, status, days in (("Expires in 20", EvidenceStatus.APPROVED, 20),
                               ("Expires in 3", EvidenceStatus.APPROVED, 3),
                               ("Expires in 45", EvidenceStatus.APPROVED, 45),
                               ("In review 2", EvidenceStatus.IN_REVIEW, 2)):
        evidence = make_evidence(owner, name=name)
        evidence.status, evidence.expires_at = status, now + timedelta(days=days)
        made[name] = evidence
    db_session.flush()
    login_as("auditor")
    html = client.get("/?widget=expiring", headers=HX).get_data(as_text=True)
    names = re.findall(r'<li id="expiring-[^"]+"><a [^>]*>([^<]+)</a>', html)
    assert names.index("Expires in 3") < names.index("Expires in 20")
    assert "Expires in 45" not in names and "In review 2" not in names
    assert f'href="/evidence/{made["Expires in 3"].id}"' in html


def _statements(client: FlaskClient, url: str, headers: dict[str, str] | None = None) -> int:
    with count_statements() as statements:
        response = client.get(url, headers=headers or {})
    assert response.status_code == 200
    return len(statements)


def _measure(client: FlaskClient, override_settings: Any) -> dict[str, int]:
    """Statements per request: computed (the cache off: what a miss costs) and from the cache."""
    override_settings(dashboard_cache_seconds=0)
    counts = {"page": _statements(client, "/")}
    for widget in WIDGETS:
        counts[widget] = _statements(client, f"/?widget={widget}", HX)
    override_settings(dashboard_cache_seconds=60)
    client.get("/")  # computes every widget and keeps it
    counts["page, cached"] = _statements(client, "/")
    for widget in WIDGETS:
        counts[f"{widget}, cached"] = _statements(client, f"/?widget={widget}", HX)
    return counts


def test_statement_counts_are_bounded_and_the_same_for_small_and_large_data(
        client: FlaskClient, login_as: Any, data: Data, make_user: Any, make_evidence: Any, db_session: Any,
        override_settings: Any) -> None:
    login_as("admin")
    data.framework("Small one", [ResultOutcome.NON_COMPLIANT])
    client.get("/")  # warm caches (the role's permissions) before measuring
    small = _measure(client, override_settings)

    for i in range(15):  # more frameworks than shown, each with history and failing checks
        fw = data.framework(f"Large {i:02d}", [ResultOutcome.NON_COMPLIANT, ResultOutcome.PARTIAL,
                                               ResultOutcome.ERROR, ResultOutcome.COMPLIANT])
        data.history(fw, [str(10 + d) for d in range(30)])
    owner = make_user("engineer")
    for i in range(12):
        evidence = make_evidence(owner, name=f"Expiring {i}")
        evidence.status, evidence.expires_at = EvidenceStatus.APPROVED, datetime.now(UTC) + timedelta(days=i + 1)
    db_session.flush()
    large = _measure(client, override_settings)

    assert large == small
    assert large["scores"] - large["counts"] <= 3 and large["failing"] - large["counts"] <= 2
    assert large["expiring"] - large["counts"] <= 1
    # From the cache, every widget costs one statement beyond the sign-in's, and so do all of the
    # page's widgets together (the page adds the navigation's two counts: unread notifications, and
    # open alerts with my open and overdue tasks).
    signed_in = large["counts, cached"] - 1
    assert all(large[f"{w}, cached"] == signed_in + 1 for w in WIDGETS)
    assert large["page, cached"] == signed_in + 1 + 2
    assert large["page"] - large["page, cached"] == 7 - 1  # computed: the widgets' own seven
