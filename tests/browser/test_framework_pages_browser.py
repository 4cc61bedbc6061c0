"""A compliance officer searches a control, opens it, edits it inline and follows a mapping into
another framework, in Debian's Chromium."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.browser.test_smoke import _sign_in

LiveServer = Any  # tests/browser/conftest.py:LiveServer


def _committed_catalog(live_server: LiveServer) -> None:
    from extensions import db
    from governance.models.enums import MappingRelationship
    from governance.models.frameworks import Control, Framework, Mapping

    with live_server.app.app_context():
        rmf, iso = Framework(title="Browser RMF", version="1.0"), Framework(title="Browser ISO", version="2023")
        db.session.add_all([rmf, iso])
        db.session.flush()
        group = Control(framework_id=rmf.id, ref_id="GOVERN", title="Govern", sort_order=1, assessable=False)
        db.session.add(group)
        db.session.flush()
        source = Control(framework_id=rmf.id, parent_id=group.id, ref_id="GOVERN 1.1",
                         title="Legal and regulatory requirements are understood",
                         text="Requirements involving AI are understood, managed and documented.")
        target = Control(framework_id=iso.id, ref_id="5.2", title="AI policy")
        db.session.add_all([source, target])
        db.session.flush()
        db.session.add(Mapping(source_control_id=source.id, target_control_id=target.id,
                               relationship_type=MappingRelationship.SUBSET_OF,
                               rationale="The AI policy states the legal duties."))
        db.session.commit()
        db.session.remove()


def test_search_open_edit_inline_and_follow_a_mapping(
    page: Any, live_server: LiveServer, committed_user: Callable[..., Any]
) -> None:
    email, password, _ = committed_user("compliance_officer")
    _committed_catalog(live_server)
    _sign_in(page, live_server, email, password)
    page.get_by_role("link", name="Frameworks").click()
    page.wait_for_url(live_server("/frameworks"))
    page.evaluate("window.__marker = 'same-page'")

    # Typing searches through htmx (no reload); the hit is highlighted.
    with page.expect_response(lambda r: "q=regulatory" in r.url and r.status == 200):
        page.get_by_label("Search frameworks and controls").fill("regulatory")
    hit = page.locator("#control-hits li").first
    hit.wait_for()
    assert hit.locator("mark").first.inner_text().lower() == "regulatory"
    assert page.evaluate("window.__marker") == "same-page"

    hit.get_by_role("link").click()
    page.wait_for_url("**/controls/*")
    assert page.get_by_role("heading", name="Legal and regulatory requirements are understood").first.is_visible()
    assert "GOVERN" in page.locator("nav.breadcrumb").inner_text()

    # Inline edit: the form replaces the fields in place; saving swaps the fields back.
    page.evaluate("window.__marker = 'control-page'")
    page.locator("#control-fields").get_by_role("link", name="Edit").click()
    page.locator("form#control-fields").wait_for()
    page.get_by_label("Weight").fill("-2")
    page.get_by_role("button", name="Save").click()
    page.locator("#weight-error").wait_for()
    assert "from 0 to" in page.locator("#weight-error").inner_text()
    page.get_by_label("Title").fill("Legal requirements are understood and managed")
    page.get_by_label("Weight").fill("2.5")
    page.get_by_role("button", name="Save").click()
    fields = page.locator("section#control-fields")
    fields.wait_for()
    assert "Legal requirements are understood and managed" in fields.inner_text()
    assert page.locator("#control-weight").inner_text() == "2.5"
    assert page.evaluate("window.__marker") == "control-page", "the page reloaded instead of swapping"

    # Follow the mapping to the other framework's control, which maps back.
    mapping = page.locator("#mappings tbody tr").first
    assert "GOVERN 1.1 is subset of 5.2" in mapping.inner_text()
    mapping.get_by_role("link", name="5.2 AI policy").click()
    page.wait_for_url("**/controls/*")
    assert page.get_by_role("heading", name="AI policy").first.is_visible()
    assert "Browser ISO" in page.locator("nav.breadcrumb").inner_text()
    assert "Legal requirements are understood and managed" in page.locator("#mappings").inner_text()

    # The 422 of the refused weight is logged by Chromium as a failed resource load; nothing else may be.
    assert [p for p in page.probe.problems() if "422" not in p] == []
