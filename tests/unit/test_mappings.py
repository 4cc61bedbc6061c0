"""Mapping sets (governance.services.mappings): JSON and CSV import in one transaction with positioned
errors, no-op re-import, audited updates, export round trips, the OLIR vocabulary, the `flask mappings`
CLI, and the two shipped sets (well-formed, labelled as the project's, loadable end to end)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from governance.models.audit import AuditLog
from governance.models.enums import MappingRelationship
from governance.models.frameworks import Control, Framework, Mapping
from governance.services import framework_io, mappings
from tests.unit.test_libraries import _shared as _shared_source

ISO_42001_ANNEX_A = {
    "A.2.2", "A.2.3", "A.2.4", "A.3.2", "A.3.3", "A.4.2", "A.4.3", "A.4.4", "A.4.5", "A.4.6", "A.5.2", "A.5.3",
    "A.5.4", "A.5.5", "A.6.1.2", "A.6.1.3", "A.6.2.2", "A.6.2.3", "A.6.2.4", "A.6.2.5", "A.6.2.6", "A.6.2.7",
    "A.6.2.8", "A.7.2", "A.7.3", "A.7.4", "A.7.5", "A.7.6", "A.8.2", "A.8.3", "A.8.4", "A.8.5", "A.9.2", "A.9.3",
    "A.9.4", "A.10.2", "A.10.3", "A.10.4",
}
OLIR_WORDS = ("equal", "subset_of", "superset_of", "intersects_with", "related_to")


def _shared(name: str) -> Any:
    """A source file shipped in the repository, checked against the team's shared copy's sha256."""
    return json.loads(_shared_source(name).read_text(encoding="utf-8"))


def _framework(session: Any, title: str, refs: list[str]) -> Framework:
    document = {"format_version": 1, "title": title, "version": "1", "controls": [
        {"ref_id": ref, "title": f"{title} {ref}"} for ref in refs]}
    return framework_io.import_framework(session, document).framework


@pytest.fixture
def two_frameworks(db_session: Any) -> tuple[Framework, Framework]:
    return (_framework(db_session, "Alpha", ["A-1", "A-2", "A-3"]),
            _framework(db_session, "Beta", ["B-1", "B-2"]))


def _set(rows: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format_version": 1, "name": "Alpha to Beta", "description": "test set",
        "source": "test project mapping", "license": "CC0",
        "source_framework": {"title": "Alpha", "version": "1"},
        "target_framework": {"title": "Beta", "version": "1"},
        "mappings": rows}
    document.update(changes)
    return document


ROWS = [
    {"source": "A-1", "target": "B-1", "relationship": "intersects_with", "strength": 6, "rationale": "shared goal"},
    {"source": "A-2", "target": "B-1", "relationship": "subset_of", "rationale": "narrower"},
    {"source": "A-3", "target": "B-2", "relationship": "related_to", "strength": None, "rationale": "supports"},
]


def _import_json(session: Any, document: dict[str, Any]) -> mappings.MappingImportResult:
    return mappings.import_mapping_set(session, mappings.load_document(json.dumps(document), "set.json"))


def _count(session: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(Mapping)) or 0)


def _audit(session: Any, action: str) -> list[AuditLog]:
    return list(session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.seq)))


def _stored(session: Any) -> dict[tuple[str, str], Mapping]:
    rows = session.scalars(select(Mapping)).all()
    ref = {c.id: c.ref_id for c in session.scalars(select(Control))}
    return {(ref[m.source_control_id], ref[m.target_control_id]): m for m in rows}


# --- vocabulary ------------------------------------------------------------------------------------


def test_the_relationship_vocabulary_is_olir() -> None:
    assert tuple(m.value for m in MappingRelationship) == OLIR_WORDS
    assert mappings.parse_relationship("intersects_with") is MappingRelationship.INTERSECTS_WITH
    # older spellings and loose forms are read, never written
    assert mappings.parse_relationship("equivalent") is MappingRelationship.EQUAL
    assert mappings.parse_relationship("Related To") is MappingRelationship.RELATED_TO
    assert mappings.parse_relationship("intersects") is MappingRelationship.INTERSECTS_WITH
    assert mappings.parse_relationship("overlaps") is None


def test_the_database_type_holds_the_olir_words(db_session: Any) -> None:
    labels = db_session.execute(text(
        "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
        "WHERE t.typname = 'mapping_relationship' ORDER BY e.enumsortorder")).scalars().all()
    assert tuple(labels) == OLIR_WORDS
    default = db_session.execute(text(
        "SELECT column_default FROM information_schema.columns "
        "WHERE table_name = 'mappings' AND column_name = 'relationship'")).scalar()
    assert default.startswith("'related_to'")


def test_migration_0006_renames_stored_relationships_both_ways(scratch_database_url: str, app_for: Any) -> None:
    import flask_migrate
    from sqlalchemy import create_engine

    from extensions import db

    application = app_for(scratch_database_url)
    with application.app_context():
        flask_migrate.upgrade(revision="0005_framework_import")
        engine = create_engine(scratch_database_url)
        try:
            with engine.begin() as conn:
                fw = conn.execute(text("INSERT INTO frameworks (title, version) VALUES ('F', '1') RETURNING id"))
                fw = fw.scalar()
                ids = [conn.execute(text("INSERT INTO controls (framework_id, ref_id, title) "
                                         "VALUES (:f, :r, :r) RETURNING id"), {"f": fw, "r": r}).scalar()
                       for r in ("C1", "C2", "C3")]
                for target, word in ((ids[1], "equivalent"), (ids[2], "intersects")):
                    conn.execute(text("INSERT INTO mappings (source_control_id, target_control_id, relationship) "
                                      "VALUES (:s, :t, :w)"), {"s": ids[0], "t": target, "w": word})
                conn.execute(text("INSERT INTO mappings (source_control_id, target_control_id) VALUES (:s, :t)"),
                             {"s": ids[1], "t": ids[2]})
            query = text("SELECT relationship::text FROM mappings ORDER BY relationship::text")
            flask_migrate.upgrade(revision="0006_mapping_vocabulary")
            with engine.connect() as conn:
                assert conn.execute(query).scalars().all() == ["equal", "intersects_with", "related_to"]
            flask_migrate.downgrade(revision="0005_framework_import")
            with engine.connect() as conn:
                assert conn.execute(query).scalars().all() == ["equivalent", "intersects", "related"]
        finally:
            engine.dispose()
        db.engine.dispose()


# --- import ----------------------------------------------------------------------------------------


def test_json_import_creates_the_rows_and_audits_them(db_session: Any, two_frameworks: Any) -> None:
    result = _import_json(db_session, _set(ROWS))
    assert (result.created, result.updated, result.unchanged) == (3, 0, 0)
    stored = _stored(db_session)
    first = stored[("A-1", "B-1")]
    assert first.relationship_type is MappingRelationship.INTERSECTS_WITH and first.strength == 6
    assert first.rationale == "shared goal" and first.source == "test project mapping"
    assert stored[("A-2", "B-1")].relationship_type is MappingRelationship.SUBSET_OF
    assert stored[("A-3", "B-2")].strength is None
    [entry] = _audit(db_session, "mapping.import")
    assert entry.details["created"] == 3 and entry.details["name"] == "Alpha to Beta"
    creates = _audit(db_session, "mapping.create")
    assert len(creates) == 3 and {e.details["source_ref"] for e in creates} == {"A-1", "A-2", "A-3"}


def test_csv_import_reads_the_same_rows(db_session: Any, two_frameworks: Any) -> None:
    text = ",".join(mappings.CSV_HEADER) + "\n" + (
        "Alpha,1,A-1,intersects_with,Beta,1,B-1,6,shared goal\n"
        "Alpha,1,A-2,subset_of,Beta,1,B-1,,\"narrower, by design\"\n")
    result = mappings.import_mapping_set(db_session, mappings.load_document(text.encode(), "set.csv"))
    assert result.created == 2
    stored = _stored(db_session)
    assert stored[("A-1", "B-1")].strength == 6
    assert stored[("A-2", "B-1")].rationale == "narrower, by design" and stored[("A-2", "B-1")].strength is None


def test_unknown_ref_ids_are_named_with_their_position_and_nothing_is_written(db_session: Any,
                                                                             two_frameworks: Any) -> None:
    rows = [*ROWS, {"source": "A-9", "target": "B-1", "relationship": "equal"},
            {"source": "A-1", "target": "B-7", "relationship": "equal"}]
    with pytest.raises(mappings.MappingIOError) as caught:
        _import_json(db_session, _set(rows))
    text = str(caught.value)
    assert "/mappings/3 (source): no control 'A-9' in Alpha 1" in text
    assert "/mappings/4 (target): no control 'B-7' in Beta 1" in text
    assert _count(db_session) == 0 and _audit(db_session, "mapping.import") == []


def test_an_unknown_framework_is_named_and_nothing_is_written(db_session: Any, two_frameworks: Any) -> None:
    with pytest.raises(mappings.MissingFrameworkError) as caught:
        _import_json(db_session, _set(ROWS, target_framework={"title": "Gamma", "version": "2"}))
    assert caught.value.missing == [("Gamma", "2")]
    assert "'Gamma' version '2'" in str(caught.value) and "/mappings/0 (target)" in str(caught.value)
    assert "flask frameworks load-library" in str(caught.value)
    assert _count(db_session) == 0


def test_csv_errors_name_the_line(db_session: Any, two_frameworks: Any) -> None:
    text = ",".join(mappings.CSV_HEADER) + "\n" + (
        "Alpha,1,A-1,intersects_with,Beta,1,B-1,6,ok\n"
        "Alpha,1,A-2,overlaps,Beta,1,B-1,11,bad\n"
        "Alpha,1,A-3,related_to,Beta,1,B-9,,missing target\n")
    with pytest.raises(mappings.MappingIOError) as caught:
        mappings.import_mapping_set(db_session, mappings.load_document(text, "set.csv"))
    assert "line 3 (relationship): unknown relationship 'overlaps'" in str(caught.value)
    assert "line 3 (strength): strength must be from 1 to 10, not 11" in str(caught.value)
    # line 3 fails to parse, so nothing reaches the database; fix it and line 4's target is reported
    fixed = text.replace("overlaps,Beta,1,B-1,11", "equal,Beta,1,B-1,10")
    with pytest.raises(mappings.MappingIOError) as again:
        mappings.import_mapping_set(db_session, mappings.load_document(fixed, "set.csv"))
    assert "line 4 (target): no control 'B-9' in Beta 1" in str(again.value)
    assert _count(db_session) == 0
    with pytest.raises(mappings.MappingIOError, match="lacks the column"):
        mappings.load_document("source_framework,source_ref\n", "x.csv")


def test_format_errors_name_the_field(db_session: Any) -> None:
    document = _set([{"source": "A-1", "relationship": "equal", "strength": "high"}, "x"],
                    source_framework={"title": "Alpha"})
    with pytest.raises(mappings.MappingIOError) as caught:
        mappings.parse_json(document)
    text = str(caught.value)
    assert "/source_framework: an object with a non-empty title and version is required" in text
    assert "/mappings/0/target: the target control's ref_id is required" in text
    assert "/mappings/0/strength: strength must be a whole number" in text
    assert "/mappings/1: a mapping must be an object" in text
    with pytest.raises(mappings.MappingIOError, match="not valid JSON"):
        mappings.load_document("{", "set.json")


def test_a_pair_twice_in_one_file_is_refused(db_session: Any, two_frameworks: Any) -> None:
    with pytest.raises(mappings.MappingIOError, match=r"/mappings/3: 'A-1' → 'B-1' is already mapped at /mappings/0"):
        _import_json(db_session, _set([*ROWS, ROWS[0]]))
    assert _count(db_session) == 0


def test_reimporting_the_same_set_changes_nothing(db_session: Any, two_frameworks: Any) -> None:
    _import_json(db_session, _set(ROWS))
    before = {key: (m.id, m.updated_at) for key, m in _stored(db_session).items()}
    result = _import_json(db_session, _set(ROWS))
    assert (result.created, result.updated, result.unchanged) == (0, 0, 3)
    db_session.expire_all()
    assert {key: (m.id, m.updated_at) for key, m in _stored(db_session).items()} == before
    assert len(_audit(db_session, "mapping.update")) == 0 and len(_audit(db_session, "mapping.import")) == 2


def test_a_changed_row_is_updated_and_audited_with_before_and_after(db_session: Any, two_frameworks: Any) -> None:
    _import_json(db_session, _set(ROWS))
    changed = [dict(ROWS[0], relationship="equal", rationale="now the same"), *ROWS[1:]]
    result = _import_json(db_session, _set(changed))
    assert (result.created, result.updated, result.unchanged) == (0, 1, 2)
    mapping = _stored(db_session)[("A-1", "B-1")]
    assert mapping.relationship_type is MappingRelationship.EQUAL and mapping.rationale == "now the same"
    [entry] = _audit(db_session, "mapping.update")
    assert entry.object_id == str(mapping.id)
    assert entry.details["before"] == {"relationship": "intersects_with", "rationale": "shared goal"}
    assert entry.details["after"] == {"relationship": "equal", "rationale": "now the same"}


# --- export ----------------------------------------------------------------------------------------


def test_json_export_round_trips(db_session: Any, two_frameworks: Any) -> None:
    alpha, beta = two_frameworks
    _import_json(db_session, _set(ROWS))
    exported = json.loads(mappings.export_mapping_set(db_session, alpha, beta, "json"))
    assert exported["source_framework"] == {"title": "Alpha", "version": "1"}
    assert exported["source"] == "test project mapping"
    assert [(m["source"], m["target"], m["relationship"], m["strength"], m["rationale"])
            for m in exported["mappings"]] == [
        ("A-1", "B-1", "intersects_with", 6, "shared goal"), ("A-2", "B-1", "subset_of", None, "narrower"),
        ("A-3", "B-2", "related_to", None, "supports")]
    result = _import_json(db_session, exported)
    assert (result.created, result.updated, result.unchanged) == (0, 0, 3)
    # the other direction holds nothing
    assert json.loads(mappings.export_mapping_set(db_session, beta, alpha, "json"))["mappings"] == []


def test_csv_export_round_trips(db_session: Any, two_frameworks: Any) -> None:
    alpha, beta = two_frameworks
    _import_json(db_session, _set([*ROWS[:2], dict(ROWS[2], rationale='quote "this", and a\nnew line')]))
    text = mappings.export_mapping_set(db_session, alpha, beta, "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == mappings.CSV_HEADER
    assert rows[1] == ["Alpha", "1", "A-1", "intersects_with", "Beta", "1", "B-1", "6", "shared goal"]
    result = mappings.import_mapping_set(db_session, mappings.load_document(text, "set.csv"))
    assert (result.created, result.updated, result.unchanged) == (0, 0, 3)
    # and into an empty database: the same rows come back
    db_session.execute(Mapping.__table__.delete())
    mappings.import_mapping_set(db_session, mappings.load_document(text, "set.csv"))
    assert mappings.export_mapping_set(db_session, alpha, beta, "csv") == text


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_imports_exports_and_reports_errors(app: Any, db_session: Any, two_frameworks: Any,
                                                tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    path = tmp_path / "set.json"
    path.write_text(json.dumps(_set(ROWS)), encoding="utf-8")
    result = runner.invoke(args=["mappings", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 created, 0 updated, 0 unchanged" in result.output
    [entry] = _audit(db_session, "mapping.import")
    assert entry.actor_name == "cli:mappings import"
    out = tmp_path / "out.csv"
    exported = runner.invoke(args=["mappings", "export", "--source-title", "Alpha", "--source-version", "1",
                                   "--target-title", "Beta", "--target-version", "1", "--format", "csv",
                                   "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert out.read_text(encoding="utf-8").startswith(",".join(mappings.CSV_HEADER))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_set([{"source": "A-1", "target": "B-9", "relationship": "equal"}])))
    failed = runner.invoke(args=["mappings", "import", str(bad)])
    assert failed.exit_code == 1 and "/mappings/0 (target): no control 'B-9'" in failed.output
    assert "Traceback" not in failed.output
    missing = runner.invoke(args=["mappings", "export", "--source-title", "Nope", "--source-version", "1",
                                  "--target-title", "Beta", "--target-version", "1"])
    assert missing.exit_code == 1 and "no framework 'Nope'" in missing.output
    assert runner.invoke(args=["mappings", "load"]).exit_code == 2


def test_cli_load_names_the_missing_library(app: Any, db_session: Any) -> None:
    result = app.test_cli_runner().invoke(args=["mappings", "load", "nist-ai-rmf_iso-42001"])
    assert result.exit_code == 1
    assert "'NIST AI RMF' version '1.0'" in result.output
    assert "`flask frameworks load-library nist-ai-rmf`" in result.output
    assert _count(db_session) == 0
    unknown = app.test_cli_runner().invoke(args=["mappings", "load", "nope"])
    assert unknown.exit_code == 1 and "No shipped mapping set 'nope'" in unknown.output


# --- the shipped sets ------------------------------------------------------------------------------


def _rmf_ids() -> set[str]:
    data = _shared("nist-ai-rmf-1.0.json")
    return {sub["id"] for function in data["functions"] for category in function["categories"]
            for sub in category["subcategories"]}


def _eu_article_numbers() -> set[str]:
    numbers: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "number" in node and "title" in node:
                numbers.add(str(node["number"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_shared("eu-ai-act-articles.json")["chapters"])
    return numbers


def _shipped(name: str) -> dict[str, Any]:
    return json.loads(mappings.shipped_path(name).read_text(encoding="utf-8"))


def test_both_sets_ship() -> None:
    assert mappings.shipped_sets() == ["eu-ai-act_nist-ai-rmf", "nist-ai-rmf_iso-42001"]


@pytest.mark.parametrize("name", ["nist-ai-rmf_iso-42001", "eu-ai-act_nist-ai-rmf"])
def test_a_shipped_set_is_well_formed_and_labelled_as_the_projects(name: str) -> None:
    document = _shipped(name)
    assert document["source"] == mappings.PROJECT_SOURCE
    assert "project" in document["source"].lower() and "not an official" in document["source"]
    assert "project" in document["name"].lower() and "not" in document["description"]
    spec = mappings.parse_json(document)  # valid: relationships, strengths, refs present
    assert 30 <= len(spec.rows) <= 60
    pairs = [(row.source_ref, row.target_ref) for row in spec.rows]
    assert len(set(pairs)) == len(pairs), "a pair is mapped twice"
    rationales = [row.rationale or "" for row in spec.rows]
    assert all(len(r) >= 60 for r in rationales), "every row needs a specific rationale"
    assert len(set(rationales)) == len(rationales), "rationales are written per row, not copied"
    assert {row.relationship.value for row in spec.rows} <= set(OLIR_WORDS)
    assert all(m["relationship"] in OLIR_WORDS for m in document["mappings"])
    assert all(row.source == mappings.PROJECT_SOURCE for row in spec.rows)
    assert "not published or endorsed" in document["description"]


def test_rmf_to_iso_refers_only_to_known_ids() -> None:
    document = _shipped("nist-ai-rmf_iso-42001")
    assert document["source_framework"] == {"title": "NIST AI RMF", "version": "1.0"}
    assert document["target_framework"] == {"title": "ISO/IEC 42001", "version": "2023"}
    rmf = _rmf_ids()
    assert len(rmf) == 72
    assert {m["source"] for m in document["mappings"]} - rmf == set()
    assert {m["target"] for m in document["mappings"]} - ISO_42001_ANNEX_A == set()


def test_eu_ai_act_to_rmf_refers_only_to_known_ids() -> None:
    document = _shipped("eu-ai-act_nist-ai-rmf")
    assert document["source_framework"] == {"title": "EU AI Act", "version": "2024/1689"}
    assert document["target_framework"] == {"title": "NIST AI RMF", "version": "1.0"}
    articles = _eu_article_numbers()
    assert len(articles) == 113
    for mapping in document["mappings"]:
        match = re.fullmatch(r"Article (\d+)", mapping["source"])
        assert match is not None and match.group(1) in articles, mapping["source"]
    assert {m["target"] for m in document["mappings"]} - _rmf_ids() == set()


def test_shipped_sets_load_after_their_libraries_and_again_change_nothing(db_session: Any) -> None:
    from governance.services import libraries

    for name in ("nist-ai-rmf", "iso-42001", "eu-ai-act"):
        libraries.load_library(db_session, name)
    results = mappings.load_all_mapping_sets(db_session)
    assert {name: r.created for name, r in results.items()} == {
        name: len(_shipped(name)["mappings"]) for name in mappings.shipped_sets()}
    again = mappings.load_all_mapping_sets(db_session)
    assert all(r.created == 0 and r.updated == 0 for r in again.values())
    stored = db_session.scalars(select(Mapping)).all()
    assert stored and all(m.source == mappings.PROJECT_SOURCE and m.rationale for m in stored)


def test_available_sets_load_when_both_frameworks_are_there(db_session) -> None:
    from governance.services import libraries

    libraries.load_library(db_session, "nist-ai-rmf")
    assert mappings.load_available_mapping_sets(db_session) == {}  # no ISO, no EU AI Act yet
    libraries.load_library(db_session, "iso-42001")
    loaded = mappings.load_available_mapping_sets(db_session)
    assert list(loaded) == ["nist-ai-rmf_iso-42001"] and loaded["nist-ai-rmf_iso-42001"].created == 57
    again = mappings.load_available_mapping_sets(db_session)
    assert again["nist-ai-rmf_iso-42001"].created == 0 and again["nist-ai-rmf_iso-42001"].unchanged == 57
