"""Issue 8's journey (Debian's Chromium): an engineer registers an AI system through the form,
answers the EU AI Act questionnaire one question at a time (htmx, no page reload) to "high"
(Annex III employment, profiling people, so no Article 6(3) exception), saves it; the system page
shows the EU AI Act controls of a deployer as applicable (Article 26(1)); the engineer adds the
standard AI checks, runs their probe, the model-card check fails (no model card evidence) and its
alert opens a task, shown on the system page and on the task board."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.test_smoke import _sign_in

LiveServer = Any  # tests/browser/conftest.py:LiveServer
SYSTEM = "CV screening assistant"
PLAN = {
    "prohibited_manipulation": "no", "prohibited_vulnerabilities": "no", "prohibited_social_scoring": "no",
    "prohibited_crime_prediction": "no", "prohibited_face_scraping": "no", "prohibited_emotion_workplace": "no",
    "prohibited_biometric_categorisation": "no", "realtime_biometric_identification": "no",
    "annex_i_product": "no", "annex_iii_area": "employment", "profiling": "yes", "deployer_organisation": "private",
    "emotion_or_biometric_categorisation": "no", "deep_fake_or_public_text": "no", "gpai_model": "no",
}


def _run_queued_jobs(live_server: LiveServer) -> None:
    """A queue worker, as `flask jobs worker` runs it, until the queue is empty (in a thread of its
    own: asyncio.run needs a thread without Playwright's loop)."""
    job_app = live_server.app.extensions["jobs"]
    worker = threading.Thread(target=job_app.run_worker, kwargs={"wait": False, "install_signal_handlers": False})
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()


def _model_card_task(live_server: LiveServer, system_id: str) -> tuple[str, str]:
    """(task id, title) of the task the failing model-card check opened, read as committed."""
    import uuid

    from sqlalchemy import select

    from extensions import db
    from governance.models.audit import Alert
    from governance.models.probes import Check, Probe
    from governance.models.tasks import Task

    with live_server.app.app_context():
        check = db.session.scalars(
            select(Check).join(Probe, Probe.id == Check.probe_id)
            .where(Probe.ai_system_id == uuid.UUID(system_id), Check.name == "Model card is current")).one()
        alert = db.session.scalars(select(Alert).where(Alert.source_type == "check",
                                                       Alert.source_id == str(check.id))).one()
        task = db.session.scalars(select(Task).where(Task.alert_id == alert.id)).one()
        assert task.ai_system_id == uuid.UUID(system_id)
        found = (str(task.id), task.title)
        db.session.remove()
    return found


def test_register_classify_high_and_a_failing_model_card_check_opens_a_task(
    browser: Any, page: Any, live_server: LiveServer, committed_user: Callable[..., Any],
) -> None:
    email, password, name = committed_user("engineer")
    _sign_in(page, live_server, email, password)

    # Register the system through the form.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="AI systems").click()
    page.wait_for_url("**/ai-systems")
    page.get_by_role("link", name="Register an AI system").click()
    page.wait_for_url("**/ai-systems/new")
    page.get_by_label("Name", exact=True).fill(SYSTEM)
    page.get_by_label("Purpose").fill("Ranks job applications so that recruiters read the strongest first.")
    page.get_by_label("Role under the EU AI Act").select_option("deployer")
    page.get_by_label("Owner", exact=True).select_option(label=f"{name} ({email})")
    with page.expect_navigation():
        page.get_by_role("button", name="Register").click()
    match = re.search(r"/ai-systems/([0-9a-f-]{36})$", page.url)
    assert match, page.url
    system_id = match.group(1)
    expect(page.locator("#system-risk-class")).to_have_text("Not classified")

    # The questionnaire, one question at a time, swapped in place.
    page.locator("#system-classify").click()
    page.wait_for_url(f"**/ai-systems/{system_id}/classify")
    page.evaluate("window.__marker = 'questionnaire'")
    asked: list[str] = []
    for _ in range(len(PLAN) + 1):
        question = page.locator("#ai-questionnaire input[name='question']")
        if question.count() == 0:
            break
        qid = question.get_attribute("value")
        assert qid in PLAN, f"unexpected question {qid}"
        asked.append(qid)
        fieldset = page.locator(f"#question-{qid}")
        expect(fieldset.locator("legend")).to_be_visible()
        fieldset.locator(f"#answer-{qid}-{PLAN[qid]}").check()
        page.get_by_role("button", name="Next").click()
        page.wait_for_function(
            "qid => { const q = document.querySelector(\"#ai-questionnaire input[name='question']\");"
            " return !q || q.value !== qid; }", arg=qid)
    assert "profiling" in asked and "annex_iii_exception" not in asked
    expect(page.locator("#result-class")).to_have_text("High risk")
    expect(page.locator("#classification-result")).to_contain_text("Annex III point 4")
    expect(page.locator("#classification-result")).to_contain_text("Article 26(1)")
    expect(page.locator("#answered-annex_iii_area")).to_contain_text("Employment")
    assert page.evaluate("window.__marker") == "questionnaire"  # no reload on the way

    page.get_by_role("button", name="Save classification").click()
    page.wait_for_url(f"**/ai-systems/{system_id}")
    expect(page.locator("#flash")).to_contain_text("Classified as high risk (version 1).")
    expect(page.locator("#system-risk-class")).to_have_text("High risk")
    applicable = page.locator("#system-controls-classification")
    expect(applicable).to_contain_text("Article 26(1)")
    expect(applicable).to_contain_text("Article 5(1)(a)")

    # The standard AI checks, and a run of their probe.
    page.locator("#add-standard-checks").click()
    probe_link = page.locator("#system-probes").get_by_role("link", name=f"AI checks — {SYSTEM}")
    expect(probe_link).to_be_visible()
    probe_link.click()
    page.wait_for_url("**/probes/*-*")
    expect(page.locator("#checks-panel")).to_contain_text("Model card is current")
    page.get_by_role("button", name="Run now").click()
    page.locator("progress, .run-status").first.wait_for()

    _run_queued_jobs(live_server)

    model_card_row = page.locator("#checks-panel tr", has_text="Model card is current")
    expect(model_card_row).to_contain_text("Not compliant", timeout=15_000)
    expect(model_card_row).to_contain_text("Article 11(1)")

    # The failing check's alert opened a task about this system.
    task_id, task_title = _model_card_task(live_server, system_id)
    assert "Model card is current" in task_title
    page.goto(live_server(f"/ai-systems/{system_id}"))
    expect(page.locator(f"#system-task-{task_id}")).to_contain_text(task_title)
    page.locator(f"#system-task-{task_id}").get_by_role("link").click()
    page.wait_for_url(f"**/tasks/{task_id}")
    expect(page.locator("h1")).to_have_text(task_title)
    page.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile(r"^Tasks")).click()
    page.wait_for_url("**/tasks")
    expect(page.locator(f"#task-list-open #task-{task_id}")).to_contain_text(task_title)
    assert page.probe.problems() == []
