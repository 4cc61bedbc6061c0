"""Framework import / export (governance.services.framework_io): our format (JSON, YAML) with
schema errors naming positions, OSCAL catalogs (SP 800-53 r5, CSF 2.0), idempotent re-import,
conflicts refused, one transaction, round trips, the `flask frameworks` CLI and the audit entries."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import DataError

import config
from governance.models.audit import AuditLog
from governance.models.enums import ControlStatus
from governance.models.frameworks import Control, Framework
from governance.services import audit, framework_io
from governance.services.framework_io import model, ours

SP800_53 = "NIST_SP-800-53_rev5_catalog.json"
CSF_2 = "NIST_CSF_v2.0_catalog.json"


# The NIST files ship in the repository byte for byte (governance/libraries/); these are the sha256 sums
# recorded for the published files (see governance/libraries/README.md), so a test run proves the copies.
PUBLISHED_SHA256 = {
    SP800_53: "95e025bfdc248269efb10ee2621b7a211116a2ef3a82f39676f7c5eb9c8acb64",
    CSF_2: "4836943f21d393f2821df85ada4e6f3c0617243b4ddf44263fe68205400210b4",
}
SOURCE_FOLDERS = (config.ROOT / "governance" / "libraries" / "sources", config.ROOT / "governance" / "libraries")


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """shared_data(name): a source file shipped in the repository, checked against its published sha256.
    A missing or altered file fails the test: it is never skipped."""

    def locate(name: str) -> Path:
        for folder in SOURCE_FOLDERS:
            path = folder / name
            if path.is_file():
                if name in PUBLISHED_SHA256:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    assert digest == PUBLISHED_SHA256[name], f"{path} differs from the published file"
                return path
        pytest.fail(f"source file {name} is missing from {', '.join(map(str, SOURCE_FOLDERS))}")

    return locate


def sample(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format_version": 1, "title": "Sample Framework", "version": "1.0", "region": "EU",
        "source": "https://example.test/sample", "license": "CC BY 4.0, (c) Example",
        "description": "A small framework for tests.",
        "controls": [
            {"ref_id": "GOV", "title": "Govern", "assessable": False, "children": [
                {"ref_id": "GOV-1", "title": "Policies exist", "text": "Policies are written.", "weight": 2.5},
                {"ref_id": "GOV-2", "title": "Roles", "text": "Roles are assigned.", "status": "deprecated",
                 "children": [{"ref_id": "GOV-2(1)", "title": "Named owners", "status": "withdrawn"}]},
            ]},
            {"ref_id": "MAP", "title": "Map", "assessable": False,
             "children": [{"ref_id": "MAP-1", "title": "Context", "text": "Context is known."}]},
        ],
    }
    doc.update(changes)
    return doc


def _count(session: Any, model_cls: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model_cls)) or 0)


def _imports(session: Any) -> list[AuditLog]:
    return list(session.scalars(select(AuditLog).where(AuditLog.action == "framework.import")
                                .order_by(AuditLog.seq)))


def _controls(session: Any, framework: Framework) -> dict[str, Control]:
    return {c.ref_id: c for c in session.scalars(select(Control).where(Control.framework_id == framework.id))}


def _content_without_identity(spec: model.FrameworkSpec) -> dict[str, Any]:
    content = model.content(spec)
    content.pop("title")
    content.pop("version")
    return content


# --- our format --------------------------------------------------------------------------------------


def test_our_json_format_imports_the_tree_in_order_and_audits_it(db_session) -> None:
    document = framework_io.load_document(json.dumps(sample()).encode(), "sample.json")
    result = framework_io.import_framework(db_session, document, fmt="auto")
    assert result.created and result.controls == 6 and result.withdrawn == 1 and result.format == "ours"
    fw = result.framework
    assert (fw.title, fw.version, fw.region, fw.license) == ("Sample Framework", "1.0", "EU", "CC BY 4.0, (c) Example")
    controls = _controls(db_session, fw)
    by_order = sorted(controls.values(), key=lambda c: c.sort_order)
    assert [c.ref_id for c in by_order] == ["GOV", "GOV-1", "GOV-2", "GOV-2(1)", "MAP", "MAP-1"]
    assert controls["GOV-2(1)"].parent_id == controls["GOV-2"].id
    assert controls["GOV-2"].parent_id == controls["GOV"].id and controls["GOV"].parent_id is None
    assert controls["GOV-1"].weight == 2.5 and controls["GOV-1"].text == "Policies are written."
    assert not controls["GOV"].assessable and controls["GOV-1"].assessable
    assert controls["GOV-2"].status == ControlStatus.DEPRECATED
    assert controls["GOV-2(1)"].status == ControlStatus.WITHDRAWN
    [entry] = _imports(db_session)
    assert entry.object_id == str(fw.id) and entry.object_type == "framework"
    assert entry.details["result"] == "created" and entry.details["controls"] == 6
    assert entry.details["sha256"] == result.sha256 and len(result.sha256) == 64


def test_yaml_is_the_same_format_and_the_same_content(db_session) -> None:
    text = yaml.safe_dump(sample(), sort_keys=False)
    from_yaml = framework_io.parse(framework_io.load_document(text.encode(), "sample.yaml"))
    from_json = framework_io.parse(framework_io.load_document(json.dumps(sample()).encode(), None))
    assert model.content(from_yaml) == model.content(from_json)
    # Content sniffing: no name, not JSON → YAML; a block scalar's trailing newline is not content.
    block = "title: T\nversion: '2'\ncontrols:\n  - ref_id: A\n    title: A\n    text: |\n      line one\n"
    spec = framework_io.parse(framework_io.load_document(block.encode()))
    assert spec.controls[0].text == "line one"
    first = framework_io.import_framework(db_session, framework_io.load_document(json.dumps(sample()).encode()))
    again = framework_io.import_framework(db_session, framework_io.load_document(text.encode(), "x.yml"))
    assert first.created and not again.created and again.framework.id == first.framework.id


def _errors(document: Any) -> list[str]:
    with pytest.raises(framework_io.FrameworkFormatError) as caught:
        framework_io.parse(document, "ours")
    return [str(e) for e in caught.value.errors]


def test_schema_errors_name_the_field_and_its_position() -> None:
    doc = sample()
    del doc["controls"][1]["children"][0]["ref_id"]
    doc["controls"][0]["children"][1]["title"] = 7
    doc["controls"][0]["children"][0]["colour"] = "red"
    doc["controls"][0]["children"][1]["children"][0]["status"] = "gone"
    doc["controls"][0]["weight"] = -1
    doc["version"] = 1.0
    errors = _errors(doc)
    assert "/controls/1/children/0/ref_id: is required" in errors
    assert any(e.startswith("/controls/0/children/1/title: must be a string") for e in errors)
    assert any(e.startswith("/controls/0/children/0/colour: unknown field") for e in errors)
    assert any(e.startswith("/controls/0/children/1/children/0/status: must be one of") for e in errors)
    assert "/controls/0/weight: must be at least 0" in errors
    assert any(e.startswith("/version: must be a string") and "quote it" in e for e in errors)


def test_rules_beyond_the_schema_name_positions_too() -> None:
    doc = sample()
    doc["controls"][1]["children"][0]["ref_id"] = "GOV-1"
    doc["controls"][1]["weight"] = 1.2345
    errors = _errors(doc)
    assert "/controls/1/children/0/ref_id: ref_id 'GOV-1' is already used at /controls/0/children/0/ref_id" in errors
    assert "/controls/1/weight: must have at most 3 decimal places" in errors
    assert _errors({"title": "T", "version": "1"}) == ["/controls: is required"]
    assert _errors([]) == ["/: must be an object, not []"]


def test_unreadable_files_say_where() -> None:
    with pytest.raises(framework_io.FrameworkFormatError, match=r"not valid JSON: .* line 2, column"):
        framework_io.load_document(b'{"title": "T",\n "version": }', "f.json")
    with pytest.raises(framework_io.FrameworkFormatError, match=r"not valid YAML: .* line 2"):
        framework_io.load_document(b"title: T\n  version: [1\n", "f.yaml")
    with pytest.raises(framework_io.FrameworkFormatError, match="not UTF-8"):
        framework_io.load_document(b"\xff\xfe\x00t", "f.json")
    with pytest.raises(framework_io.FrameworkFormatError) as caught:
        framework_io.load_document(json.dumps(sample(title="a\u0000b")).encode(), "nul.json")
    assert [str(e) for e in caught.value.errors] == ["/title: contains a NUL character (\\u0000)"]
    with pytest.raises(framework_io.FrameworkFormatError, match="nests"):
        framework_io.load_document(b"[" * 5000 + b"]" * 5000, "deep.json")


def test_importing_the_same_content_again_changes_nothing(db_session) -> None:
    first = framework_io.import_framework(db_session, sample())
    rows = (_count(db_session, Framework), _count(db_session, Control))
    updated = first.framework.updated_at
    again = framework_io.import_framework(db_session, sample(status="draft"))  # status is not content
    assert not again.created and again.framework.id == first.framework.id and again.controls == 6
    assert (_count(db_session, Framework), _count(db_session, Control)) == rows
    db_session.refresh(first.framework)
    assert first.framework.updated_at == updated
    created, unchanged = _imports(db_session)
    assert created.details["result"] == "created" and unchanged.details["result"] == "unchanged"
    assert unchanged.object_id == str(first.framework.id)


def test_other_content_under_an_existing_version_is_refused_and_nothing_is_written(db_session) -> None:
    framework_io.import_framework(db_session, sample())
    db_session.commit()
    before = (_count(db_session, Framework), _count(db_session, Control), len(_imports(db_session)))
    changed = sample()
    changed["controls"][1]["children"][0]["text"] = "Context is known and written down."
    with pytest.raises(framework_io.FrameworkConflictError) as caught:
        framework_io.import_framework(db_session, changed)
    db_session.rollback()
    assert "Sample Framework version 1.0 already exists with different content" in str(caught.value)
    assert "new version" in str(caught.value)
    assert (_count(db_session, Framework), _count(db_session, Control), len(_imports(db_session))) == before
    # The same file under a new version is a new framework; the old version stays readable.
    newer = framework_io.import_framework(db_session, changed, version="1.1")
    assert newer.created
    assert _count(db_session, Framework) == 2


def test_a_deleted_version_is_not_silently_recreated(db_session) -> None:
    result = framework_io.import_framework(db_session, sample())
    result.framework.deleted_at = func.now()
    db_session.flush()
    with pytest.raises(framework_io.FrameworkConflictError, match="was deleted"):
        framework_io.import_framework(db_session, sample())


def test_a_file_failing_midway_writes_nothing(db_session, monkeypatch) -> None:
    """The framework and its controls are flushed before the failure: the rollback removes all."""
    flushed: list[int] = []

    def fail(session: Any, *args: Any, **kwargs: Any) -> Any:
        flushed.append(_count(session, Control))
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "record", fail)
    with pytest.raises(RuntimeError):
        framework_io.import_framework(db_session, sample())
    db_session.rollback()
    assert flushed == [6]  # the controls were in the database when it failed
    assert _count(db_session, Framework) == 0 and _count(db_session, Control) == 0


def test_a_database_error_midway_writes_nothing(db_session) -> None:
    """PostgreSQL refuses NUL in text: the insert of the controls fails after the framework row.
    (load_document refuses such files up front; the service given a document directly does not.)"""
    doc = sample()
    doc["controls"][1]["children"][0]["text"] = "bad \u0000 byte"
    with pytest.raises(DataError):
        framework_io.import_framework(db_session, doc)
    db_session.rollback()
    assert _count(db_session, Framework) == 0 and _count(db_session, Control) == 0


# --- OSCAL -------------------------------------------------------------------------------------------


def test_sp800_53_r5_gives_all_1189_controls_and_enhancements(db_session, shared_data) -> None:
    raw = shared_data(SP800_53).read_bytes()
    started = time.perf_counter()
    result = framework_io.import_framework(db_session, framework_io.load_document(raw, SP800_53))
    db_session.flush()
    seconds = time.perf_counter() - started
    print(f"SP 800-53 r5 import: {result.controls} rows in {seconds:.2f} s")
    assert seconds < 30
    fw = result.framework
    assert result.created and result.format == "oscal" and fw.version == "5.0.1"
    assert fw.title.startswith("NIST Special Publication 800-53 Revision 5")
    assert fw.source == "https://doi.org/10.6028/NIST.SP.800-53r5"
    controls = _controls(db_session, fw)
    groups = [c for c in controls.values() if c.parent_id is None]
    assert len(groups) == 20 and not any(g.assessable for g in groups)
    by_id = {c.id: c for c in controls.values()}
    base = [c for c in controls.values() if c.parent_id is not None and by_id[c.parent_id].parent_id is None]
    enhancements = [c for c in controls.values() if c.parent_id is not None and c not in base]
    assert (len(base), len(enhancements), len(base) + len(enhancements)) == (322, 867, 1189)
    assert sum(c.status == ControlStatus.WITHDRAWN for c in base) == 24
    assert sum(c.status == ControlStatus.WITHDRAWN for c in enhancements) == 158
    assert result.withdrawn == 182
    ac, ac2, ac2_1 = controls["AC"], controls["AC-2"], controls["AC-2(1)"]
    assert ac2_1.parent_id == ac2.id and ac2.parent_id == ac.id and ac.title == "Access Control"
    assert ac2_1.title == "Automated System Account Management" and ac2_1.assessable
    assert ac2_1.text.startswith("Support the management of system accounts using "
                                 "[Assignment: organization-defined automated mechanisms].")
    assert "\n\nGuidance: Automated system account management" in ac2_1.text
    assert "d. Specify:\n  1. Authorized users of the system;" in ac2.text
    withdrawn = controls["AC-2(10)"]
    assert withdrawn.status == ControlStatus.WITHDRAWN and not withdrawn.assessable
    assert withdrawn.text == "Incorporated into AC-2k."
    assert "[Selection (one or more): Organization-level; Mission/business process-level; System-level]" \
        in controls["AC-1"].text
    # The same catalog again: compared with the stored content, nothing written.
    started = time.perf_counter()
    again = framework_io.import_framework(db_session, framework_io.load_document(raw, SP800_53))
    print(f"SP 800-53 r5 re-import (unchanged): {time.perf_counter() - started:.2f} s")
    assert not again.created and again.framework.id == fw.id
    assert _count(db_session, Control) == 1209


def test_csf_2_0_imports(db_session, shared_data) -> None:
    raw = shared_data(CSF_2).read_bytes()
    result = framework_io.import_framework(db_session, framework_io.load_document(raw, CSF_2), fmt="oscal")
    controls = _controls(db_session, result.framework)
    assert result.created and result.framework.version == "1.2.0"
    assert len(controls) == 6 + 34 + 185 and result.withdrawn == 12 + 79
    gv, gv_oc, gv_oc_01 = controls["GV"], controls["GV.OC"], controls["GV.OC-01"]
    assert gv_oc_01.parent_id == gv_oc.id and gv_oc.parent_id == gv.id and gv.parent_id is None
    assert gv.title == "GOVERN" and not gv.assessable and gv_oc.assessable
    assert gv_oc_01.text.startswith("The organizational mission is understood")
    assert "\n\nExample: Share the organization's mission" in gv_oc_01.text
    assert controls["ID.AM-06"].status == ControlStatus.WITHDRAWN
    assert controls["ID.AM-06"].text.endswith("Incorporated into GV.RR-02, GV.SC-02.")


def test_oscal_errors_name_positions() -> None:
    doc = {"catalog": {"uuid": "x", "metadata": {"title": "T"}, "groups": [
        {"id": "g", "title": "G", "controls": [{"title": "no id"}, {"id": "c2"}]}]}}
    with pytest.raises(framework_io.FrameworkFormatError) as caught:
        framework_io.parse(doc)
    errors = [str(e) for e in caught.value.errors]
    assert "/catalog/metadata/version: is required (a non-empty string)" in errors
    assert "/catalog/groups/0/controls/0/id: is required (a string)" in errors
    assert "/catalog/groups/0/controls/1/title: is required (a non-empty string)" in errors
    with pytest.raises(framework_io.FrameworkFormatError, match="Not an OSCAL catalog"):
        framework_io.parse({"catalog": []}, "oscal")


# --- round trips -------------------------------------------------------------------------------------


def test_ours_round_trip(db_session) -> None:
    original = framework_io.import_framework(db_session, sample()).framework
    exported = framework_io.export_framework(db_session, original, "ours")
    assert exported["format_version"] == 1 and exported["controls"][0]["children"][0]["weight"] == 2.5
    # The export is itself a valid file, through JSON and through YAML.
    for text in (json.dumps(exported), yaml.safe_dump(exported)):
        framework_io.parse(framework_io.load_document(text.encode()))
    copy = framework_io.import_framework(db_session, json.loads(json.dumps(exported)), version="copy").framework
    assert copy.id != original.id
    assert _content_without_identity(framework_io.spec_from_db(db_session, copy)) == \
        _content_without_identity(framework_io.parse(sample()))
    # Our fields survive an OSCAL export and re-import too.
    via_oscal = framework_io.export_framework(db_session, original, "oscal")
    again = framework_io.import_framework(db_session, json.loads(json.dumps(via_oscal)), version="oscal")
    assert _content_without_identity(framework_io.spec_from_db(db_session, again.framework)) == \
        _content_without_identity(framework_io.parse(sample()))


def test_oscal_round_trip_of_sp800_53(db_session, shared_data) -> None:
    raw = shared_data(SP800_53).read_bytes()
    original = framework_io.import_framework(db_session, framework_io.load_document(raw, SP800_53)).framework
    exported = framework_io.export_framework(db_session, original, "oscal")
    catalog = exported["catalog"]
    assert catalog["metadata"]["version"] == "5.0.1" and len(catalog["groups"]) == 20
    ac2 = catalog["groups"][0]["controls"][1]
    assert ac2["id"] == "ac-2" and {"name": "label", "value": "AC-2"} in ac2["props"]
    assert ac2["controls"][0]["id"] == "ac-2.1"
    reimported = framework_io.import_framework(db_session, json.loads(json.dumps(exported)), version="5.0.1-rt")
    assert reimported.created and reimported.controls == 1209 and reimported.withdrawn == 182
    first, second = (framework_io.spec_from_db(db_session, f) for f in (original, reimported.framework))
    assert _content_without_identity(first) == _content_without_identity(second)
    # Exporting twice gives the same document (stable ids and uuid).
    assert framework_io.export_framework(db_session, original, "oscal") == exported


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_imports_and_exports(app, db_session, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    path = tmp_path / "sample.yaml"
    path.write_text(yaml.safe_dump(sample()), encoding="utf-8")
    result = runner.invoke(args=["frameworks", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "imported Sample Framework 1.0 (ours): 6 controls, 1 withdrawn" in result.output
    [entry] = _imports(db_session)
    assert entry.actor_name == "cli:frameworks import"
    again = runner.invoke(args=["frameworks", "import", str(path), "--format", "ours"])
    assert again.exit_code == 0 and "nothing changed" in again.output

    out = tmp_path / "out.json"
    exported = runner.invoke(args=["frameworks", "export", "--title", "Sample Framework", "--version", "1.0",
                                   "--format", "oscal", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert json.loads(out.read_text())["catalog"]["metadata"]["title"] == "Sample Framework"
    stdout = runner.invoke(args=["frameworks", "export", "--title", "Sample Framework", "--version", "1.0"])
    assert stdout.exit_code == 0 and json.loads(stdout.output)["controls"][0]["ref_id"] == "GOV"
    as_yaml = tmp_path / "out.yaml"
    assert runner.invoke(args=["frameworks", "export", "--title", "Sample Framework", "--version", "1.0",
                               "-o", str(as_yaml)]).exit_code == 0
    assert yaml.safe_load(as_yaml.read_text())["title"] == "Sample Framework"


def test_cli_errors_are_messages_not_tracebacks(app, db_session, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"title": "T", "version": "1", "controls": [{"title": "x"}]}))
    result = runner.invoke(args=["frameworks", "import", str(bad)])
    assert result.exit_code == 1
    assert "/controls/0/ref_id: is required" in result.output and "Traceback" not in result.output
    assert _count(db_session, Framework) == 0
    good = tmp_path / "good.json"
    good.write_text(json.dumps(sample()))
    assert runner.invoke(args=["frameworks", "import", str(good)]).exit_code == 0
    changed = sample(description="Another text.")
    good.write_text(json.dumps(changed))
    conflict = runner.invoke(args=["frameworks", "import", str(good)])
    assert conflict.exit_code == 1 and "already exists with different content" in conflict.output
    missing = runner.invoke(args=["frameworks", "export", "--title", "Nope", "--version", "1"])
    assert missing.exit_code == 1 and "no framework 'Nope'" in missing.output


def test_exported_ours_validates_against_the_published_schema() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(ours.schema())
    Draft202012Validator(ours.schema()).validate(ours.dump(framework_io.parse(sample())))
