"""Issue 4's journey: a compliance officer loads a shipped library, searches a control, edits it
inline and opens a mapped control in another framework (Debian's Chromium)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.browser.test_smoke import _sign_in

LiveServer = Any  # tests/browser/conftest.py:LiveServer


def _committed_ai_rmf(live_server: LiveServer) -> None:
    from extensions import db
    from governance.services import libraries

    with live_server.app.app_context():
        libraries.load_library(db.session, "nist-ai-rmf")
        db.session.commit()
        db.session.remove()


def test_load_a_library_search_edit_and_follow_a_crosswalk(
    page: Any, live_server: LiveServer, committed_user: Callable[..., Any]
) -> None:
    email, password, _ = committed_user("compliance_officer")
    _committed_ai_rmf(live_server)
    _sign_in(page, live_server, email, password)

    # Load ISO/IEC 42001 Annex A from the Libraries page: its crosswalk to the AI RMF comes with it.
    page.goto(live_server("/frameworks/libraries"))
    with page.expect_navigation():  # POST, then 303 back to the same URL
        page.get_by_role("button", name="Load ISO/IEC 42001").click()
    flash = page.locator("#flash").inner_text()
    assert "Loaded ISO/IEC 42001 2023: 49 controls." in flash
    assert "Added 57 mappings from the shipped crosswalks." in flash

    # Search for a control of the new framework.
    page.get_by_role("link", name="All frameworks").click()
    page.wait_for_url(live_server("/frameworks"))  # loaded, so htmx listens to the search box
    with page.expect_response(lambda r: "q=" in r.url and r.status == 200):
        page.get_by_label("Search frameworks and controls").fill("AI policy")
    hit = page.locator("#control-hits li", has_text="A.2.2").first
    hit.wait_for()
    hit.get_by_role("link").first.click()
    page.wait_for_url("**/controls/*")
    assert "ISO/IEC 42001" in page.locator("nav.breadcrumb").inner_text()

    # Edit it inline: the fields swap in place, no reload.
    page.evaluate("window.__marker = 'control-page'")
    page.locator("#control-fields").get_by_role("link", name="Edit").click()
    page.locator("form#control-fields").wait_for()
    page.get_by_label("Weight").fill("3")
    page.get_by_role("button", name="Save").click()
    page.locator("section#control-fields").wait_for()
    assert page.locator("#control-weight").inner_text() == "3"
    assert page.evaluate("window.__marker") == "control-page"

    # Open a mapped control in the other framework.
    link = page.locator("#mappings a", has_text="GOVERN 1.1").first
    link.click()
    page.wait_for_url("**/controls/*")
    assert "NIST AI RMF" in page.locator("nav.breadcrumb").inner_text()
    assert "A.2.2" in page.locator("#mappings").inner_text()
    assert page.probe.problems() == []
