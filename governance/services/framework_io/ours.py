"""Our own framework format (JSON or YAML), validated by schema/framework.schema.json.

Errors name the field by its JSON pointer, e.g. `/controls/3/children/1/ref_id: must not be empty`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs in requirements-dev
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from governance.models.enums import ControlStatus, FrameworkStatus
from governance.services.framework_io.model import (
    MAX_NESTING,
    ControlSpec,
    FieldError,
    FrameworkFormatError,
    FrameworkSpec,
    check_tree,
    depth_exceeds,
    find_nul,
    parse_weight,
    weight_value,
)

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "framework.schema.json"
FORMAT_VERSION = 1
_TYPE_NAMES = {"string": "a string", "array": "a list", "object": "an object", "boolean": "true or false",
               "number": "a number", "integer": "an integer", "null": "null"}


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def load_document(raw: bytes | str, filename: str | None = None) -> Any:
    """Parse a file's bytes as JSON, or as YAML when it is not JSON (by name or by content)."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise FrameworkFormatError(f"The file is not UTF-8 text (byte {exc.start}).") from exc
    name = (filename or "").lower()
    as_yaml = name.endswith((".yaml", ".yml")) or (not name.endswith(".json")
                                                    and not text.lstrip().startswith(("{", "[")))
    try:
        if as_yaml:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            document = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
        else:
            document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameworkFormatError(f"The file is not valid JSON: {exc.msg} at line {exc.lineno}, "
                                   f"column {exc.colno}.") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FrameworkFormatError(f"The file is not valid YAML: {problem}{where}.") from exc
    except RecursionError as exc:
        raise FrameworkFormatError("The file nests too deeply.") from exc
    if depth_exceeds(document, MAX_NESTING):
        raise FrameworkFormatError(f"The file nests deeper than {MAX_NESTING} levels.")
    nul = find_nul(document)
    if nul is not None:
        raise FrameworkFormatError("The file cannot be imported.",
                                   [FieldError(nul, "contains a NUL character (\\u0000)")])
    return document


def _pointer(path: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _field_errors(error: ValidationError) -> list[FieldError]:
    """One schema error as field errors with a JSON pointer and a short message (jsonschema's own
    messages quote whole objects)."""
    where = _pointer(error.absolute_path)
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator == "required":
        present = instance if isinstance(instance, dict) else {}
        return [FieldError(f"{where}/{name}", "is required") for name in expected if name not in present]
    if validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed) if isinstance(instance, dict) else []
        return [FieldError(f"{where}/{_pointer([k])[1:]}",
                           f"unknown field (allowed: {', '.join(sorted(allowed))})") for k in extra]
    if validator == "type":
        types = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in types)
        hint = " (quote it)" if "string" in types and isinstance(instance, (int, float)) else ""
        return [FieldError(where, f"must be {wanted}, not {json.dumps(instance, default=str)[:60]}{hint}")]
    if validator == "enum":
        return [FieldError(where, f"must be one of {', '.join(map(str, expected))}")]
    if validator == "const":
        return [FieldError(where, f"must be {json.dumps(expected)}")]
    if validator == "minLength":
        return [FieldError(where, "must not be empty")]
    if validator == "maxLength":
        return [FieldError(where, f"must be at most {expected} characters")]
    if validator == "pattern":
        return [FieldError(where, "must not be blank or start or end with whitespace")]
    if validator in ("minimum", "maximum"):
        return [FieldError(where, f"must be {'at least' if validator == 'minimum' else 'at most'} {expected}")]
    return [FieldError(where, error.message[:200])]


def _text(node: dict[str, Any], key: str) -> str | None:
    """Optional text: surrounding whitespace dropped (a YAML block scalar ends with a newline)."""
    value = node.get(key)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def parse(document: Any) -> FrameworkSpec:
    """Validate `document` (already loaded) against the schema and build the spec."""
    errors: list[FieldError] = []
    for error in _validator().iter_errors(document):
        errors.extend(_field_errors(error))
    if errors:
        raise FrameworkFormatError("The file does not match the framework format.", errors)
    pointers: dict[int, str] = {}
    spec = FrameworkSpec(
        title=document["title"].strip(), version=document["version"], region=_text(document, "region"),
        source=_text(document, "source"), license=_text(document, "license"),
        description=_text(document, "description"),
        status=FrameworkStatus(document.get("status", FrameworkStatus.ACTIVE.value)),
    )
    # Iterative: a parent's children list is filled as its nodes are visited.
    stack: list[tuple[dict[str, Any], str, list[ControlSpec]]] = [
        (node, f"/controls/{i}", spec.controls) for i, node in reversed(list(enumerate(document["controls"])))
    ]
    while stack:
        node, where, siblings = stack.pop()
        control = ControlSpec(
            ref_id=node["ref_id"], title=node["title"].strip(), text=_text(node, "text"),
            assessable=node.get("assessable", True),
            weight=parse_weight(node.get("weight", 1), f"{where}/weight", errors) if "weight" in node
            else Decimal(1),
            status=ControlStatus(node.get("status", ControlStatus.ACTIVE.value)),
        )
        siblings.append(control)
        pointers[id(control)] = where
        stack.extend((child, f"{where}/children/{i}", control.children)
                     for i, child in reversed(list(enumerate(node.get("children", [])))))
    errors.extend(check_tree(spec, pointers))
    if errors:
        raise FrameworkFormatError("The file does not match the framework format.", errors)
    return spec


def dump(spec: FrameworkSpec) -> dict[str, Any]:
    """The spec in our format (optional fields left out when empty or at their default)."""

    def node(c: ControlSpec) -> dict[str, Any]:
        out: dict[str, Any] = {"ref_id": c.ref_id, "title": c.title}
        if c.text is not None:
            out["text"] = c.text
        if not c.assessable:
            out["assessable"] = False
        if c.weight != 1:
            out["weight"] = weight_value(c.weight)
        if c.status != ControlStatus.ACTIVE:
            out["status"] = c.status.value
        if c.children:
            out["children"] = [node(child) for child in c.children]
        return out

    out: dict[str, Any] = {"format_version": FORMAT_VERSION, "title": spec.title, "version": spec.version}
    for key in ("region", "source", "license", "description"):
        value = getattr(spec, key)
        if value is not None:
            out[key] = value
    out["status"] = spec.status.value
    out["controls"] = [node(c) for c in spec.controls]
    return out
