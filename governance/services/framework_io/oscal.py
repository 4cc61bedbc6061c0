"""OSCAL catalogs (JSON) to and from a FrameworkSpec.

Import: groups become non-assessable parent controls; controls and their nested enhancements become
controls; the `label` prop is the ref_id (a CSF label "Organizational Context (GV.OC)" whose
parenthesis holds the id gives "GV.OC"; no label: the id upper-cased); `status: withdrawn` marks
withdrawn controls (not assessable); statement, guidance, overview and other parts (not the
assessment-* parts) are flattened to text with their labels, parameters rendered as NIST prints them
("[Assignment: organization-defined frequency]", "[Selection (one or more): a; b]"), and a withdrawn
control's incorporated-into / moved-to links become a sentence naming the targets.

Export: a catalog whose re-import gives the same controls: each node keeps its ref_id as `label`,
its text as one statement (controls) or overview (groups) part, and the fields OSCAL has no place for
(assessable where it differs from the structure, weight, draft/deprecated status, region, licence,
source, framework status) as props in our namespace; the description is the metadata remarks.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from governance.models.enums import ControlStatus, FrameworkStatus
from governance.services.framework_io.model import (
    ControlSpec,
    FieldError,
    FrameworkFormatError,
    FrameworkSpec,
    check_tree,
    parse_weight,
    walk,
    weight_text,
)

NS = "urn:ai-governance-platform:oscal"  # our props (fields OSCAL has no place for)
NIST_NS = "http://csrc.nist.gov/ns/oscal"
OSCAL_VERSION = "1.1.2"
WITHDRAWN_RELS = {"incorporated-into": "Incorporated into", "incorporated_into": "Incorporated into",
                  "moved-to": "Moved to", "moved_to": "Moved to"}
# Parts whose prose is the node's own text, without a heading.
MAIN_PARTS = {"statement", "overview"}
_INSERT = re.compile(r"\{\{\s*insert:\s*param,\s*([^\s}]+)\s*\}\}")
_MD_LINK = re.compile(r"\[([^\]]+)\]\(#[^)]*\)")
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def is_catalog(document: Any) -> bool:
    return isinstance(document, dict) and "catalog" in document


# --- import ------------------------------------------------------------------------------------------


@dataclass
class _Index:
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # control / group / part id → how to cite it


def _props(node: dict[str, Any], name: str, *, ours: bool = False) -> list[str]:
    out = []
    for prop in node.get("props") or []:
        if not isinstance(prop, dict) or prop.get("name") != name:
            continue
        ns = prop.get("ns")
        if (ns == NS) if ours else (ns in (None, NIST_NS)):
            out.append(str(prop.get("value", "")))
    return out


def _ref_id(node: dict[str, Any], is_group: bool) -> str | None:
    node_id = node.get("id")
    labels = _props(node, "label")
    if labels:
        label = labels[0].strip()
        if isinstance(node_id, str) and label.lower().endswith(f"({node_id.lower()})"):
            return label[-len(node_id) - 1:-1]
        return label
    return node_id.upper() if isinstance(node_id, str) else None


def _index(catalog: dict[str, Any]) -> _Index:
    index = _Index()
    stack: list[tuple[dict[str, Any], str | None]] = [(catalog, None)]
    while stack:
        node, owner_ref = stack.pop()
        for param in node.get("params") or []:
            if isinstance(param, dict) and isinstance(param.get("id"), str):
                index.params[param["id"]] = param
        for key in ("groups", "controls"):
            for child in node.get(key) or []:
                if isinstance(child, dict):
                    ref = _ref_id(child, key == "groups")
                    if isinstance(child.get("id"), str) and ref:
                        index.refs[child["id"]] = ref
                    stack.append((child, ref))
        if owner_ref is not None:
            _index_parts(node.get("parts") or [], owner_ref, "", index)
    return index


def _index_parts(parts: list[Any], owner_ref: str, prefix: str, index: _Index) -> None:
    for part in parts:
        if not isinstance(part, dict):
            continue
        labels = _props(part, "label")
        cite = prefix + (labels[0].strip() if labels else "")
        if isinstance(part.get("id"), str) and cite:
            index.refs[part["id"]] = owner_ref + cite.rstrip(".")
        _index_parts(part.get("parts") or [], owner_ref, cite, index)


def _param_text(param_id: str, index: _Index, seen: frozenset[str]) -> str:
    param = index.params.get(param_id)
    if param is None or param_id in seen:
        return f"[Assignment: {param_id}]"
    seen = seen | {param_id}
    values = param.get("values")
    if values:
        return ", ".join(_prose(str(v), index, seen) for v in values)
    select = param.get("select")
    if isinstance(select, dict):
        choices = "; ".join(_prose(str(c), index, seen) for c in select.get("choice") or [])
        many = " (one or more)" if select.get("how-many") == "one-or-more" else ""
        return f"[Selection{many}: {choices}]"
    label = param.get("label")
    return f"[Assignment: {_prose(str(label), index, seen) if label else param_id}]"


def _prose(text: str, index: _Index, seen: frozenset[str] = frozenset()) -> str:
    text = _INSERT.sub(lambda m: _param_text(m.group(1), index, seen), text)
    return _MD_LINK.sub(r"\1", text).strip()


def _part_lines(part: dict[str, Any], index: _Index, depth: int, heading: str | None) -> list[str]:
    labels = _props(part, "label")
    prose = _prose(str(part.get("prose") or ""), index)
    head = " ".join(x for x in (labels[0].strip() if labels else "", prose) if x)
    if heading:
        head = f"{heading}: {head}" if head else heading
    lines = [("  " * depth) + head] if head else []
    for sub in part.get("parts") or []:
        if isinstance(sub, dict):
            lines.extend(_part_lines(sub, index, depth + (1 if head else 0), None))
    return lines


def _text(node: dict[str, Any], index: _Index) -> str | None:
    blocks = []
    for part in node.get("parts") or []:
        if not isinstance(part, dict):
            continue
        name = str(part.get("name") or "")
        if name.startswith("assessment"):
            continue
        heading = None if name in MAIN_PARTS else (part.get("title") or name.replace("-", " ").capitalize())
        lines = _part_lines(part, index, 0, heading)
        if lines:
            blocks.append("\n".join(lines))
    moves: dict[str, list[str]] = {}
    for link in node.get("links") or []:
        if isinstance(link, dict) and link.get("rel") in WITHDRAWN_RELS:
            href = str(link.get("href") or "").removeprefix("#")
            moves.setdefault(WITHDRAWN_RELS[link["rel"]], []).append(index.refs.get(href, href))
    blocks.extend(f"{verb} {', '.join(targets)}." for verb, targets in moves.items())
    return "\n\n".join(blocks) or None


def _string(node: dict[str, Any], key: str, where: str, errors: list[FieldError], max_len: int) -> str:
    value = node.get(key)
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError(f"{where}/{key}", "is required (a non-empty string)"))
        return ""
    if len(value) > max_len:
        errors.append(FieldError(f"{where}/{key}", f"must be at most {max_len} characters"))
    return value


def _node(node: Any, where: str, is_group: bool, index: _Index, errors: list[FieldError],
          pointers: dict[int, str]) -> ControlSpec | None:
    if not isinstance(node, dict):
        errors.append(FieldError(where, "must be an object"))
        return None
    if not is_group and not isinstance(node.get("id"), str):
        errors.append(FieldError(f"{where}/id", "is required (a string)"))
    title = _string(node, "title", where, errors, 500)
    ref_id = _ref_id(node, is_group)
    if not ref_id:
        errors.append(FieldError(where, "needs an id or a label prop (it becomes the ref_id)"))
        ref_id = ""
    elif len(ref_id) > 64:
        errors.append(FieldError(where, f"ref_id {ref_id!r} (from the label) is longer than 64 characters"))
    withdrawn = "withdrawn" in _props(node, "status")
    status = ControlStatus.WITHDRAWN if withdrawn else ControlStatus.ACTIVE
    for value in _props(node, "status", ours=True):
        try:
            status = ControlStatus(value)
        except ValueError:
            errors.append(FieldError(f"{where}/props", f"status {value!r} is not one of "
                                     f"{', '.join(s.value for s in ControlStatus)}"))
    assessable = not is_group and status != ControlStatus.WITHDRAWN
    for value in _props(node, "assessable", ours=True):
        assessable = value == "true"
    weight = Decimal(1)
    for value in _props(node, "weight", ours=True):
        weight = parse_weight(value, f"{where}/props", errors)
    control = ControlSpec(ref_id=ref_id, title=title, text=_text(node, index), assessable=assessable,
                          weight=weight, status=status)
    pointers[id(control)] = where
    for key, group_children in (("groups", True), ("controls", False)):
        children = node.get(key)
        if children is None:
            continue
        if not isinstance(children, list):
            errors.append(FieldError(f"{where}/{key}", "must be a list"))
            continue
        if key == "groups" and not is_group:
            errors.append(FieldError(f"{where}/groups", "a control cannot contain groups"))
            continue
        for i, child in enumerate(children):
            spec = _node(child, f"{where}/{key}/{i}", group_children, index, errors, pointers)
            if spec is not None:
                control.children.append(spec)
    return control


def _source(catalog: dict[str, Any]) -> str | None:
    """The catalog's canonical link, resolved through back-matter to a URL or citation."""
    resources = {r.get("uuid"): r for r in (catalog.get("back-matter") or {}).get("resources") or []
                 if isinstance(r, dict)}
    for link in (catalog.get("metadata") or {}).get("links") or []:
        if not isinstance(link, dict) or link.get("rel") != "canonical":
            continue
        href = str(link.get("href") or "")
        resource = resources.get(href.removeprefix("#")) if href.startswith("#") else None
        if resource is None:
            return href or None
        for rlink in resource.get("rlinks") or []:
            if isinstance(rlink, dict) and rlink.get("href"):
                return str(rlink["href"])
        citation = resource.get("citation")
        if isinstance(citation, dict) and citation.get("text"):
            return str(citation["text"])
    return None


def parse(document: Any) -> FrameworkSpec:
    """A FrameworkSpec from an OSCAL catalog document; FrameworkFormatError names what is wrong."""
    errors: list[FieldError] = []
    catalog = document.get("catalog") if isinstance(document, dict) else None
    if not isinstance(catalog, dict):
        raise FrameworkFormatError("Not an OSCAL catalog.", [FieldError("/catalog", "must be an object")])
    metadata = catalog.get("metadata")
    if not isinstance(metadata, dict):
        raise FrameworkFormatError("Not an OSCAL catalog.",
                                   [FieldError("/catalog/metadata", "must be an object")])
    title = _string(metadata, "title", "/catalog/metadata", errors, 255)
    version = _string(metadata, "version", "/catalog/metadata", errors, 64)
    ours: dict[str, str | None] = {name: next(iter(_props(metadata, name, ours=True)), None)
                                   for name in ("region", "license", "source", "status")}
    status = FrameworkStatus.ACTIVE
    if ours["status"]:
        try:
            status = FrameworkStatus(ours["status"])
        except ValueError:
            errors.append(FieldError("/catalog/metadata/props", f"status {ours['status']!r} is unknown"))
    remarks = metadata.get("remarks")
    spec = FrameworkSpec(title=title, version=version, region=ours["region"], license=ours["license"],
                         source=ours["source"] or _source(catalog),
                         description=remarks.strip() or None if isinstance(remarks, str) else None,
                         status=status)
    index = _index(catalog)
    pointers: dict[int, str] = {}
    for key, is_group in (("groups", True), ("controls", False)):
        nodes = catalog.get(key) or []
        if not isinstance(nodes, list):
            errors.append(FieldError(f"/catalog/{key}", "must be a list"))
            continue
        for i, node in enumerate(nodes):
            control = _node(node, f"/catalog/{key}/{i}", is_group, index, errors, pointers)
            if control is not None:
                spec.controls.append(control)
    errors.extend(check_tree(spec, pointers))
    if errors:
        raise FrameworkFormatError("The OSCAL catalog cannot be imported.", errors)
    return spec


# --- export ------------------------------------------------------------------------------------------


def _oscal_id(ref_id: str, used: set[str]) -> str:
    """AC-2(1) → ac-2.1, GOVERN 1.1 → govern-1.1: an OSCAL token, unique in the catalog."""
    base = ref_id.lower().replace("(", ".").replace(")", "")
    base = _ID_CHARS.sub("_", re.sub(r"\s+", "-", base)).strip(".-") or "control"
    if not (base[0].isalpha() or base[0] == "_"):
        base = f"c-{base}"
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}_{n}"
    used.add(candidate)
    return candidate


def _our_prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": value}


def _export_node(control: ControlSpec, as_group: bool, used: set[str]) -> dict[str, Any]:
    node_id = _oscal_id(control.ref_id, used)
    props: list[dict[str, str]] = [{"name": "label", "value": control.ref_id}]
    if control.status == ControlStatus.WITHDRAWN:
        props.append({"name": "status", "value": "withdrawn"})
    elif control.status != ControlStatus.ACTIVE:
        props.append(_our_prop("status", control.status.value))
    default_assessable = not as_group and control.status != ControlStatus.WITHDRAWN
    if control.assessable != default_assessable:
        props.append(_our_prop("assessable", "true" if control.assessable else "false"))
    if control.weight != 1:
        props.append(_our_prop("weight", weight_text(control.weight)))
    out: dict[str, Any] = {"id": node_id}
    if not as_group:
        out["class"] = "control"
    out["title"] = control.title
    out["props"] = props
    if control.text is not None:
        name, suffix = ("overview", "ovw") if as_group else ("statement", "smt")
        out["parts"] = [{"id": f"{node_id}_{suffix}", "name": name, "prose": control.text}]
    groups = [c for c in control.children if as_group and _is_group(c)]
    controls = [c for c in control.children if not (as_group and _is_group(c))]
    if groups:
        out["groups"] = [_export_node(c, True, used) for c in groups]
    if controls:
        out["controls"] = [_export_node(c, False, used) for c in controls]
    return out


def _is_group(control: ControlSpec) -> bool:
    """A group in OSCAL: a non-assessable, live node (only under the catalog or another group)."""
    return not control.assessable and control.status not in (ControlStatus.WITHDRAWN,)


def dump(spec: FrameworkSpec, *, catalog_uuid: uuid.UUID, last_modified: datetime) -> dict[str, Any]:
    """An OSCAL catalog of the spec. Children keep their order within groups and within controls;
    a group's sub-groups come before its controls (OSCAL's model), which re-import preserves."""
    used: set[str] = set()
    props = [_our_prop(name, value) for name, value in (
        ("region", spec.region), ("license", spec.license), ("source", spec.source),
        ("status", spec.status.value)) if value]
    metadata: dict[str, Any] = {"title": spec.title, "last-modified": last_modified.isoformat(),
                                "version": spec.version, "oscal-version": OSCAL_VERSION}
    if props:
        metadata["props"] = props
    if spec.description:
        metadata["remarks"] = spec.description
    catalog: dict[str, Any] = {"uuid": str(catalog_uuid), "metadata": metadata}
    groups = [c for c in spec.controls if _is_group(c)]
    controls = [c for c in spec.controls if not _is_group(c)]
    if groups:
        catalog["groups"] = [_export_node(c, True, used) for c in groups]
    if controls:
        catalog["controls"] = [_export_node(c, False, used) for c in controls]
    return {"catalog": catalog}


def count_withdrawn(spec: FrameworkSpec) -> int:
    return sum(1 for c, _ in walk(spec.controls) if c.status == ControlStatus.WITHDRAWN)
