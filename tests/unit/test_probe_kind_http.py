"""The http_endpoint probe kind against a real local HTTP server: statuses, JSON conditions,
timeouts, refused connections, redirects (same host only), bounded bodies, secret headers."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from governance.models.enums import ResultOutcome
from governance.probes import CheckSpec, ConfigError, RunContext, TransientProbeError, get

KIND = get("http_endpoint")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
SECRET = "Bearer s3cr3t-t0ken-value-that-must-not-leak"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.seen.append((self.path, dict(self.headers.items())))
        status, headers, body, delay = self.server.routes.get(path, (404, {}, b"not found", 0.0))
        if delay:
            time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value.replace("{port}", str(self.server.server_port)))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    routes: dict[str, tuple[int, dict[str, str], bytes, float]]
    seen: list[tuple[str, dict[str, str]]]

    def route(self, path: str, status: int = 200, body: Any = b"", *, headers: dict[str, str] | None = None,
              delay: float = 0.0) -> str:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.routes[path] = (status, headers or {}, body, delay)
        return f"http://127.0.0.1:{self.server_port}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.seen = {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/health"


def _check(**params: Any) -> CheckSpec:
    return CheckSpec(id=uuid.uuid4(), name="c", parameters=KIND.validate_parameters(params),
                     control_ids=(uuid.uuid4(),))


def _run(checks: list[CheckSpec], **config: Any) -> list[Any]:
    ctx = RunContext(session=None, storage=None, settings=None, now=NOW,  # type: ignore[arg-type]
                     probe_id=uuid.uuid4(), probe_name="http")
    return KIND.run(ctx, KIND.validate_config(config), checks)


def test_status_and_json_conditions(server: _Server) -> None:
    health = server.route("/health", body={"model": {"version": "1.4.2", "replicas": 3, "tags": ["eu", "prod"]}})
    missing = server.route("/gone", 404, b"nope")
    text = server.route("/text", 200, b"<html>ok</html>", headers={"Content-Type": "text/html"})
    checks = [
        _check(url=health),
        _check(url=health, json_path="model.version", value="1.4.2"),
        _check(url=health, json_path="model.version", operator="==", value="1.4"),
        _check(url=health, json_path="model.replicas", operator=">=", value="2"),
        _check(url=health, json_path="$.model.tags", operator="contains", value="prod"),
        _check(url=missing),
        _check(url=missing, expected_status="404"),
        _check(url=health, json_path="model.sha", value="abc"),
        _check(url=text, json_path="model.version", value="1"),
        _check(url=health, json_path="model.version", operator=">", value="1"),
    ]
    got = _run(checks)
    assert [o.outcome for o in got] == [
        ResultOutcome.COMPLIANT, ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT, ResultOutcome.COMPLIANT,
        ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT, ResultOutcome.COMPLIANT, ResultOutcome.ERROR,
        ResultOutcome.ERROR, ResultOutcome.ERROR,
    ]
    assert [o.check_id for o in got] == [c.id for c in checks]
    assert got[1].observed == {"status": 200, "value": "1.4.2"}
    assert got[2].expected == {"status": 200, "json_path": "model.version", "operator": "==", "value": "1.4"}
    assert "expected == \"1.4\"" in got[2].message
    assert got[5].observed == {"status": 404} and "answered 404, expected 200" in got[5].message
    assert "has no field model.sha" in got[7].message
    assert "not with JSON" in got[8].message
    assert "is not a number" in got[9].message
    assert got[0].resource == health


def test_a_server_error_is_an_error_and_only_all_failing_makes_the_run_transient(server: _Server) -> None:
    ok = server.route("/ok", body={})
    broken = server.route("/broken", 503, b"busy")
    got = _run([_check(url=ok), _check(url=broken), _check(url=_refused_url())])
    assert [o.outcome for o in got] == [ResultOutcome.COMPLIANT, ResultOutcome.ERROR, ResultOutcome.ERROR]
    assert "answered 503 (server error)" in got[1].message
    assert "connection refused" in got[2].message

    with pytest.raises(TransientProbeError, match="2 of 2 checks got no answer"):
        _run([_check(url=broken), _check(url=_refused_url())])


def test_a_slow_server_times_out(server: _Server) -> None:
    slow = server.route("/slow", body={}, delay=2.5)
    ok = server.route("/ok", body={})
    started = time.monotonic()
    got = _run([_check(url=slow), _check(url=ok)], timeout_s="1")
    assert time.monotonic() - started < 2.4
    assert [o.outcome for o in got] == [ResultOutcome.ERROR, ResultOutcome.COMPLIANT]
    assert "no answer within 1 s" in got[0].message
    with pytest.raises(TransientProbeError, match="no answer within 1 s"):
        _run([_check(url=slow)], timeout_s=1)


def test_redirects_are_followed_on_the_same_host_only(server: _Server) -> None:
    final = server.route("/final", body={"ok": True})
    server.route("/hop", 302, headers={"Location": "/final"})
    server.route("/away", 302, headers={"Location": "http://localhost:{port}/final"})
    for i in range(7):
        server.route(f"/loop{i}", 302, headers={"Location": f"/loop{i + 1}"})
    base = final.rsplit("/", 1)[0]
    got = _run([_check(url=f"{base}/hop", json_path="ok", value="true"), _check(url=f"{base}/away"),
                _check(url=f"{base}/loop0")])
    assert got[0].outcome == ResultOutcome.COMPLIANT
    assert got[1].outcome == ResultOutcome.ERROR and "redirected off the host" in got[1].message
    assert got[2].outcome == ResultOutcome.ERROR and "more than 5 redirects" in got[2].message
    assert not any(path == "/final" and "localhost" in headers.get("Host", "") for path, headers in server.seen)


def test_the_body_is_read_only_when_needed_and_bounded(server: _Server) -> None:
    big = server.route("/big", 200, b"{\"a\": \"" + b"x" * (1024 * 1024 + 10) + b"\"}")
    got = _run([_check(url=big), _check(url=big, json_path="a", operator="contains", value="x")])
    assert got[0].outcome == ResultOutcome.COMPLIANT
    assert got[1].outcome == ResultOutcome.ERROR and "larger than 1 MiB" in got[1].message


def test_secret_headers_are_sent_but_never_shown(server: _Server) -> None:
    url = server.route("/private", body={"v": 1})
    config = {"headers": json.dumps({"Authorization": SECRET, "X-Api-Key": "k", "Accept": "application/json"})}
    got = _run([_check(url=url + "?token=abc123&page=2", json_path="v", value="2")], **config)
    assert server.seen[-1][1]["Authorization"] == SECRET
    assert server.seen[-1][1]["X-Api-Key"] == "k"
    shown = json.dumps([o.__dict__ for o in got], default=str)
    assert "s3cr3t" not in shown and "abc123" not in shown
    assert got[0].resource.endswith("/private?token=********&page=2")
    public = KIND.public_config(KIND.validate_config(config))
    assert public["headers"] == {"Authorization": "********", "X-Api-Key": "********", "Accept": "application/json"}
    restored = KIND.restore_secrets({**public, "timeout_s": 5}, KIND.validate_config(config))
    assert restored["headers"]["Authorization"] == SECRET and restored["timeout_s"] == 5


@pytest.mark.parametrize(("params", "field"), [
    ({}, "url"),
    ({"url": "ftp://example.org/x"}, "url"),
    ({"url": "http:///nohost"}, "url"),
    ({"url": "https://user:pw@example.org/"}, "url"),
    ({"url": "https://example.org:99999/"}, "url"),
    ({"url": "https://example.org/", "expected_status": "abc"}, "expected_status"),
    ({"url": "https://example.org/", "expected_status": "700"}, "expected_status"),
    ({"url": "https://example.org/", "value": "1"}, "json_path"),
    ({"url": "https://example.org/", "json_path": "a..b", "value": "1"}, "json_path"),
    ({"url": "https://example.org/", "json_path": "a", "operator": "~", "value": "1"}, "operator"),
    ({"url": "https://example.org/", "json_path": "a"}, "value"),
    ({"url": "https://example.org/", "json_path": "a", "operator": ">=", "value": "high"}, "value"),
])
def test_bad_parameters_are_refused_beside_their_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        KIND.validate_parameters(params)
    assert refused.value.field == field and refused.value.message


@pytest.mark.parametrize(("config", "field"), [
    ({"timeout_s": "61"}, "timeout_s"),
    ({"timeout_s": "0"}, "timeout_s"),
    ({"timeout_s": "soon"}, "timeout_s"),
    ({"headers": "{not json"}, "headers"),
    ({"headers": "[1, 2]"}, "headers"),
    ({"headers": '{"Bad Name": "x"}'}, "headers"),
    ({"headers": '{"X-A": "a\\r\\nX-Injected: 1"}'}, "headers"),
])
def test_bad_configuration_is_refused_beside_its_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        KIND.validate_config(config)
    assert refused.value.field == field


def test_form_text_becomes_typed_values() -> None:
    assert KIND.validate_config({}) == {"timeout_s": 10}
    assert KIND.validate_config({"timeout_s": " 30 ", "headers": ""}) == {"timeout_s": 30}
    assert KIND.validate_parameters({"url": " https://example.org/h ", "expected_status": "204",
                                     "json_path": "", "operator": "", "value": ""}) == {
        "url": "https://example.org/h", "expected_status": 204}
