"""Framework libraries shipped with the product (governance/libraries/, see its README.md).

Each library is one file loaded through the framework importer (framework_io), so loading it
again changes nothing (the importer compares the canonical content) and a library is stored
exactly as an import of its file would store it. `flask frameworks load-library NAME | --all`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from governance.services import framework_io
from governance.services.framework_io import ours

LIBRARY_DIR = Path(__file__).resolve().parent.parent / "libraries"


@dataclass(frozen=True)
class Library:
    name: str
    file: str
    # "ours": our format as is; "oscal": an OSCAL catalog imported under our title/version/licence;
    # "nist-ai-rmf": the AI RMF transcription (functions/categories/subcategories) converted.
    format: str
    title: str
    version: str

    @property
    def path(self) -> Path:
        return LIBRARY_DIR / self.file


LIBRARIES: dict[str, Library] = {lib.name: lib for lib in (
    Library("nist-ai-rmf", "nist-ai-rmf-1.0.json", "nist-ai-rmf", "NIST AI RMF", "1.0"),
    Library("nist-csf", "NIST_CSF_v2.0_catalog.json", "oscal", "NIST CSF", "2.0"),
    Library("eu-ai-act", "eu-ai-act-2024-1689.json", "ours", "EU AI Act", "2024/1689"),
    Library("iso-42001", "iso-iec-42001-2023-annex-a.json", "ours", "ISO/IEC 42001", "2023"),
    Library("owasp-llm", "owasp-top10-llm-2025.json", "ours", "OWASP Top 10 for LLM Applications", "2025"),
)}

CSF_LICENSE = ("Public domain: U.S. Government work (NIST), not subject to copyright in the U.S. "
               "(17 U.S.C. 105); OSCAL catalog from usnistgov/oscal-content, shipped unchanged.")
# The catalog's canonical link names the initial public draft's DOI (…CSWP.29.ipd); cite the final publication.
CSF_SOURCE = ("NIST Cybersecurity Framework (CSF) 2.0, NIST CSWP 29, February 26, 2024, "
              "https://doi.org/10.6028/NIST.CSWP.29; OSCAL catalog: usnistgov/oscal-content "
              "nist.gov/CSF/v2.0/json/NIST_CSF_v2.0_catalog.json (release v1.5.0)")
CSF_DESCRIPTION = ("NIST Cybersecurity Framework (CSF) 2.0 Core: functions, categories and subcategories, "
                   "imported from NIST's OSCAL catalog (usnistgov/oscal-content, NIST_CSF_v2.0_catalog.json). "
                   "Categories and subcategories NIST has withdrawn are kept with status withdrawn.")


class UnknownLibraryError(framework_io.FrameworkIOError):
    pass


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def ai_rmf_document(path: Path | None = None) -> dict[str, Any]:
    """The AI RMF library (functions → categories → subcategories) in our framework format."""
    data: dict[str, Any] = _read_json(path or LIBRARIES["nist-ai-rmf"].path)
    lib = LIBRARIES["nist-ai-rmf"]
    return {
        "format_version": 1, "title": lib.title, "version": lib.version, "region": "US",
        "source": data["source"]["document"], "license": data["license"], "status": "active",
        "description": "Artificial Intelligence Risk Management Framework (NIST AI 100-1): "
                       "the Core's functions, categories and subcategories.",
        "controls": [
            {"ref_id": function["id"], "title": function["title"], "assessable": False, "children": [
                {"ref_id": category["id"], "title": category["title"], "text": category["title"],
                 "assessable": False, "children": [
                     {"ref_id": sub["id"], "title": sub["text"][:500], "text": sub["text"]}
                     for sub in category["subcategories"]]}
                for category in function["categories"]]}
            for function in data["functions"]],
    }


def csf_document() -> dict[str, Any]:
    """NIST's CSF 2.0 OSCAL catalog as the OSCAL importer reads it, under our title, version and licence."""
    lib = LIBRARIES["nist-csf"]
    spec = framework_io.parse(_read_json(lib.path), "oscal")
    document = ours.dump(spec)
    document.update(title=lib.title, version=lib.version, region="US", source=CSF_SOURCE, license=CSF_LICENSE,
                    description=CSF_DESCRIPTION)
    return document


def document(name: str) -> dict[str, Any]:
    """The library NAME as a document in our format (what load_library imports)."""
    lib = get(name)
    if lib.format == "nist-ai-rmf":
        return ai_rmf_document(lib.path)
    if lib.format == "oscal":
        return csf_document()
    loaded: dict[str, Any] = _read_json(lib.path)
    return loaded


def get(name: str) -> Library:
    try:
        return LIBRARIES[name]
    except KeyError:
        raise UnknownLibraryError(
            f"Unknown library {name!r}: use one of {', '.join(LIBRARIES)}.") from None


def load_library(session: Session, name: str) -> framework_io.ImportResult:
    """Import library NAME (flush only; the caller commits). Already loaded: nothing changes."""
    lib = get(name)
    result = framework_io.import_framework(session, document(name), fmt="ours")
    if (result.framework.title, result.framework.version) != (lib.title, lib.version):
        raise framework_io.FrameworkIOError(
            f"Library {name} holds {result.framework.title} {result.framework.version}, "
            f"expected {lib.title} {lib.version}.")
    return result


def load_all(session: Session) -> list[framework_io.ImportResult]:
    """Every library, in registry order (idempotent: loading again changes nothing)."""
    return [load_library(session, name) for name in LIBRARIES]
