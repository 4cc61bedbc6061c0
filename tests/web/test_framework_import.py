"""The import form (/frameworks/import) and the export download (/frameworks/<id>/export)."""

from __future__ import annotations

import io
import json

from sqlalchemy import func, select

from governance.models.audit import AuditLog
from governance.models.frameworks import Control, Framework
from governance.services import framework_io
from tests.unit.test_framework_io import CSF_2, sample, shared_data  # noqa: F401 (shared_data: a fixture)

URL = "/frameworks/import"


def _post(client, csrf_token, content: bytes, filename: str = "fw.json", **fields):
    token = csrf_token(client.get(URL).get_data(as_text=True))
    data = {"csrf_token": token, "format": "auto", "file": (io.BytesIO(content), filename), **fields}
    return client.post(URL, data=data, content_type="multipart/form-data")


def _frameworks(db_session) -> int:
    return int(db_session.scalar(select(func.count()).select_from(Framework)) or 0)


def test_the_form_offers_a_file_field(client, login_as) -> None:
    login_as("compliance_officer")
    page = client.get(URL)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'type="file"' in html and 'enctype="multipart/form-data"' in html


def test_upload_imports_and_redirects_with_a_flash(client, login_as, csrf_token, db_session) -> None:
    officer = login_as("compliance_officer")
    response = _post(client, csrf_token, json.dumps(sample()).encode())
    assert response.status_code == 303 and response.headers["Location"] == "/frameworks"
    fw = db_session.scalars(select(Framework).where(Framework.title == "Sample Framework")).one()
    assert db_session.scalar(select(func.count()).select_from(Control).where(Control.framework_id == fw.id)) == 6
    [entry] = db_session.scalars(select(AuditLog).where(AuditLog.action == "framework.import")).all()
    assert entry.actor_id == officer.id and entry.details["result"] == "created"
    with client.session_transaction() as session:
        flashes = session.get("_flashes", [])
    assert any("Imported Sample Framework 1.0: 6 controls (1 withdrawn)." in m for _, m in flashes)
    # The same file again: nothing changes, and the user is told so.
    again = _post(client, csrf_token, json.dumps(sample()).encode())
    assert again.status_code == 303 and _frameworks(db_session) == 1


def test_an_oscal_upload_with_overridden_version(client, login_as, csrf_token, db_session, shared_data) -> None:  # noqa: F811
    login_as("admin")
    response = _post(client, csrf_token, shared_data(CSF_2).read_bytes(), CSF_2, format="oscal", version="2.0")
    assert response.status_code == 303
    fw = db_session.scalars(select(Framework).where(Framework.version == "2.0")).one()
    assert fw.title == "Electronic Version of NIST Cybersecurity Framework 2.0"


def test_a_bad_file_is_422_with_the_errors_beside_the_field(client, login_as, csrf_token, db_session) -> None:
    login_as("compliance_officer")
    doc = sample()
    del doc["controls"][0]["children"][1]["ref_id"]
    response = _post(client, csrf_token, json.dumps(doc).encode())
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="file-error"' in html and 'aria-invalid="true"' in html
    assert "The file does not match the framework format." in html
    assert "/controls/0/children/1/ref_id: is required" in html
    assert _frameworks(db_session) == 0

    broken = _post(client, csrf_token, b'{"title": ', "broken.json")
    assert broken.status_code == 422 and "not valid JSON" in broken.get_data(as_text=True)


def test_a_conflicting_file_is_refused_with_a_clear_message(client, login_as, csrf_token, db_session) -> None:
    login_as("compliance_officer")
    assert _post(client, csrf_token, json.dumps(sample()).encode()).status_code == 303
    response = _post(client, csrf_token, json.dumps(sample(description="Changed.")).encode())
    assert response.status_code == 422
    assert "already exists with different content" in response.get_data(as_text=True)
    assert _frameworks(db_session) == 1


def test_no_file_is_422(client, login_as, csrf_token) -> None:
    login_as("compliance_officer")
    token = csrf_token(client.get(URL).get_data(as_text=True))
    response = client.post(URL, data={"csrf_token": token, "format": "auto"}, content_type="multipart/form-data")
    assert response.status_code == 422 and "Choose a file to import." in response.get_data(as_text=True)


def test_a_file_over_20_mb_is_refused(client, login_as, csrf_token, db_session) -> None:
    login_as("compliance_officer")
    response = _post(client, csrf_token, b" " * (21 * 1024 * 1024), "huge.json")
    assert response.status_code == 413
    assert _frameworks(db_session) == 0


def test_engineers_and_auditors_may_not_import(client, login_as) -> None:
    login_as("engineer")
    assert client.get(URL).status_code == 403


def test_export_downloads_json_in_either_format(client, login_as, db_session) -> None:
    fw = framework_io.import_framework(db_session, sample()).framework
    db_session.commit()
    login_as("auditor")
    ours = client.get(f"/frameworks/{fw.id}/export?format=ours")
    assert ours.status_code == 200 and ours.mimetype == "application/json"
    assert ours.headers["Content-Disposition"] == 'attachment; filename="Sample-Framework-1.0.json"'
    assert json.loads(ours.get_data())["controls"][0]["ref_id"] == "GOV"
    oscal = client.get(f"/frameworks/{fw.id}/export?format=oscal")
    assert oscal.status_code == 200 and "-oscal.json" in oscal.headers["Content-Disposition"]
    assert json.loads(oscal.get_data())["catalog"]["metadata"]["version"] == "1.0"
    assert client.get(f"/frameworks/{fw.id}/export?format=pdf").status_code == 404


def test_import_and_export_are_offered_only_where_allowed(client, login_as, db_session) -> None:
    from governance.models.frameworks import Framework

    framework = Framework(title="Offer Test", version="1")
    db_session.add(framework)
    db_session.commit()
    login_as("engineer")
    listing = client.get("/frameworks").get_data(as_text=True)
    assert "/frameworks/import" not in listing  # engineers may not import
    page = client.get(f"/frameworks/{framework.id}").get_data(as_text=True)
    assert f"/frameworks/{framework.id}/export?format=oscal" in page  # everyone may export


def test_compliance_officers_see_the_import_link(client, login_as) -> None:
    login_as("compliance_officer")
    assert "/frameworks/import" in client.get("/frameworks").get_data(as_text=True)


def test_the_libraries_page_loads_a_library_once(client, login_as, csrf_token, db_session) -> None:
    login_as("compliance_officer")
    page = client.get("/frameworks/libraries")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Load OWASP Top 10 for LLM Applications" in html
    token = csrf_token(html)
    first = client.post("/frameworks/libraries/owasp-llm", data={"csrf_token": token})
    assert first.status_code == 303
    framework = db_session.scalars(select(Framework).where(
        Framework.title == "OWASP Top 10 for LLM Applications", Framework.version == "2025")).one()
    assert db_session.scalar(select(func.count()).select_from(Control).where(
        Control.framework_id == framework.id)) == 10
    after = client.get("/frameworks/libraries").get_data(as_text=True)
    assert "Loaded " in after and "Load OWASP Top 10 for LLM Applications" not in after
    again = client.post("/frameworks/libraries/owasp-llm", data={"csrf_token": token}, follow_redirects=True)
    assert "already loaded; nothing changed" in again.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Framework).where(
        Framework.title == "OWASP Top 10 for LLM Applications")) == 1


def test_engineers_see_the_libraries_but_cannot_load_them(client, login_as, csrf_token) -> None:
    login_as("engineer")
    html = client.get("/frameworks/libraries").get_data(as_text=True)
    assert "Load OWASP" not in html
    response = client.post("/frameworks/libraries/owasp-llm", data={"csrf_token": csrf_token(
        client.get("/").get_data(as_text=True))})
    assert response.status_code == 403


def test_an_unknown_library_is_404(client, login_as, csrf_token) -> None:
    login_as("admin")
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post("/frameworks/libraries/nope", data={"csrf_token": token}).status_code == 404


def test_loading_a_library_brings_its_crosswalks(client, login_as, csrf_token, db_session) -> None:
    from governance.models.frameworks import Mapping
    from governance.services import libraries

    libraries.load_library(db_session, "nist-ai-rmf")
    db_session.commit()
    login_as("compliance_officer")
    token = csrf_token(client.get("/frameworks/libraries").get_data(as_text=True))
    page = client.post("/frameworks/libraries/iso-42001", data={"csrf_token": token}, follow_redirects=True)
    assert "Added 57 mappings from the shipped crosswalks." in page.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Mapping)) == 57
