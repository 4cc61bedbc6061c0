"""http_endpoint: a URL answers with the expected status and, optionally, a JSON field of its body
meets a condition (a model card is live; a serving health endpoint reports the expected version).

Configuration: timeout_s (default 10, at most 60) and headers (a JSON object sent with every
request, e.g. an Authorization header; secret-looking values are masked wherever they are shown and
never appear in results). Check parameters: url, expected_status (default 200), and optionally
json_path + operator + value.

Requests use urllib (no extra dependency): redirects are followed up to 5 times and only on the
same host, the body is read up to 1 MiB and only when a json_path needs it. A refused connection,
a timeout or a 5xx answer is transient: when every check of the run failed that way the whole run
is retried (TransientProbeError); otherwise those checks get an `error` result.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from governance.models.enums import ResultOutcome
from governance.probes import CheckSpec, ConfigError, Observation, RunContext, TransientProbeError, register
from governance.probes import _util as u

BODY_LIMIT = 1024 * 1024
MAX_REDIRECTS = 5
OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "contains")
USER_AGENT = "ai-governance-probe/1"


class FetchError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass
class Fetched:
    status: int
    body: bytes | None
    content_type: str | None
    url: str


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def __init__(self, host: str) -> None:
        self.host = host

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        target = urlsplit(newurl)
        if target.scheme not in ("http", "https") or (target.hostname or "").lower() != self.host:
            raise FetchError(f"redirected off the host to {u.mask_url(newurl)}; only redirects on the same "
                             "host are followed", transient=False)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def validate_url(value: Any, field: str = "url") -> str:
    url = u.text_value({field: value}, field, required=True, label="URL")
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(field, "Enter an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise ConfigError(field, "Put credentials in a header of the probe, not in the URL.")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ConfigError(field, "The port is not a number between 0 and 65535.") from None
    return url


def _read(response: Any, limit: int, deadline: float, timeout_s: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchError(f"no complete answer within {timeout_s:g} s", transient=True)
        chunk = response.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise FetchError(f"the response is larger than {limit // (1024 * 1024)} MiB", transient=False)
        chunks.append(chunk)


def fetch(url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0,
          read_body: bool = True, limit: int = BODY_LIMIT) -> Fetched:
    """GET `url` (same-host redirects only, bounded body). An HTTP error status is a Fetched, not an
    exception; FetchError is a failure to get an answer (transient when a retry may help)."""
    host = (urlsplit(url).hostname or "").lower()
    opener = urllib.request.build_opener(_SameHostRedirects(host))
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})  # noqa: S310
    deadline = time.monotonic() + timeout_s
    try:
        try:
            response = opener.open(request, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                raise FetchError(f"more than {MAX_REDIRECTS} redirects", transient=False) from None
            response = exc
        with response:
            status = int(response.getcode())  # an HTTPError (4xx/5xx) is a response too
            body = _read(response, limit, deadline, timeout_s) if read_body else None
            return Fetched(status, body, response.headers.get("Content-Type"), response.geturl())
    except FetchError:
        raise
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, FetchError):
            raise reason from None
        if isinstance(reason, ConnectionRefusedError):
            raise FetchError("connection refused", transient=True) from None
        if isinstance(reason, TimeoutError):
            raise FetchError(f"no answer within {timeout_s:g} s", transient=True) from None
        if isinstance(reason, socket.gaierror):
            raise FetchError(f"host {host} not found", transient=False) from None
        if isinstance(reason, ssl.SSLError):
            raise FetchError(f"TLS failed: {getattr(reason, 'reason', None) or reason}", transient=False) from None
        if isinstance(reason, OSError):
            raise FetchError(f"connection failed: {type(reason).__name__}", transient=True) from None
        raise FetchError(f"request failed: {reason}", transient=False) from None
    except TimeoutError:
        raise FetchError(f"no answer within {timeout_s:g} s", transient=True) from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise FetchError(f"the connection broke: {type(exc).__name__}", transient=True) from None
    except ssl.SSLError as exc:
        raise FetchError(f"TLS failed: {exc.reason or exc}", transient=False) from None
    except OSError as exc:
        raise FetchError(f"connection failed: {type(exc).__name__}", transient=True) from None


def validate_headers(params: Mapping[str, Any], field: str = "headers") -> dict[str, str] | None:
    headers = u.json_object_value(params, field)
    if headers is None:
        return None
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name.strip() or any(c in name for c in ":\r\n ") \
                or not name.isascii():
            raise ConfigError(field, f"{name!r} is not a header name.")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(field, f"The value of {name} must be text.")
        if any(c in str(value) for c in "\r\n"):
            raise ConfigError(field, f"The value of {name} must be on one line.")
        clean[name.strip()] = str(value)
    return clean


class HttpEndpoint:
    name = "http_endpoint"
    label = "HTTP endpoint"
    description = "A URL answers with the expected status; optionally a JSON field of the answer meets a condition."
    config_fields: u.Fields = (
        ("timeout_s", "Timeout (seconds)", "Per request; default 10, at most 60.", False),
        ("headers", "Headers (JSON)", 'Sent with every request, e.g. {"Authorization": "Bearer …"}. '
                                      "Secret values are masked when shown.", False),
    )
    parameter_fields: u.Fields = (
        ("url", "URL", "http:// or https://; redirects are followed on the same host only.", True),
        ("expected_status", "Expected status", "Default 200.", False),
        ("json_path", "JSON field", "Optional dotted path into the JSON answer, e.g. model.version.", False),
        ("operator", "Operator", "One of ==, !=, >=, <=, >, <, contains (default ==).", False),
        ("value", "Value", "What the JSON field is compared with, e.g. 1.4.2.", False),
    )
    secret_fields: tuple[str, ...] = ("headers",)

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        clean: dict[str, Any] = {"timeout_s": u.int_value(config, "timeout_s", default=10, minimum=1, maximum=60)}
        headers = validate_headers(config)
        if headers:
            clean["headers"] = headers
        return clean

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        clean: dict[str, Any] = {
            "url": validate_url(parameters.get("url")),
            "expected_status": u.int_value(parameters, "expected_status", default=200, minimum=100, maximum=599),
        }
        path = u.json_path_value(parameters, "json_path")
        if path is None:
            for extra in ("operator", "value"):
                if not u.blank(parameters.get(extra)):
                    raise ConfigError("json_path", f"Name the JSON field the {extra} applies to.")
            return clean
        clean["json_path"] = path
        clean["operator"] = u.choice_value(parameters, "operator", OPERATORS, default="==")
        value = parameters.get("value")
        if u.blank(value):
            raise ConfigError("value", "Enter the value the JSON field is compared with.")
        if clean["operator"] in u.ORDERING and u.to_number(value) is None:
            raise ConfigError("value", f"{clean['operator']} compares numbers: enter a number.")
        clean["value"] = value.strip() if isinstance(value, str) else value
        return clean

    def public_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        shown = dict(config)
        if config.get("headers"):
            shown["headers"] = u.mask_headers(config["headers"])
        return shown

    def restore_secrets(self, config: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        """A configuration edited from its public form: masked header values keep their old value."""
        restored = dict(config)
        old = previous.get("headers") or {}
        if config.get("headers"):
            restored["headers"] = {k: (old.get(k, v) if v == u.MASK else v) for k, v in config["headers"].items()}
        return restored

    def run(self, ctx: RunContext, config: Mapping[str, Any], checks: list[CheckSpec]) -> list[Observation]:
        timeout = float(min(config.get("timeout_s") or 10, 60, max(ctx.timeout_s, 1)))
        headers = config.get("headers") or {}
        outcomes = u.parallel(lambda check: self._check(check, headers, timeout), checks)
        failed = [message for _obs, message in outcomes if message is not None]
        if checks and len(failed) == len(checks):
            raise TransientProbeError(f"{len(failed)} of {len(checks)} checks got no answer; first: {failed[0]}")
        return [obs for obs, _message in outcomes]

    def _check(self, check: CheckSpec, headers: Mapping[str, str],
               timeout: float) -> tuple[Observation, str | None]:
        """The observation, and the transient failure's message when there was one."""
        params = check.parameters
        url = str(params.get("url") or "")
        shown = u.mask_url(url)
        expected_status = int(params.get("expected_status") or 200)
        path = params.get("json_path")
        expected: dict[str, Any] = {"status": expected_status}
        if path:
            expected.update(json_path=path, operator=params.get("operator") or "==", value=params.get("value"))

        def error(message: str, observed: Any = None) -> Observation:
            return Observation(check.id, ResultOutcome.ERROR, observed=observed, expected=expected,
                               message=message, resource=shown)

        try:
            answer = fetch(url, headers=headers, timeout_s=timeout, read_body=bool(path))
        except FetchError as exc:
            message = f"GET {shown}: {exc.message}"
            return error(message), (message if exc.transient else None)
        observed: dict[str, Any] = {"status": answer.status}
        if answer.status != expected_status:
            if answer.status >= 500:
                message = f"GET {shown} answered {answer.status} (server error)"
                return error(message, observed), message
            return Observation(check.id, ResultOutcome.NON_COMPLIANT, observed=observed, expected=expected,
                               message=f"GET {shown} answered {answer.status}, expected {expected_status}.",
                               resource=shown), None
        if not path:
            return Observation(check.id, ResultOutcome.COMPLIANT, observed=observed, expected=expected,
                               message=f"GET {shown} answered {answer.status}.", resource=shown), None
        try:
            document = json.loads(answer.body or b"")
        except ValueError:
            return error(f"GET {shown} answered {answer.status}, but not with JSON.", observed), None
        try:
            value = u.lookup(document, str(path))
        except u.MissingField as exc:
            return error(f"The answer of {shown} has no field {exc.args[0]}.", observed), None
        observed["value"] = u.jsonable(value)
        operator = str(params.get("operator") or "==")
        try:
            ok = u.compare(value, operator, params.get("value"))
        except u.NotComparable as exc:
            return error(f"{path} cannot be compared with {operator}: {exc}.", observed), None
        verdict = "" if ok else ", expected " + f"{operator} {u.short(params.get('value'))}"
        return Observation(
            check.id, ResultOutcome.COMPLIANT if ok else ResultOutcome.NON_COMPLIANT, observed=observed,
            expected=expected, resource=shown,
            message=f"GET {shown} answered {answer.status}; {path} = {u.short(value)}{verdict}.",
        ), None


KIND = register(HttpEndpoint())
