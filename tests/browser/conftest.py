"""A live server in a background thread and Debian's Chromium driven by Playwright (sync API).

The server is its own app instance on the test database, so the browser sees only committed rows:
browser tests create what they need with real commits, and `clean_database` truncates afterwards.
Never `playwright install`: the browser is Debian's /usr/bin/chromium.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@dataclass
class LiveServer:
    app: Flask
    url: str

    def __call__(self, path: str = "/") -> str:
        return self.url + path


@pytest.fixture
def live_server(app_factory: Callable[..., Flask], clean_database: None) -> Iterator[LiveServer]:
    application = app_factory()
    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(application, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def live_storage(live_server: LiveServer, s3_server: Any) -> Iterator[Any]:
    """The live server's object store on a bucket of the test's own, purged afterwards (the
    session app's `storage` fixture does not reach the live server's app)."""
    from governance.storage import Storage

    store = Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key,
                    bucket="t-" + uuid.uuid4().hex[:16])
    store.ensure_bucket()
    original = live_server.app.extensions["storage"]
    live_server.app.extensions["storage"] = store
    try:
        yield store
    finally:
        live_server.app.extensions["storage"] = original
        store.purge_bucket()


@pytest.fixture
def committed_user(live_server: LiveServer) -> Callable[..., Any]:
    """committed_user(role) -> (email, password, name): a user committed for real (the browser must
    see it); clean_database removes it after the test."""
    from extensions import db
    from governance.services import identity

    def make(role: str = "admin", password: str = PASSWORD) -> tuple[str, str, str]:
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.test"
        name = f"Browser {role.replace('_', ' ').title()}"
        with live_server.app.app_context():
            identity.create_user(db.session, email=email, name=name, role_name=role, password=password)
            db.session.commit()
            db.session.remove()
        return email, password, name

    return make


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (make test does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageProbe:
    """Console errors, failed page errors and CSP violations seen by the page."""

    console_errors: list[str]
    page_errors: list[str]

    def problems(self) -> list[str]:
        return self.console_errors + self.page_errors


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(java_script_enabled=True)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    probe = PageProbe([], [])
    pg.on("console", lambda msg: probe.console_errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: probe.page_errors.append(str(exc)))
    pg.probe = probe
    try:
        yield pg
    finally:
        context.close()
