"""The format-neutral shape of a framework file, its canonical content and its hash.

Both importers (our format, OSCAL) produce a FrameworkSpec; both exporters take one. Two files hold
"the same framework" when their canonical content is equal: the title, version, descriptive fields
and the control tree (ref_id, title, text, assessable, weight, status, order). The framework's
lifecycle status is not content: it is set on the first import only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from governance.models.enums import ControlStatus, FrameworkStatus

MAX_ERRORS = 20
MAX_NESTING = 128  # levels of lists/objects in a file; deeper files are refused before validation
WEIGHT_STEP = Decimal("0.001")  # controls.weight is numeric(6,3)
MAX_WEIGHT = Decimal("999.999")


@dataclass(frozen=True)
class FieldError:
    pointer: str  # JSON pointer into the file, e.g. /controls/3/children/1/ref_id
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class InputFileError(Exception):
    """A file that cannot be imported or exported; nothing was written. `errors` name each place
    (a field's JSON pointer, a CSV line); the message lists the first MAX_ERRORS of them."""

    def __init__(self, message: str, errors: Sequence[object] | None = None) -> None:
        self.message = message
        self.errors: list[Any] = list(errors or [])
        super().__init__(self.describe())

    def describe(self) -> str:
        if not self.errors:
            return self.message
        shown = [f"  {e}" for e in self.errors[:MAX_ERRORS]]
        more = len(self.errors) - MAX_ERRORS
        if more > 0:
            shown.append(f"  … and {more} more")
        return "\n".join([self.message, *shown])


class FrameworkIOError(InputFileError):
    """A framework file that cannot be imported (or a framework that cannot be exported)."""

    errors: list[FieldError]  # type: ignore[assignment]


class FrameworkFormatError(FrameworkIOError):
    """The file is malformed: errors name the field and its position."""


class FrameworkConflictError(FrameworkIOError):
    """The (title, version) exists with other content, or was deleted."""


@dataclass
class ControlSpec:
    ref_id: str
    title: str
    text: str | None = None
    assessable: bool = True
    weight: Decimal = Decimal(1)
    status: ControlStatus = ControlStatus.ACTIVE
    children: list[ControlSpec] = field(default_factory=list)


@dataclass
class FrameworkSpec:
    title: str
    version: str
    region: str | None = None
    source: str | None = None
    license: str | None = None
    description: str | None = None
    status: FrameworkStatus = FrameworkStatus.ACTIVE
    controls: list[ControlSpec] = field(default_factory=list)


def walk(controls: list[ControlSpec]) -> Iterator[tuple[ControlSpec, ControlSpec | None]]:
    """(control, parent) in document order, parents before children (iterative: no recursion limit)."""
    stack: list[tuple[ControlSpec, ControlSpec | None]] = [(c, None) for c in reversed(controls)]
    while stack:
        control, parent = stack.pop()
        yield control, parent
        stack.extend((child, control) for child in reversed(control.children))


def weight_text(weight: Decimal) -> str:
    """'1', '0.5', '2.25': the canonical spelling of a weight."""
    return format(weight.quantize(WEIGHT_STEP).normalize(), "f")


def weight_value(weight: Decimal) -> int | float:
    """The weight as a JSON number (an int when whole)."""
    normal = weight.quantize(WEIGHT_STEP).normalize()
    return int(normal) if normal == normal.to_integral_value() else float(normal)


def parse_weight(value: Any, pointer: str, errors: list[FieldError]) -> Decimal:
    try:
        weight = Decimal(str(value))
    except ArithmeticError:
        errors.append(FieldError(pointer, f"{value!r} is not a number"))
        return Decimal(1)
    if not weight.is_finite() or weight < 0 or weight > MAX_WEIGHT:
        errors.append(FieldError(pointer, f"must be between 0 and {MAX_WEIGHT}"))
    elif weight != weight.quantize(WEIGHT_STEP):
        errors.append(FieldError(pointer, "must have at most 3 decimal places"))
    return weight


def content(spec: FrameworkSpec) -> dict[str, Any]:
    """The canonical content (what decides "same framework"), as plain JSON data."""

    def node(c: ControlSpec) -> dict[str, Any]:
        return {"ref_id": c.ref_id, "title": c.title, "text": c.text, "assessable": c.assessable,
                "weight": weight_text(c.weight), "status": c.status.value,
                "children": [node(child) for child in c.children]}

    return {"title": spec.title, "version": spec.version, "region": spec.region, "source": spec.source,
            "license": spec.license, "description": spec.description,
            "controls": [node(c) for c in spec.controls]}


def content_sha256(spec: FrameworkSpec) -> str:
    canonical = json.dumps(content(spec), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_tree(spec: FrameworkSpec, pointers: dict[int, str]) -> list[FieldError]:
    """Rules a schema cannot say: ref_id unique within the framework. pointers: id(control) → its
    position in the file (for messages)."""
    errors: list[FieldError] = []
    seen: dict[str, str] = {}
    for control, _parent in walk(spec.controls):
        where = pointers.get(id(control), "")
        if control.ref_id in seen:
            errors.append(FieldError(f"{where}/ref_id" if where else "",
                                     f"ref_id {control.ref_id!r} is already used at {seen[control.ref_id]}"))
        else:
            seen[control.ref_id] = f"{where}/ref_id" if where else control.ref_id
    return errors


def find_nul(document: Any) -> str | None:
    """The JSON pointer of the first string (or key) holding a NUL character, which PostgreSQL
    text cannot store; None when there is none."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            return where or "/"
        if isinstance(value, dict):
            for key, item in value.items():
                pointer = f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}"
                if "\x00" in str(key):
                    return pointer
                stack.append((item, pointer))
        elif isinstance(value, list):
            stack.extend((item, f"{where}/{i}") for i, item in enumerate(value))
    return None


def depth_exceeds(document: Any, limit: int) -> bool:
    """True when lists/objects nest deeper than `limit` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False
