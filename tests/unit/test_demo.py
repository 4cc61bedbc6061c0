import stat

from sqlalchemy import func, select

from governance.models.frameworks import Control, Framework
from governance.models.identity import User
from governance.services import demo, identity


def test_demo_load_creates_one_user_per_role_and_the_ai_rmf(db_session, tmp_path) -> None:
    result = demo.load(db_session, tmp_path)
    assert {role for role, _, _ in result.new_users} == {"admin", "compliance_officer", "engineer", "auditor"}
    passwords = [password for _, _, password in result.new_users]
    assert len(set(passwords)) == 4 and all(len(p) >= 16 for p in passwords)
    for _role, email, password in result.new_users:
        assert identity.authenticate(db_session, email, password) is not None

    framework = db_session.scalars(select(Framework).where(Framework.title == "NIST AI RMF")).one()
    counts = dict(db_session.execute(
        select(Control.assessable, func.count()).where(Control.framework_id == framework.id)
        .group_by(Control.assessable)).all())
    assert counts == {True: 72, False: 4 + 19}
    govern_1_1 = db_session.scalars(select(Control).where(Control.ref_id == "GOVERN 1.1")).one()
    assert govern_1_1.parent is not None and govern_1_1.parent.ref_id == "GOVERN 1"

    creds = tmp_path / demo.CREDENTIALS_FILE
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert all(password in creds.read_text() for password in passwords)
    text = demo.describe(result, tmp_path)
    assert all(password in text for password in passwords)


def test_a_second_load_changes_nothing(db_session, tmp_path) -> None:
    demo.load(db_session, tmp_path)
    hashes = dict(db_session.execute(select(User.email, User.password_hash)).all())
    again = demo.load(db_session, tmp_path)
    assert again.new_users == [] and not again.framework_created
    assert dict(db_session.execute(select(User.email, User.password_hash)).all()) == hashes
    assert db_session.scalar(select(func.count()).select_from(Framework)) == 1
    assert "already" in demo.describe(again, tmp_path)


def test_demo_evidence_is_stored_reviewed_and_loaded_once(db_session, tmp_path, storage, app) -> None:
    import hashlib

    from governance.models.enums import EvidenceStatus
    from governance.models.evidence import Evidence

    settings = app.config["SETTINGS"]
    result = demo.load(db_session, tmp_path)
    demo.load_evidence(db_session, storage, settings, result)
    rows = {e.name: e for e in db_session.scalars(select(Evidence)).all()}
    assert {name: e.status for name, e in rows.items()} == {
        "AI governance policy (signed)": EvidenceStatus.APPROVED,
        "Model inventory export": EvidenceStatus.IN_REVIEW,
    }
    for evidence in rows.values():  # the objects are really in the store, with the recorded hash
        assert hashlib.sha256(b"".join(storage.open(evidence.object_key))).hexdigest() == evidence.sha256
    assert len(result.evidence) == 2 and "Evidence:" in demo.describe(result, tmp_path)
    again = demo.load(db_session, tmp_path)
    demo.load_evidence(db_session, storage, settings, again)
    assert again.evidence == [] and db_session.scalar(select(func.count()).select_from(Evidence)) == 2
