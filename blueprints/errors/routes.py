"""App-wide error pages: a full page normally, a message in #flash for an htmx request.

htmx swaps nothing for a 4xx/5xx by default, so the fragment is sent with HX-Retarget/HX-Reswap
pointing at the #flash region and static/js/app.js lets a retargeted error response swap: the user
sees why the action failed beside the page they are on. A 500 never shows a traceback; it shows the
request id so support can find the log line.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, g, make_response
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from blueprints.web import render, wants_fragment

bp = Blueprint("errors", __name__)

log = logging.getLogger(__name__)

TEMPLATE = "errors/error.html"

# code → (title, message). Messages say what the user can do, never what went wrong inside.
MESSAGES: dict[int, tuple[str, str]] = {
    400: ("Bad request", "The request could not be understood. Check what you entered and try again."),
    401: ("Sign in required", "Sign in to see this page."),
    403: ("Not allowed", "Your role does not allow this. Ask an administrator if you need access."),
    404: ("Not found", "There is nothing at this address. It may have been moved or deleted."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than this server accepts."),
    422: ("Cannot process", "The request was understood but its content is not valid."),
    429: ("Too many requests", "Too many requests in a short time. Wait a moment and try again."),
    500: ("Something went wrong", "The server failed to complete the request. It has been logged."),
}
CSRF_MESSAGE = "Your session expired or the form was tampered with; reload the page and try again"


def error_response(code: int, title: str, message: str, *, request_id: str | None = None) -> Response:
    response = render(TEMPLATE, block="error", status=code, code=code, title=title, message=message,
                      request_id=request_id)
    if wants_fragment():
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


def _http_error(error: HTTPException) -> Response:
    code = error.code or 500
    title, message = MESSAGES.get(code, (error.name, "The request could not be completed."))
    response = error_response(code, title, message)
    if code == 405 and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


for _code in (400, 401, 403, 404, 405, 413, 422, 429):
    bp.app_errorhandler(_code)(_http_error)


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError) -> Response:
    log.info("CSRF refused: %s", error.description)
    return error_response(400, "Request refused", CSRF_MESSAGE)


@bp.app_errorhandler(InternalServerError)
def internal_error(error: InternalServerError) -> Response:
    # Flask has already logged the original exception with its traceback.
    request_id = getattr(g, "request_id", None)
    title, message = MESSAGES[500]
    try:
        return error_response(500, title, message, request_id=request_id)
    except Exception:  # the page itself failed (e.g. the database is down): answer in plain text
        log.exception("error page failed to render")
        text = f"{title}. {message}" + (f" Request id: {request_id}" if request_id else "")
        response = make_response(text, 500)
        response.mimetype = "text/plain"
        return response
