"""One cell of a CSV export: the text a spreadsheet shows, never a formula it runs.

Cells that begin with =, +, -, @, a tab or a carriage return get a leading apostrophe (the OWASP
advice against CSV injection); datetimes are ISO 8601 in UTC, dates ISO 8601, enums their value,
lists "a; b", None an empty cell. Shared by the audit-log and AI-inventory exports."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.astimezone(UTC).isoformat()
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, (list, tuple)):
        text = "; ".join(str(v) for v in value)
    elif hasattr(value, "value") and not isinstance(value, (str, int, Decimal)):
        text = str(value.value)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
