"""Issue 5's journey (Debian's Chromium): an engineer uploads a file to a control with the progress
bar; an auditor opens the evidence page, downloads the file, approves it; the control page then
shows the evidence approved."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from governance.storage import Storage
from tests.browser.test_smoke import _sign_in

LiveServer = Any  # tests/browser/conftest.py:LiveServer


def _committed_control(live_server: LiveServer) -> tuple[str, str]:
    from extensions import db
    from governance.models.frameworks import Control, Framework

    with live_server.app.app_context():
        framework = Framework(title="Model risk policy", version="2026")
        db.session.add(framework)
        db.session.flush()
        control = Control(framework_id=framework.id, ref_id="MR-7", title="Evaluation reports are kept")
        db.session.add(control)
        db.session.commit()
        control_id = str(control.id)
        db.session.remove()
    return control_id, "MR-7"


def _console_problems(page: Any) -> list[str]:
    # Chromium logs every 4xx/5xx response as a console error; this journey expects none at all.
    return page.probe.problems()


def test_upload_to_a_control_download_and_approve(
    browser: Any, page: Any, live_server: LiveServer, live_storage: Storage,
    committed_user: Callable[..., Any], tmp_path: Path,
) -> None:
    control_id, ref = _committed_control(live_server)
    engineer_email, password, _ = committed_user("engineer")
    auditor_email, _, auditor_name = committed_user("auditor")

    # A 7 MiB PDF: more than one 5 MiB part, so the upload is a real multipart upload.
    report = tmp_path / "evaluation report.pdf"
    report.write_bytes(b"%PDF-1.7\n" + os.urandom(7 * 1024 * 1024))
    digest = hashlib.sha256(report.read_bytes()).hexdigest()

    # --- the engineer uploads it from the control page ------------------------------------------
    _sign_in(page, live_server, engineer_email, password)
    page.goto(live_server(f"/controls/{control_id}"))
    page.locator("#control-evidence").get_by_role("link", name="Upload evidence").click()
    page.wait_for_url("**/evidence/new?control=*")
    assert ref in page.locator("main").inner_text()
    # Record what the progress bar shows while the upload runs (no reload happens: window survives).
    page.evaluate("""() => {
        window.__progress = [];
        document.addEventListener('htmx:xhr:progress', () => {
            const bar = document.getElementById('evidence-upload-progress');
            if (bar) window.__progress.push(bar.value);
        });
    }""")
    page.get_by_label("Name").fill("Q3 model evaluation report")
    page.get_by_label("Description").fill("Accuracy and fairness evaluation of the credit model.")
    page.locator("input[type=file]").set_input_files(str(report))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url("**/evidence/*-*")
    page.get_by_role("heading", name="Q3 model evaluation report").wait_for()
    progress = page.evaluate("window.__progress")
    assert progress and max(progress) == 100, progress
    detail_url = page.url
    assert digest in page.locator("#revisions-panel").inner_text()
    assert _console_problems(page) == []

    # --- the auditor opens it from the control page, downloads it and approves it --------------
    auditor_context = browser.new_context(accept_downloads=True)
    auditor_context.set_default_timeout(10_000)
    auditor = auditor_context.new_page()
    errors: list[str] = []
    auditor.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    auditor.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        _sign_in(auditor, live_server, auditor_email, password)
        auditor.goto(live_server(f"/controls/{control_id}"))
        row = auditor.locator("#control-evidence tr", has_text="Q3 model evaluation report")
        assert "In review" in row.inner_text()
        row.get_by_role("link", name="Q3 model evaluation report").click()
        auditor.wait_for_url(detail_url)

        with auditor.expect_download() as caught:
            auditor.get_by_role("link", name="Download revision 1").click()
        download = caught.value
        assert download.suggested_filename == "evaluation report.pdf"
        saved = tmp_path / "downloaded.pdf"
        download.save_as(saved)
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest

        auditor.evaluate("window.__marker = 'evidence-page'")
        auditor.get_by_label("Comment").fill("Matches the model card; period covered.")
        auditor.get_by_role("button", name="Approve revision 1").click()
        auditor.locator("#revisions-panel", has_text="Matches the model card").wait_for()
        assert auditor.evaluate("window.__marker") == "evidence-page"  # swapped in place, no reload
        assert f"by {auditor_name}" in auditor.locator("#revisions-panel").inner_text()

        auditor.goto(live_server(f"/controls/{control_id}"))
        row = auditor.locator("#control-evidence tr", has_text="Q3 model evaluation report")
        assert "Approved" in row.inner_text()
        assert errors == []
    finally:
        auditor_context.close()

    # What the store holds is what the engineer uploaded, locked after approval.
    from extensions import db
    from governance.models.evidence import EvidenceRevision

    with live_server.app.app_context():
        revision = db.session.scalars(select(EvidenceRevision)).one()
        assert revision.sha256 == digest and revision.locked_until is not None
        db.session.remove()
    assert hashlib.sha256(b"".join(live_storage.open(revision.object_key, revision.version_id))).hexdigest() == digest
