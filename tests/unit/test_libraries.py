"""The framework libraries shipped in governance/libraries (services/libraries.py, `flask frameworks load-library`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import config
from governance.models.audit import AuditLog
from governance.models.frameworks import Control, Framework
from governance.services import framework_io, libraries

SUMMARY = re.compile(r"^Summary \(not the (legal|OWASP) text\): \S")
FIXED_NAMES = {
    "nist-ai-rmf": ("NIST AI RMF", "1.0"),
    "nist-csf": ("NIST CSF", "2.0"),
    "eu-ai-act": ("EU AI Act", "2024/1689"),
    "iso-42001": ("ISO/IEC 42001", "2023"),
    "owasp-llm": ("OWASP Top 10 for LLM Applications", "2025"),
}
EU_REQUIRED = [5, 9, 10, 11, 12, 13, 14, 15, 16, 17, 26, 27, 50, 53, 54, 55, 72, 73]


# The source files ship in the repository (governance/libraries/ and its sources/), so a clone needs
# nothing beside it. Their sha256 sums are those of the team's shared/data files (NIST's published sums
# for the OSCAL catalogs; see governance/libraries/README.md): a changed copy fails here.
SOURCE_SHA256 = {
    "nist-ai-rmf-1.0.json": "ed8036df01dc33a4cd60d1eb6986d8196fd4bd09f507eb6fa655e79c98a64628",
    "NIST_CSF_v2.0_catalog.json": "4836943f21d393f2821df85ada4e6f3c0617243b4ddf44263fe68205400210b4",
    "eu-ai-act-articles.json": "ad16f645791f6124de69b8e771c7e535cc8a0a638f4b8e61c42ee904ddf029f9",
}
SOURCE_FOLDERS = (config.ROOT / "governance" / "libraries", config.ROOT / "governance" / "libraries" / "sources")


def _shared(name: str) -> Path:
    for folder in SOURCE_FOLDERS:
        path = folder / name
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == SOURCE_SHA256[name], \
                f"{path} is not the source file it should be a copy of"
            return path
    pytest.fail(f"source file {name} is missing from {', '.join(map(str, SOURCE_FOLDERS))}")


def _rows(session: Any, framework: Framework) -> list[Any]:
    return list(session.execute(
        select(Control.id, Control.parent_id, Control.ref_id, Control.title, Control.text, Control.assessable,
               Control.status).where(Control.framework_id == framework.id).order_by(Control.sort_order)).all())


def _depths(rows: list[Any]) -> dict[str, int]:
    by_id = {row.id: row for row in rows}
    depths: dict[str, int] = {}
    for row in rows:
        depth, parent = 0, row.parent_id
        while parent is not None:
            depth, parent = depth + 1, by_id[parent].parent_id
        depths[row.ref_id] = depth
    return depths


def _load(session: Any, name: str) -> tuple[framework_io.ImportResult, list[Any]]:
    result = libraries.load_library(session, name)
    return result, _rows(session, result.framework)


def test_registry_names_titles_versions_and_files() -> None:
    assert {name: (lib.title, lib.version) for name, lib in libraries.LIBRARIES.items()} == FIXED_NAMES
    for lib in libraries.LIBRARIES.values():
        assert lib.path.is_file(), lib.path
    readme = (libraries.LIBRARY_DIR / "README.md").read_text(encoding="utf-8")
    for lib in libraries.LIBRARIES.values():
        assert lib.file in readme


def test_unknown_library_is_an_error(db_session) -> None:
    with pytest.raises(framework_io.FrameworkIOError, match="Unknown library 'nope'"):
        libraries.load_library(db_session, "nope")


def test_ai_rmf(db_session) -> None:
    result, rows = _load(db_session, "nist-ai-rmf")
    assert result.created and result.controls == 4 + 19 + 72
    depth = Counter(_depths(rows).values())
    assert depth == {0: 4, 1: 19, 2: 72}
    assert sum(1 for r in rows if r.assessable) == 72
    # The content equals NIST's core as transcribed in the shared data (ids and texts).
    shared = json.loads(_shared("nist-ai-rmf-1.0.json").read_text(encoding="utf-8"))
    expected = {}
    for function in shared["functions"]:
        expected[function["id"]] = (function["title"], None)
        for category in function["categories"]:
            expected[category["id"]] = (category["title"], category["title"])
            for sub in category["subcategories"]:
                expected[sub["id"]] = (sub["text"][:500], sub["text"])
    assert {r.ref_id: (r.title, r.text) for r in rows} == expected
    assert (libraries.LIBRARIES["nist-ai-rmf"].path.read_bytes()
            == _shared("nist-ai-rmf-1.0.json").read_bytes())


def test_csf(db_session) -> None:
    copy = libraries.LIBRARIES["nist-csf"].path
    assert copy.read_bytes() == _shared("NIST_CSF_v2.0_catalog.json").read_bytes(), \
        "governance/libraries/NIST_CSF_v2.0_catalog.json must be a byte-identical copy of the shared file"
    result, rows = _load(db_session, "nist-csf")
    assert result.created and result.controls == 6 + 34 + 185
    depth = Counter(_depths(rows).values())
    assert depth == {0: 6, 1: 34, 2: 185}
    by_ref = {r.ref_id: r for r in rows}
    assert {"GV", "GV.OC", "GV.OC-01", "RC", "RC.RP"} <= set(by_ref)
    assert "https://doi.org/10.6028/NIST.CSWP.29;" in (result.framework.source or "")
    assert "public domain" in (result.framework.license or "").lower()
    assert by_ref["GV.OC-01"].parent_id == by_ref["GV.OC"].id and by_ref["GV.OC"].parent_id == by_ref["GV"].id
    # The same content as importing NIST's catalog file directly (only title/version/licence differ).
    direct = framework_io.parse(json.loads(copy.read_text(encoding="utf-8")), "oscal")
    spec = framework_io.spec_from_db(db_session, result.framework)
    assert [c.ref_id for c in spec.controls] == [c.ref_id for c in direct.controls]
    assert spec.controls == direct.controls


def test_eu_ai_act(db_session) -> None:
    result, rows = _load(db_session, "eu-ai-act")
    assert result.created
    by_ref = {r.ref_id: r for r in rows}
    by_id = {r.id: r for r in rows}
    shared = json.loads(_shared("eu-ai-act-articles.json").read_text(encoding="utf-8"))
    articles = [a for chapter in shared["chapters"] for a in chapter["articles"]]
    assert len(articles) == 113
    for chapter in shared["chapters"]:
        node = by_ref[f"Chapter {chapter['id']}"]
        assert node.parent_id is None and not node.assessable and node.title == chapter["title"]
        for article in chapter["articles"]:
            art = by_ref[f"Article {article['number']}"]
            assert art.title == article["title"] and not art.assessable
            ancestor = art
            while ancestor.parent_id is not None:
                ancestor = by_id[ancestor.parent_id]
            assert ancestor.ref_id == f"Chapter {chapter['id']}"
    leaves = [r for r in rows if r.assessable]
    assert leaves and all(r.text and SUMMARY.match(r.text) and "legal" in r.text[:30] for r in leaves)
    # Every assessable node is an obligation leaf; headings carry no text.
    assert all(not any(c.parent_id == r.id for c in rows) for r in leaves)
    assert all(r.text is None for r in rows if not r.assessable)
    ref = re.compile(r"^(Article \d+|Annex IV)\((\d+|[a-z])\)(\([a-z]\))?$")
    assert all(ref.match(r.ref_id) for r in leaves), [r.ref_id for r in leaves if not ref.match(r.ref_id)]
    for number in EU_REQUIRED:
        article = by_ref[f"Article {number}"]
        children = [r for r in leaves if r.parent_id == article.id]
        assert children, f"no obligation leaves under Article {number}"
        assert all(r.ref_id.startswith(f"Article {number}(") for r in children)
    annex = by_ref["Annex IV"]
    assert annex.title == "Technical documentation referred to in Article 11(1)" and annex.parent_id is None
    assert [r.ref_id for r in leaves if r.parent_id == annex.id] == [f"Annex IV({n})" for n in range(1, 10)]
    framework = result.framework
    assert "2024/1689" in (framework.source or "") and "data.europa.eu/eli/reg/2024/1689/oj" in framework.source
    assert "© European Union" in (framework.license or "") and "2011/833/EU" in framework.license
    assert "Summaries are this project's" in framework.license


def test_iso_42001(db_session) -> None:
    result, rows = _load(db_session, "iso-42001")
    assert result.created
    controls = [r for r in rows if r.assessable]
    objectives = [r for r in rows if r.parent_id is None]
    assert len(controls) == 38
    assert [r.ref_id for r in objectives] == [f"A.{n}" for n in range(2, 11)]
    assert {r.ref_id for r in rows if not r.assessable} == {f"A.{n}" for n in range(2, 11)} | {"A.6.1", "A.6.2"}
    assert all(r.text is None for r in rows), "ISO/IEC 42001 text is copyrighted: identifiers and titles only"
    by_ref = {r.ref_id: r for r in rows}
    assert by_ref["A.6.2.8"].title == "AI system recording of event logs"
    assert by_ref["A.6.2.8"].parent_id == by_ref["A.6.2"].id and by_ref["A.6.2"].parent_id == by_ref["A.6"].id
    assert by_ref["A.10.4"].title == "Customers"
    assert "copyrighted by ISO/IEC and not included" in (result.framework.license or "")


def test_owasp_llm(db_session) -> None:
    result, rows = _load(db_session, "owasp-llm")
    assert result.created
    assert [r.ref_id for r in rows] == [f"LLM{n:02d}:2025" for n in range(1, 11)]
    assert [r.title for r in rows] == [
        "Prompt Injection", "Sensitive Information Disclosure", "Supply Chain", "Data and Model Poisoning",
        "Improper Output Handling", "Excessive Agency", "System Prompt Leakage",
        "Vector and Embedding Weaknesses", "Misinformation", "Unbounded Consumption"]
    assert all(r.assessable and r.text and SUMMARY.match(r.text) for r in rows)
    assert result.framework.license == ("OWASP Top 10 for LLM Applications 2025, © OWASP Foundation, "
                                        "licensed CC BY-SA 4.0, https://genai.owasp.org/")


def test_load_all_twice_changes_nothing(db_session) -> None:
    first = libraries.load_all(db_session)
    assert [r.created for r in first] == [True] * len(libraries.LIBRARIES)
    assert {(r.framework.title, r.framework.version) for r in first} == set(FIXED_NAMES.values())
    for r in first:
        assert r.framework.source and r.framework.license, r.framework.title
    rows_before = db_session.execute(
        select(Control.id, Control.updated_at).order_by(Control.id)).all()
    frameworks_before = db_session.execute(select(Framework.id, Framework.updated_at).order_by(Framework.id)).all()
    again = libraries.load_all(db_session)
    assert [r.created for r in again] == [False] * len(libraries.LIBRARIES)
    assert [r.framework.id for r in again] == [r.framework.id for r in first]
    assert db_session.execute(select(Control.id, Control.updated_at).order_by(Control.id)).all() == rows_before
    assert db_session.execute(select(Framework.id, Framework.updated_at).order_by(Framework.id)).all() \
        == frameworks_before
    unchanged = db_session.scalar(select(func.count()).select_from(AuditLog).where(
        AuditLog.action == "framework.import", AuditLog.details["result"].astext == "unchanged"))
    assert unchanged == len(libraries.LIBRARIES)


def test_library_files_validate_and_export_round_trip(db_session) -> None:
    for name in libraries.LIBRARIES:
        document = libraries.document(name)
        spec = framework_io.parse(document, "ours")
        result = framework_io.import_framework(db_session, document, fmt="ours")
        exported = framework_io.export_framework(db_session, result.framework, "ours")
        assert framework_io.parse(exported, "ours") == spec, name


def test_cli_load_library(app, db_session) -> None:
    runner = app.test_cli_runner()
    one = runner.invoke(args=["frameworks", "load-library", "owasp-llm"])
    assert one.exit_code == 0, one.output
    assert "owasp-llm: OWASP Top 10 for LLM Applications 2025 loaded: 10 controls" in one.output
    every = runner.invoke(args=["frameworks", "load-library", "--all"])
    assert every.exit_code == 0, every.output
    assert "owasp-llm: OWASP Top 10 for LLM Applications 2025 already loaded, unchanged" in every.output
    assert "nist-csf: NIST CSF 2.0 loaded: 225 controls" in every.output
    assert "5 of 5 libraries in" in every.output
    assert db_session.scalar(select(func.count()).select_from(Framework)) == 5
    entry = db_session.scalars(select(AuditLog).where(AuditLog.action == "framework.import")).first()
    assert entry is not None and entry.actor_name == "cli:frameworks load-library"
    again = runner.invoke(args=["frameworks", "load-library", "--all"])
    assert again.exit_code == 0 and again.output.count("already loaded, unchanged") == 5
    unknown = runner.invoke(args=["frameworks", "load-library", "nope"])
    assert unknown.exit_code != 0 and "Unknown library 'nope'" in unknown.output
    usage = runner.invoke(args=["frameworks", "load-library"])
    assert usage.exit_code != 0 and "--all" in usage.output


def test_a_loaded_framework_starts_with_its_assessable_controls_unassessed(db_session) -> None:
    from sqlalchemy import select

    from governance.models.scoring import CurrentScore
    from governance.services import libraries as libs

    imported = libs.load_library(db_session, "nist-ai-rmf")
    row = db_session.scalars(select(CurrentScore).where(CurrentScore.framework_id == imported.framework.id)).one()
    assert row.value is None and row.unassessed == 72
    assert (row.compliant, row.partial, row.non_compliant, row.error) == (0, 0, 0, 0)
