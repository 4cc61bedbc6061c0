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
    # NIST AI RMF, and the EU AI Act the demo AI systems' classifications imported.
    assert set(db_session.scalars(select(Framework.title))) == {"NIST AI RMF", "EU AI Act"}
    assert db_session.scalar(select(func.count()).select_from(Framework)) == 2
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


def test_demo_ai_systems_are_classified_from_their_answers_once(db_session, tmp_path) -> None:
    from governance.models.ai import AIClassification, AISystem, AISystemControl, ImpactAssessment
    from governance.models.enums import AIActRole, AIRiskClass, AssessmentStatus
    from governance.models.probes import Check, Probe
    from governance.services import ai_act, ai_systems

    result = demo.load(db_session, tmp_path)
    systems = {s.name: s for s in db_session.scalars(select(AISystem)).all()}
    assert {name: s.risk_class for name, s in systems.items()} == {
        "CV screening assistant": AIRiskClass.HIGH, "Customer support chatbot": AIRiskClass.LIMITED}
    assert sorted(result.ai_systems) == ["CV screening assistant (high risk)",
                                         "Customer support chatbot (limited risk)"]
    assert "AI systems: " in demo.describe(result, tmp_path)
    engineer = identity.find_user_by_email(db_session, "engineer@demo.example")

    cv, chatbot = systems["CV screening assistant"], systems["Customer support chatbot"]
    for system, spec in zip((cv, chatbot), demo.DEMO_AI_SYSTEMS, strict=True):
        classification = ai_act.latest(db_session, system.id)
        # Classified by the questionnaire's own logic from real answers, by the demo engineer.
        assert classification is not None and classification.version == 1
        assert classification.answers == ai_act.clean_answers(spec["answers"])
        assert classification.result == ai_act.classify(spec["answers"], system.eu_role).result
        assert classification.created_by_id == engineer.id and system.owner_id == engineer.id
        assert [m.name for m in system.models] == [spec["model"]["name"]]
        assert [d.name for d in system.datasets] == [spec["dataset"]["name"]]
    assert cv.eu_role == AIActRole.DEPLOYER and cv.datasets[0].personal_data
    assert chatbot.eu_role == AIActRole.PROVIDER

    def refs(system: AISystem) -> set[str]:
        from governance.models.frameworks import Control

        return set(db_session.scalars(select(Control.ref_id).join(AISystemControl,
                                                                  AISystemControl.control_id == Control.id)
                                      .where(AISystemControl.system_id == system.id)))

    assert {"Article 26(1)", "Article 26(2)", "Article 5(1)(a)"} <= refs(cv) and "Article 50(1)" not in refs(cv)
    assert {"Article 50(1)", "Article 50(2)", "Article 50(5)"} <= refs(chatbot) and "Article 26(1)" not in refs(chatbot)

    draft = db_session.scalars(select(ImpactAssessment).where(ImpactAssessment.system_id == cv.id)).one()
    assert draft.status == AssessmentStatus.DRAFT and draft.answers["processes"].startswith("Pre-screening")
    assert ai_systems.HIGH_WITHOUT_ASSESSMENT in ai_systems.flags(db_session, cv)
    probe = db_session.scalars(select(Probe).where(Probe.ai_system_id == cv.id)).one()
    assert probe.kind == "ai_system"
    assert db_session.scalar(select(func.count()).select_from(Check).where(Check.probe_id == probe.id)) == 4
    assert db_session.scalars(select(Probe).where(Probe.ai_system_id == chatbot.id)).all() == []
    assert [r.system.name for r in ai_systems.register_rows(db_session)] == ["CV screening assistant"]

    counts = {table: db_session.scalar(select(func.count()).select_from(table))
              for table in (AISystem, AIClassification, ImpactAssessment, Probe, Check)}
    again = demo.load(db_session, tmp_path)
    assert again.ai_systems == []
    assert {table: db_session.scalar(select(func.count()).select_from(table)) for table in counts} == counts
