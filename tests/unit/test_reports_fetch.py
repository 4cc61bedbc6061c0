"""The report PDF never fetches anything remote (governance.services.reports.render_pdf): markup
in the data is text, and the URL fetcher refuses every URL but the report's own stylesheet. A
local listener shows that nothing connected."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pypdf
import pytest

from governance.services.reports import render_pdf, soa
from tests import report_scene


@pytest.fixture
def listener() -> Iterator[tuple[int, list[Any]]]:
    """A TCP port on 127.0.0.1 that records every connection made to it."""
    connections: list[Any] = []
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            connections.append(conn)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], connections
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


def test_markup_in_a_control_title_is_text_and_fetches_nothing(db_session, make_user, make_control, make_evidence,
                                                               listener) -> None:
    port, connections = listener
    hostile = (f'<img src="http://127.0.0.1:{port}/img.png">'
               f'<span style="background: url(http://127.0.0.1:{port}/bg.png)">x</span>')
    scene = report_scene.build(db_session, make_user, make_control, make_evidence, title_extra=hostile)
    data = soa.framework_soa(db_session(), scene.framework.id, (date(2026, 9, 1), date(2026, 11, 30)))
    fetcher = render_pdf.LocalOnlyFetcher()
    body = render_pdf.render(data, as_of="2026-11-30T12:00:00+00:00", report_id="r-1", fetcher=fetcher)
    assert connections == []
    assert fetcher.served == [render_pdf.STYLESHEET.as_uri()] and fetcher.refused == []
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(body)).pages)
    assert f"127.0.0.1:{port}/img.png" in "".join(text.split())  # shown as text, not loaded


def test_the_fetcher_refuses_remote_and_file_urls_in_the_document(listener) -> None:
    port, connections = listener
    weasyprint = render_pdf._weasyprint()
    html = (f'<html><head><link rel="stylesheet" href="report.css">'
            f'<link rel="stylesheet" href="http://127.0.0.1:{port}/evil.css">'
            f'<style>@import url("http://127.0.0.1:{port}/import.css"); '
            f'body {{ background: url(http://127.0.0.1:{port}/bg.png) }} '
            f'@font-face {{ font-family: X; src: url(http://127.0.0.1:{port}/font.woff) }}</style></head>'
            f'<body style="font-family: X"><img src="http://127.0.0.1:{port}/img.png">'
            f'<img src="file:///etc/passwd"><img src="../../app.py">hello</body></html>')
    fetcher = render_pdf.LocalOnlyFetcher()
    pdf = weasyprint.HTML(string=html, base_url=render_pdf.STYLESHEET.parent.as_uri() + "/",
                          url_fetcher=fetcher).write_pdf()
    assert pdf.startswith(b"%PDF-")
    assert connections == []
    assert fetcher.served == [render_pdf.STYLESHEET.as_uri()]
    refused = " ".join(fetcher.refused)
    for name in ("evil.css", "import.css", "bg.png", "img.png", "file:///etc/passwd", "app.py"):
        assert name in refused
