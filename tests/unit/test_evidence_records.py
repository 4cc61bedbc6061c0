"""Evidence records: revision numbering, mirroring of the current revision, links, audit."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from governance.models.audit import AuditLog
from governance.models.enums import EvidenceCategory, EvidenceStatus
from governance.models.evidence import EvidenceLink, EvidenceRevision
from governance.services import evidence as evidence_service


def test_first_upload_is_revision_one_in_review_linked_to_its_control(db_session, make_user, make_control,
                                                                        make_evidence) -> None:
    engineer = make_user("engineer")
    control = make_control()
    evidence = make_evidence(engineer, control=control, period_start="2026-07-01", period_end="2026-09-30",
                             expires_on="2027-06-30")
    assert evidence.revision_number == 1 and evidence.status == EvidenceStatus.IN_REVIEW
    assert evidence.owner_id == engineer.id and evidence.control_id == control.id
    assert evidence.expires_at.isoformat() == "2027-07-01T00:00:00+00:00"
    revision = db_session.scalars(select(EvidenceRevision)).one()
    assert (revision.number, revision.sha256, revision.object_key) == (1, evidence.sha256, evidence.object_key)
    assert revision.version_id
    link = db_session.scalars(select(EvidenceLink)).one()
    assert link.control_id == control.id
    actions = db_session.scalars(select(AuditLog.action).where(AuditLog.object_id == str(evidence.id))).all()
    assert sorted(actions) == ["evidence.create", "evidence.link"]


def test_a_new_revision_is_numbered_and_becomes_current(db_session, make_user, make_evidence, storage) -> None:
    import hashlib

    engineer = make_user("engineer")
    evidence = make_evidence(engineer, b"first")
    data = b"second version"
    key = evidence_service.object_key(evidence.id)
    stored = storage.put(key, data)
    upload = evidence_service.StoredUpload(storage.bucket, key, stored.version_id, len(data),
                                           hashlib.sha256(data).hexdigest(), "text/plain", "r2.txt")
    revision = evidence_service.add_revision(db_session(), evidence, upload, uploaded_by_id=engineer.id)
    db_session.commit()
    assert revision.number == 2 and evidence.revision_number == 2 and evidence.sha256 == upload.sha256
    assert [r.number for r in evidence.revisions] == [2, 1]


@pytest.mark.parametrize(("form", "field"), [
    ({"name": ""}, "name"),
    ({"name": "x" * 501}, "name"),
    ({"name": "ok", "period_start": "2026-13-01"}, "period_start"),
    ({"name": "ok", "period_start": "2026-05-01", "period_end": "2026-04-01"}, "period_end"),
    ({"name": "ok", "expires_on": "tomorrow"}, "expires_on"),
    ({"name": "ok", "category": "poster"}, "category"),
])
def test_metadata_errors_name_their_field(form, field) -> None:
    with pytest.raises(evidence_service.EvidenceError) as caught:
        evidence_service.validate_meta(form)
    assert caught.value.field == field


def test_the_kind_of_evidence_defaults_to_a_general_document() -> None:
    assert evidence_service.validate_meta({"name": "ok"}).category == EvidenceCategory.GENERAL
    assert evidence_service.validate_meta({"name": "ok", "category": " model_card "}).category == (
        EvidenceCategory.MODEL_CARD)


@pytest.mark.parametrize(("raw", "clean"), [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\report.pdf", "report.pdf"),
    ("bad\x00name\n.csv", "badname.csv"),
    ("", "evidence"),
    ("a" * 300 + ".pdf", "a" * 251 + ".pdf"),
])
def test_file_names_are_cleaned(raw, clean) -> None:
    assert evidence_service.clean_filename(raw) == clean
