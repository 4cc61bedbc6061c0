"""Per-request identity for logs and the audit trail: request id, actor, IP, user agent."""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, request
from flask_login import current_user
from werkzeug.wrappers import Response

from governance import context

# Accept a caller's X-Request-ID only when it is a plain token, so it cannot inject into logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def init_app(app: Flask) -> None:
    @app.before_request
    def bind_action_context() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        user = current_user if current_user.is_authenticated else None
        g.action_context_token = context.set_current(context.ActionContext(
            actor_id=user.id if user else None,
            actor_name=user.email if user else "anonymous",
            ip=request.remote_addr,
            user_agent=request.user_agent.string or None,
            request_id=g.request_id,
        ))

    @app.after_request
    def expose_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.teardown_request
    def unbind_action_context(_exc: BaseException | None) -> None:
        token = g.pop("action_context_token", None)
        if token is not None:
            context.reset(token)
