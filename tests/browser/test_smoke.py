"""Smoke: sign in through the real form, land on the dashboard, refresh the counts through htmx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LiveServer = Any  # tests/browser/conftest.py:LiveServer, a callable giving absolute URLs


def _sign_in(page: Any, live_server: LiveServer, email: str, password: str) -> None:
    page.goto(live_server("/"))
    assert "/login" in page.url  # anonymous: sent to the sign-in page
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def test_sign_in_and_refresh_dashboard_counts(
    page: Any, live_server: LiveServer, committed_user: Callable[..., Any]
) -> None:
    email, password, name = committed_user("admin")
    _sign_in(page, live_server, email, password)

    assert page.url.rstrip("/") == live_server("").rstrip("/")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    assert page.get_by_text(name).is_visible()
    assert page.evaluate("typeof htmx !== 'undefined' && htmx.version.startsWith('2.0.')")

    # A marker that survives only if the page is not reloaded, and the block's current identity.
    page.evaluate("window.__smokeMarker = 'still-here'")
    counts = page.locator("#dashboard-counts")
    before = counts.get_attribute("data-generated-at")
    old_block = counts.element_handle()
    page.evaluate(
        "window.__swaps = [];"
        "document.addEventListener('htmx:afterSettle', e => window.__swaps.push(e.detail.requestConfig.path))"
    )

    # Keyboard-reachable: focus the button and press Enter, as a keyboard user would.
    refresh = page.get_by_role("button", name="Refresh")
    refresh.focus()
    with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true") as response_info:
        page.keyboard.press("Enter")
    response = response_info.value
    assert response.status == 200
    assert "HX-Request" in response.headers.get("vary", "")

    page.wait_for_function("el => !el.isConnected", arg=old_block)  # the old block was replaced
    page.wait_for_function("() => window.__swaps.length > 0")  # ... by an htmx swap that settled
    after = page.locator("#dashboard-counts").get_attribute("data-generated-at")
    assert after is not None and after != before
    assert page.locator("#dashboard-counts").count() == 1
    assert page.evaluate("window.__smokeMarker") == "still-here", "the page reloaded instead of swapping"
    assert page.locator("#stat-users dd").get_attribute("data-count") == "1"

    assert page.probe.problems() == []


def test_frameworks_page_and_error_flash(
    page: Any, live_server: LiveServer, committed_user: Callable[..., Any]
) -> None:
    email, password, _ = committed_user("admin")
    _committed_framework(live_server)
    _sign_in(page, live_server, email, password)
    page.get_by_role("link", name="Frameworks").click()
    page.wait_for_url(live_server("/frameworks"))
    assert page.get_by_role("heading", name="Frameworks").is_visible()
    assert page.get_by_role("link", name="Frameworks").get_attribute("aria-current") == "page"

    # Opening a framework loads its top-level controls in place (keyboard: focus the summary, Enter).
    summary = page.locator("details.framework summary", has_text="Smoke Framework")
    assert "2 controls" in summary.inner_text()
    summary.focus()
    with page.expect_response(lambda r: "/controls" in r.url and r.status == 200):
        page.keyboard.press("Enter")
    controls = page.locator("details.framework .control-list")
    controls.wait_for()
    assert "SMK-1" in controls.inner_text() and "SMK-2" in controls.inner_text()

    # An htmx request that fails shows its message in #flash (HX-Retarget), without a reload.
    page.evaluate("window.__smokeMarker = 'still-here'")
    page.evaluate("htmx.ajax('GET', '/frameworks/00000000-0000-0000-0000-000000000000/controls', "
                  "{target: '#main', swap: 'innerHTML'})")
    page.locator("#flash [role=alert]").wait_for()
    assert "Not found" in page.locator("#flash").inner_text()
    assert page.get_by_role("heading", name="Frameworks").is_visible()  # #main was not replaced
    assert page.evaluate("window.__smokeMarker") == "still-here"
    # The 404 itself is logged by Chromium as a failed resource load; nothing else may be.
    assert [p for p in page.probe.problems() if "404" not in p] == []


def _committed_framework(live_server: LiveServer) -> None:
    from extensions import db
    from governance.models.frameworks import Control, Framework

    with live_server.app.app_context():
        fw = Framework(title="Smoke Framework", version="1.0")
        db.session.add(fw)
        db.session.flush()
        for i in (1, 2):
            db.session.add(Control(framework_id=fw.id, ref_id=f"SMK-{i}", title=f"Smoke control {i}",
                                   sort_order=i))
        db.session.commit()
        db.session.remove()


def test_dashboard_widgets_reload_on_probe_run_finished_without_csp_problems(
    page: Any, live_server: LiveServer, committed_user: Callable[..., Any]
) -> None:
    email, password, _ = committed_user("admin")
    _committed_framework(live_server)
    _sign_in(page, live_server, email, password)
    scores = page.locator("#dashboard-scores")
    assert "Smoke Framework" in scores.inner_text()
    old_block = scores.element_handle()
    before = scores.get_attribute("data-generated-at")
    page.evaluate("window.__smokeMarker = 'still-here'")

    # The pages send HX-Trigger: probe-run-finished after a run; every widget reloads in place.
    with page.expect_response(lambda r: "widget=scores" in r.url and r.status == 200):
        page.evaluate("htmx.trigger(document.body, 'probe-run-finished')")
    page.wait_for_function("el => !el.isConnected", arg=old_block)
    page.wait_for_function(
        "before => document.querySelector('#dashboard-scores').getAttribute('data-generated-at') !== before",
        arg=before)
    assert page.locator("#dashboard-scores").count() == 1
    assert page.evaluate("window.__smokeMarker") == "still-here"
    assert page.probe.problems() == []
