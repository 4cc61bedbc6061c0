"""Who is acting, from where: set by the web layer (or a CLI/job) and read by services.

A ContextVar keeps the domain free of Flask request objects while letting every service record
the actor, IP, user agent and request id of the action it performs.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ActionContext:
    actor_id: uuid.UUID | None = None
    actor_name: str = "system"
    ip: str | None = None
    user_agent: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


SYSTEM = ActionContext()
_current: ContextVar[ActionContext] = ContextVar("governance_action_context", default=SYSTEM)


def current() -> ActionContext:
    return _current.get()


def set_current(ctx: ActionContext) -> object:
    """Set the context for the rest of this request/job; returns a token for reset()."""
    return _current.set(ctx)


def reset(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


@contextlib.contextmanager
def acting_as(ctx: ActionContext) -> Iterator[ActionContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
