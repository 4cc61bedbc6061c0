"""Issue point 10: an admin creates an engineer, changes them to auditor inline (htmx, no reload);
the new user signs in and is refused an admin page."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

LiveServer = Any

NEW_PASSWORD = "quartz lantern orbit 42"


def _sign_in(page: Any, live_server: LiveServer, email: str, password: str) -> None:
    page.goto(live_server("/login"))
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def test_admin_creates_an_engineer_makes_them_auditor_and_they_are_refused_admin_pages(
    page: Any, live_server: LiveServer, committed_user: Callable[..., Any], browser: Any
) -> None:
    email, password, _ = committed_user("admin")
    _sign_in(page, live_server, email, password)
    page.get_by_role("link", name="Admin").click()
    page.wait_for_url(live_server("/admin/users"))

    page.get_by_role("link", name="New user").click()
    page.wait_for_url(live_server("/admin/users/new"))
    new_email = f"new-{uuid.uuid4().hex[:8]}@example.test"
    page.get_by_label("Name").fill("Nova Engineer")
    page.get_by_label("E-mail").fill(new_email)
    page.get_by_label("Role").select_option("engineer")
    page.get_by_label("Initial password").fill(NEW_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Create user").click()
    assert f"Created {new_email} as engineer." in page.locator("#flash").inner_text()

    page.evaluate("window.__adminMarker = 'still-here'")
    # Search narrows the list in place.
    with page.expect_response(lambda r: "q=new-" in r.url and r.status == 200):
        page.get_by_label("Search by name or e-mail").fill(new_email[:12])
    page.wait_for_function("() => document.querySelectorAll('#user-rows tr').length === 1")
    assert email not in page.locator("#user-rows").inner_text()
    row = page.locator("tr", has_text=new_email)
    with page.expect_response(lambda r: r.url.endswith("/role") and r.status == 200):
        row.get_by_label("Role of Nova Engineer").select_option("auditor")
    row = page.locator("tr", has_text=new_email)
    row.get_by_text("Role changed to auditor.").wait_for()
    assert row.get_by_label("Role of Nova Engineer").input_value() == "auditor"
    assert page.evaluate("window.__adminMarker") == "still-here", "the page reloaded instead of swapping"
    assert page.probe.problems() == []

    # The new user, in a browser of their own.
    context = browser.new_context()
    try:
        other = context.new_page()
        _sign_in(other, live_server, new_email, NEW_PASSWORD)
        assert other.get_by_role("heading", name="Dashboard").is_visible()
        assert other.get_by_role("link", name="Admin").count() == 0
        response = other.goto(live_server("/admin/users"))
        assert response is not None and response.status == 403
        assert other.get_by_role("heading", name="Not allowed").is_visible()
    finally:
        context.close()
