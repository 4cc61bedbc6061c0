"""The audit-log filters from a query string: typed values for the queries, the text as typed for the
form, and an error beside each field that could not be read (the page answers 422, never a 500).

Times are read as UTC unless they carry an offset. "From" includes its moment (a date: from that
day's midnight); "to" includes the whole day when it is a date, and everything up to and including
the given minute or second otherwise, so "to 2026-03-31" keeps the last day of March.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from governance.models.enums import AuditOutcome
from governance.services import audit_queries as queries

FIELDS = ("actor", "action", "object_type", "object_id", "outcome", "from", "to")
MAX_LENGTHS = {"actor": 320, "action": 128, "object_type": 64, "object_id": 255, "from": 40, "to": 40}
OUTCOMES = tuple(o.value for o in AuditOutcome)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?P<seconds>:\d{2}(?P<fraction>\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$")
TIME_HINT = "a date (2026-03-31) or a date and time (2026-03-31 14:30), UTC unless an offset is given"


@dataclass
class ParsedFilters:
    raw: dict[str, str]  # as typed, for the form and for links
    filters: queries.Filters
    errors: dict[str, str] = field(default_factory=dict)
    actor_candidates: list[str] = field(default_factory=list)  # e-mails, when the actor is ambiguous

    def link_args(self) -> dict[str, str]:
        """The filters for a URL (empty ones left out)."""
        return {k: v for k, v in self.raw.items() if v}

    @property
    def active(self) -> bool:
        return any(self.raw.values())


def _moment(raw: str, *, end: bool) -> datetime | str:
    """A datetime, or the error message."""
    text = raw.strip()
    if _DATE.match(text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        except (ValueError, OverflowError):
            return "There is no such date."
    parts = _DATETIME.match(text)
    if parts:
        try:
            moment = datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            return "There is no such date or time."
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if end:
            # The whole minute or second given counts: "to 14:30" keeps 14:30:59.
            step = (timedelta(microseconds=1) if parts["fraction"]
                    else timedelta(seconds=1) if parts["seconds"] else timedelta(minutes=1))
            try:
                moment += step
            except OverflowError:
                return "There is no such date or time."
        return moment
    return f"Enter {TIME_HINT}."


def parse(session: Session, args: Mapping[str, str]) -> ParsedFilters:
    """Read and check the filters; resolves the actor to a user (one statement, only when given)."""
    raw = {name: (args.get(name) or "").strip() for name in FIELDS}
    errors: dict[str, str] = {}
    for name, value in raw.items():
        if "\x00" in value:
            errors[name] = "This contains a character that is not allowed."
        elif len(value) > MAX_LENGTHS.get(name, 40):
            errors[name] = f"Use at most {MAX_LENGTHS.get(name, 40)} characters."

    outcome = None
    if raw["outcome"] and "outcome" not in errors:
        if raw["outcome"] in OUTCOMES:
            outcome = AuditOutcome(raw["outcome"])
        else:
            errors["outcome"] = "Choose success, denied or error."

    action, prefix = raw["action"], False
    if action.endswith("*"):
        action, prefix = action.rstrip("*"), True
    elif action.endswith("."):
        prefix = True
    if raw["action"] and not action and "action" not in errors:
        errors["action"] = "Enter an action (e.g. evidence.review) or the start of one (e.g. evidence.)."

    if raw["object_id"] and not raw["object_type"] and "object_id" not in errors:
        errors["object_id"] = "Choose an object type too: object ids are only unique within a type."

    bounds: dict[str, datetime] = {}
    for name, end in (("from", False), ("to", True)):
        if raw[name] and name not in errors:
            moment = _moment(raw[name], end=end)
            if isinstance(moment, str):
                errors[name] = moment
            else:
                bounds[name] = moment
    if "from" in bounds and "to" in bounds and bounds["to"] <= bounds["from"]:
        errors["to"] = "This must be later than “from”."

    actor_id, candidates = None, []
    if raw["actor"] and "actor" not in errors:
        match = queries.resolve_actor(session, raw["actor"])
        if match.user is not None:
            actor_id = match.user.id
        elif match.candidates:
            candidates = [u.email for u in match.candidates]
            errors["actor"] = "Several people match; enter one of their e-mail addresses."
        else:
            errors["actor"] = "Nobody with that name or e-mail address."

    filters = queries.Filters(
        actor_id=actor_id, action="" if "action" in errors else action, action_prefix=prefix,
        object_type="" if "object_type" in errors else raw["object_type"],
        object_id="" if "object_id" in errors else raw["object_id"],
        outcome=outcome, since=bounds.get("from"), until=bounds.get("to"),
    )
    return ParsedFilters(raw, filters, errors, candidates)
