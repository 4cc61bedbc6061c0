"""Helpers the built-in kinds share: form values to typed values (ConfigError beside the field),
the comparison operators, dotted JSON paths, JSON-able observed values and masking of secrets."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from governance.probes import ConfigError

MASK = "********"
# Names of headers, query parameters and settings whose values are secrets.
SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cookie|session|credential|signature|^sig$", re.I)
# Values that are secrets whatever they are called: credentials schemes, and long opaque strings.
SECRET_VALUE = re.compile(r"^\s*(bearer|basic|token|digest|negotiate)\s+\S+|^[A-Za-z0-9+/=_\-.~]{24,}$", re.I)

ORDERING = (">=", "<=", ">", "<")
EQUALITY = ("==", "!=")

# (field name, label, help text, required): the form fields of a configuration or of parameters.
Fields = tuple[tuple[str, str, str, bool], ...]

T = TypeVar("T")
R = TypeVar("R")


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text_value(params: Mapping[str, Any], name: str, *, required: bool = False, max_len: int = 2000,
               label: str | None = None) -> str | None:
    value = params.get(name)
    if blank(value):
        if required:
            raise ConfigError(name, f"{label or name.replace('_', ' ').capitalize()} is required.")
        return None
    if not isinstance(value, str):
        raise ConfigError(name, "Enter text.")
    value = value.strip()
    if len(value) > max_len:
        raise ConfigError(name, f"Keep it to {max_len:,} characters.")
    return value


def int_value(params: Mapping[str, Any], name: str, *, default: int | None = None, minimum: int | None = None,
              maximum: int | None = None) -> int | None:
    value = params.get(name)
    if blank(value):
        return default
    if isinstance(value, bool):
        raise ConfigError(name, "Enter a whole number.")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(name, "Enter a whole number.") from None
    if not isinstance(value, int):
        raise ConfigError(name, "Enter a whole number.")
    if minimum is not None and value < minimum:
        raise ConfigError(name, f"Enter {minimum} or more.")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"Enter {maximum} or less.")
    return value


def to_number(value: Any) -> float | int | None:
    """A finite number from a JSON number or numeric text; None when it is not one (booleans are not)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def number_value(params: Mapping[str, Any], name: str, *, required: bool = True) -> float | int | None:
    value = params.get(name)
    if blank(value):
        if required:
            raise ConfigError(name, "Enter a number.")
        return None
    number = to_number(value)
    if number is None:
        raise ConfigError(name, "Enter a number, e.g. 0.9.")
    return number


def choice_value(params: Mapping[str, Any], name: str, options: Sequence[str], *, default: str | None = None,
                 required: bool = False) -> str | None:
    value = params.get(name)
    if blank(value):
        if required and default is None:
            raise ConfigError(name, f"Choose one of {', '.join(options)}.")
        return default
    text = str(value).strip()
    if text.lower() in options:
        text = text.lower()
    if text not in options:
        raise ConfigError(name, f"Choose one of {', '.join(options)}.")
    return text


def json_object_value(params: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = params.get(name)
    if blank(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(name, f"Enter a JSON object, e.g. {{\"Accept\": \"application/json\"}} ({exc.msg}).") \
                from None
    if not isinstance(value, Mapping):
        raise ConfigError(name, "Enter a JSON object, e.g. {\"Accept\": \"application/json\"}.")
    return dict(value)


def uuid_value(params: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if blank(value):
        if required:
            raise ConfigError(name, "Required.")
        return None
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise ConfigError(name, "Enter an id such as 0b6c0f5e-2a4e-4a8f-9d1c-3f1e2d4c5b6a.") from None


def json_path_value(params: Mapping[str, Any], name: str) -> str | None:
    path = text_value(params, name, max_len=500)
    if path is None:
        return None
    if path.startswith("$."):
        path = path[2:]
    if any(not part.strip() for part in path.split(".")):
        raise ConfigError(name, "Write a dotted path such as model.version or items.0.score.")
    return path


class MissingField(LookupError):
    pass


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path (a number indexes a list); MissingField names the missing part."""
    current = data
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and re.fullmatch(r"-?\d+", part) and -len(current) <= int(part) < len(current):
            current = current[int(part)]
        else:
            raise MissingField(".".join(walked))
    return current


class NotComparable(ValueError):
    pass


def _equal(observed: Any, expected: Any) -> bool:
    if isinstance(observed, bool) or isinstance(expected, bool):
        def as_bool(v: Any) -> Any:
            if isinstance(v, str) and v.strip().lower() in ("true", "false"):
                return v.strip().lower() == "true"
            return v
        return bool(as_bool(observed) is as_bool(expected))
    if observed is None or expected is None:
        def as_none(v: Any) -> Any:
            return None if isinstance(v, str) and v.strip().lower() in ("null", "none") else v
        return as_none(observed) is None and as_none(expected) is None
    if isinstance(observed, str) and isinstance(expected, str):
        # Text against text stays text: version "1.10" is not "1.1".
        return observed == expected
    left, right = to_number(observed), to_number(expected)
    if left is not None and right is not None:
        return left == right
    if isinstance(expected, str) and isinstance(observed, (list, dict)):
        try:
            return bool(observed == json.loads(expected))
        except ValueError:
            return False
    return bool(observed == expected) or str(observed) == str(expected)


def compare(observed: Any, operator: str, expected: Any) -> bool:
    """observed <operator> expected. Ordering needs two numbers (NotComparable otherwise)."""
    if operator in ORDERING:
        left, right = to_number(observed), to_number(expected)
        if left is None:
            raise NotComparable(f"{short(observed)} is not a number")
        if right is None:
            raise NotComparable(f"{short(expected)} is not a number")
        return {">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right}[operator]
    if operator == "==":
        return _equal(observed, expected)
    if operator == "!=":
        return not _equal(observed, expected)
    if operator == "contains":
        if isinstance(observed, str):
            return str(expected) in observed
        if isinstance(observed, list):
            return any(_equal(item, expected) for item in observed)
        if isinstance(observed, Mapping):
            return str(expected) in observed
        raise NotComparable(f"{short(observed)} is neither text nor a list")
    raise NotComparable(f"unknown operator {operator!r}")


def jsonable(value: Any) -> Any:
    """A value fit for a JSONB column (results.observed / expected)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    return str(value)


def short(value: Any, limit: int = 120) -> str:
    text = json.dumps(jsonable(value), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def looks_secret(name: str, value: Any) -> bool:
    return bool(SECRET_NAME.search(name)) or (isinstance(value, str) and bool(SECRET_VALUE.search(value)))


def mask_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: (MASK if looks_secret(k, v) else v) for k, v in (headers or {}).items()}


def mask_url(url: str) -> str:
    """The URL as it may be shown: no user info, secret-looking query values masked."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, MASK if looks_secret(k, v) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def parallel(fn: Callable[[T], R], items: Iterable[T], workers: int = 8) -> list[R]:
    """fn over items on a few threads (network-bound kinds), results in the items' order."""
    todo = list(items)
    if len(todo) <= 1:
        return [fn(item) for item in todo]
    with ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="probe") as pool:
        return list(pool.map(fn, todo))
