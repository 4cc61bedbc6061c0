"""Our OSCAL assessment-results output against NIST's own JSON schema (tests/data/oscal/README.md:
the OSCAL complete schema, which holds the assessment-results model). The schema's patterns use
Unicode property classes (\\p{L}, \\p{N}) that Python's re rejects, so "pattern" is checked with the
regex package; a test shows that pattern checks really run."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import regex
from jsonschema import validators

from governance.models import ReportFormat, ReportScope
from governance.services.reports import oscal, soa
from tests import report_scene
from tests.unit.test_reports import _generate

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "oscal" / "oscal_complete_schema.json"


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not regex.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = validators.extend(jsonschema.Draft7Validator, {"pattern": _pattern})
    return cls(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


VALIDATOR = _validator()


def _leaves(error: Any) -> list[Any]:
    if not error.context:
        return [error]
    return [leaf for sub in error.context for leaf in _leaves(sub)]


def _errors(doc: Any) -> list[str]:
    """The failures inside the assessment-results branch of the root's oneOf over the models."""
    return [f"{list(e.absolute_path)}: {e.message}" for error in VALIDATOR.iter_errors(doc)
            for e in _leaves(error) if list(e.absolute_path)[:1] == ["assessment-results"]]


def test_the_vendored_schema_is_nists_oscal_schema() -> None:
    # Byte-identical to NIST's release asset (tests/data/oscal/README.md).
    assert hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest() == \
        "384324105c7a817af0f65b120a963146caa0e0d55d969cf0daf60e063b87a206"
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$id"] == f"http://csrc.nist.gov/ns/oscal/1.0/{oscal.OSCAL_VERSION}/oscal-complete-schema.json"
    assert "oscal-complete-oscal-ar:assessment-results" in schema["definitions"]


@pytest.mark.parametrize("scope", [ReportScope.FRAMEWORK, ReportScope.AI_SYSTEM])
def test_a_generated_report_validates_against_the_nist_schema(db_session, storage, make_user, make_control,
                                                              make_evidence, scope) -> None:
    scene = report_scene.build(db_session, make_user, make_control, make_evidence)
    target = scene.framework.id if scope == ReportScope.FRAMEWORK else scene.system.id
    _, body = _generate(db_session, storage, scope, target, ReportFormat.OSCAL)
    doc = json.loads(body)
    assert doc["assessment-results"]["results"][0]["findings"]  # a real document, not an empty one
    assert _errors(doc) == []
    assert VALIDATOR.is_valid(doc)


def test_pattern_checks_really_run(db_session, make_user, make_control, make_evidence) -> None:
    scene = report_scene.build(db_session, make_user, make_control, make_evidence)
    data = soa.framework_soa(db_session(), scene.framework.id, report_scene.PERIOD)
    doc = oscal.document(data, as_of="2026-12-01T10:00:00+00:00", report_id=uuid.uuid4())
    assert VALIDATOR.is_valid(doc)
    # A token must start with a letter or "_" (\p{L}): "9bad" breaks only the pattern.
    doc["assessment-results"]["results"][0]["reviewed-controls"]["control-selections"][0][
        "include-controls"][0]["control-id"] = "9bad"
    assert not VALIDATOR.is_valid(doc)
    assert any("9bad" in e and "does not match" in e for e in _errors(doc))
    # A non-ASCII letter is a \p{L}: a Unicode-aware pattern accepts it (re would have refused the schema).
    doc["assessment-results"]["results"][0]["reviewed-controls"]["control-selections"][0][
        "include-controls"][0]["control-id"] = "é-1"
    assert VALIDATOR.is_valid(doc)
    doc["assessment-results"]["uuid"] = "not-a-uuid"
    assert any("not-a-uuid" in e for e in _errors(doc))
