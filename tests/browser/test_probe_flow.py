"""Issue 6's journey (Debian's Chromium): a compliance officer creates a metric_threshold probe on a
control, runs it, and the dashboard's score for that framework changes without a page reload."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from governance.storage import Storage
from tests.browser.test_smoke import _sign_in

LiveServer = Any  # tests/browser/conftest.py:LiveServer


def _committed_framework(live_server: LiveServer) -> str:
    from extensions import db
    from governance.models.frameworks import Control, Framework

    with live_server.app.app_context():
        framework = Framework(title="Model quality", version="2026")
        db.session.add(framework)
        db.session.flush()
        db.session.add(Control(framework_id=framework.id, ref_id="MQ-1", title="Accuracy meets the bar"))
        db.session.commit()
        framework_id = str(framework.id)
        db.session.remove()
    return framework_id


def _run_queued_jobs(live_server: LiveServer) -> None:
    """A queue worker, as `flask jobs worker` runs it, until the queue is empty (in a thread of its
    own: asyncio.run needs a thread without Playwright's loop)."""
    job_app = live_server.app.extensions["jobs"]
    worker = threading.Thread(target=job_app.run_worker,
                              kwargs={"wait": False, "install_signal_handlers": False})
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()


def test_create_a_metric_probe_run_it_and_watch_the_dashboard_score_change(
    browser: Any, page: Any, live_server: LiveServer, live_storage: Storage, committed_user: Callable[..., Any],
) -> None:
    framework_id = _committed_framework(live_server)
    live_storage.put("metrics/credit-model.json", json.dumps({"metrics": {"accuracy": 0.93}}).encode(),
                     content_type="application/json")
    settings = live_server.app.config["SETTINGS"]
    live_server.app.config["SETTINGS"] = dataclasses.replace(settings, dashboard_refresh_seconds=5)
    email, password, _ = committed_user("compliance_officer")

    try:
        # The dashboard, open in one tab: the framework has no assessed control yet.
        _sign_in(page, live_server, email, password)
        score = page.locator(f"#score-{framework_id}")
        score.wait_for()
        assert score.get_attribute("data-value") == ""
        page.evaluate("window.__marker = 'dashboard'")

        # In a second tab: the probe, its check on MQ-1, and "Run now".
        tab = page.context.new_page()
        tab.goto(live_server("/probes/new"))
        with tab.expect_response(lambda r: "fields=1" in r.url):
            tab.get_by_label("Kind").select_option(label="Metric threshold")
        tab.get_by_label("Name", exact=True).fill("Credit model accuracy")
        with tab.expect_navigation():
            tab.get_by_role("button", name="Create probe").click()
        tab.get_by_role("link", name="Add check").click()
        tab.wait_for_url("**/checks/new")
        tab.get_by_label("Name", exact=True).fill("Accuracy at least 0.9")
        with tab.expect_response(lambda r: "control_q=" in r.url and r.status == 200):
            tab.get_by_label("Find a control").fill("MQ-1")
        tab.locator(".control-choices label", has_text="MQ-1").click()
        tab.locator("#param-key").fill("metrics/credit-model.json")
        tab.locator("#param-field").fill("metrics.accuracy")
        tab.locator("#param-operator").fill(">=")
        tab.locator("#param-threshold").fill("0.9")
        with tab.expect_navigation():
            tab.get_by_role("button", name="Create check").click()
        tab.wait_for_url("**/checks/*-*")
        assert "Accuracy at least 0.9" in tab.locator("main").inner_text()
        assert "MQ-1" in tab.locator("main").inner_text()
        tab.locator("nav.breadcrumb").get_by_role("link", name="Credit model accuracy").click()
        tab.wait_for_url("**/probes/*-*")
        tab.get_by_role("button", name="Run now").click()
        tab.locator("progress, .run-status").first.wait_for()

        _run_queued_jobs(live_server)

        # The run's panel stops polling once finished; the dashboard tab updates by itself.
        tab.locator("main", has_text="Compliant").wait_for(timeout=15_000)
        page.bring_to_front()
        expect(score).to_have_attribute("data-value", "100.00", timeout=20_000)
        assert page.evaluate("window.__marker") == "dashboard"  # no reload
        assert "100" in score.inner_text()
        assert page.probe.problems() == []
    finally:
        live_server.app.config["SETTINGS"] = settings
