"""Demo data for a development instance: one user per role, NIST AI RMF 1.0 with its controls, and
two AI systems of different EU AI Act risk classes (classified through the questionnaire's answers).

Idempotent: a second run adds nothing and changes no password. Generated passwords are printed
once and kept in instance/demo-credentials.txt (mode 0600) so a developer can find them again;
`flask demo load` refuses to run in production.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.models.frameworks import Framework
from governance.services import identity, libraries

LIBRARY = libraries.LIBRARIES["nist-ai-rmf"].path
DEMO_USERS = (
    ("admin", "admin@demo.example", "Ada Admin"),
    ("compliance_officer", "officer@demo.example", "Cora Compliance"),
    ("engineer", "engineer@demo.example", "Evan Engineer"),
    ("auditor", "auditor@demo.example", "Aud Itor"),
)
CREDENTIALS_FILE = "demo-credentials.txt"
AI_RMF_TITLE, AI_RMF_VERSION = libraries.LIBRARIES["nist-ai-rmf"].title, libraries.LIBRARIES["nist-ai-rmf"].version


@dataclass
class DemoResult:
    new_users: list[tuple[str, str, str]] = field(default_factory=list)  # (role, email, password)
    existing_users: list[tuple[str, str]] = field(default_factory=list)
    framework: str = ""
    framework_created: bool = False
    controls: int = 0
    evidence: list[str] = field(default_factory=list)
    ai_systems: list[str] = field(default_factory=list)  # "name (risk class)" of the systems added now


def load(session: Session, instance_dir: Path) -> DemoResult:
    result = DemoResult()
    for role, email, name in DEMO_USERS:
        if identity.find_user_by_email(session, email) is not None:
            result.existing_users.append((role, email))
            continue
        password = secrets.token_urlsafe(12)
        identity.create_user(session, email=email, name=name, role_name=role, password=password)
        result.new_users.append((role, email, password))
    if result.new_users:
        _save_credentials(instance_dir, result.new_users)
    _load_ai_rmf(session, result)
    load_ai_systems(session, result)
    return result


def _save_credentials(instance_dir: Path, users: list[tuple[str, str, str]]) -> None:
    path = instance_dir / CREDENTIALS_FILE
    instance_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    lines = [f"{role:<20} {email:<28} {password}" for role, email, password in users]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def ai_rmf_document() -> dict[str, Any]:
    """The AI RMF library in our framework format (kept for callers; see services.libraries)."""
    return libraries.ai_rmf_document()


def _load_ai_rmf(session: Session, result: DemoResult) -> None:
    result.framework = f"{AI_RMF_TITLE} {AI_RMF_VERSION}"
    existing = session.scalars(
        select(Framework).where(Framework.title == AI_RMF_TITLE, Framework.version == AI_RMF_VERSION)
    ).first()
    if existing is not None:  # present (perhaps edited since): a demo load never touches it
        return
    imported = libraries.load_library(session, "nist-ai-rmf")
    result.framework_created = imported.created
    result.controls = imported.controls


# (name, control ref, file name, content, approved by the demo auditor?)
DEMO_EVIDENCE = (
    ("AI governance policy (signed)", "GOVERN 1.1", "ai-governance-policy.md",
     b"# AI governance policy\n\nApproved by the board on 2026-03-02. Owner: Chief Risk Officer.\n", True),
    ("Model inventory export", "MAP 1.1", "model-inventory.csv",
     b"system,model,version,owner,risk\ncredit-scoring,gbm-credit,3.2,Evan Engineer,high\n"
     b"support-chatbot,llm-support,2026.10,Evan Engineer,limited\n", False),
)


def load_evidence(session: Session, storage: Any, settings: Any, result: DemoResult) -> None:
    """Two pieces of demo evidence on AI RMF controls: one approved by the demo auditor, one in review.
    Skipped when evidence of that name exists (a second run adds nothing)."""
    import hashlib
    import uuid

    from governance.models.evidence import Evidence
    from governance.models.frameworks import Control
    from governance.services import evidence as evidence_service
    from governance.services import evidence_review

    engineer = identity.find_user_by_email(session, DEMO_USERS[2][1])
    auditor = identity.find_user_by_email(session, DEMO_USERS[3][1])
    framework = session.scalars(
        select(Framework).where(Framework.title == AI_RMF_TITLE, Framework.version == AI_RMF_VERSION)
    ).first()
    if engineer is None or auditor is None or framework is None:
        return
    for name, ref, filename, data, approve in DEMO_EVIDENCE:
        if session.scalars(select(Evidence.id).where(Evidence.name == name)).first() is not None:
            continue
        control = session.scalars(
            select(Control).where(Control.framework_id == framework.id, Control.ref_id == ref)
        ).first()
        if control is None:
            continue
        evidence_id = uuid.uuid4()
        key = evidence_service.object_key(evidence_id)
        content_type = "text/csv" if filename.endswith(".csv") else "text/markdown"
        stored = storage.put(key, data, content_type=content_type)
        upload = evidence_service.StoredUpload(storage.bucket, key, stored.version_id, len(data),
                                               hashlib.sha256(data).hexdigest(), content_type, filename)
        meta = evidence_service.validate_meta({"name": name, "period_start": "2026-01-01",
                                               "period_end": "2026-12-31", "expires_on": "2027-12-31"})
        evidence = evidence_service.create_evidence(session, evidence_id=evidence_id, meta=meta, upload=upload,
                                                    uploaded_by_id=engineer.id, control_id=control.id)
        revision = evidence_service.revision_by_number(session, evidence.id, 1)
        if approve and revision is not None:
            evidence_review.review_revision(
                session, storage, evidence, revision, reviewer_id=auditor.id, decision="approve",
                comment="Demo: reviewed against the board minutes.",
                lock_days=settings.evidence_lock_days, lock_mode=settings.evidence_lock_mode)
        result.evidence.append(f"{name} ({ref}, {'approved' if approve else 'in review'})")


# The EU AI Act questionnaire's answers (governance.services.ai_act.QUESTIONS) for the two systems.
_NO_PROHIBITED_PRACTICE = {
    "prohibited_manipulation": "no", "prohibited_vulnerabilities": "no", "prohibited_social_scoring": "no",
    "prohibited_crime_prediction": "no", "prohibited_face_scraping": "no", "prohibited_emotion_workplace": "no",
    "prohibited_biometric_categorisation": "no", "realtime_biometric_identification": "no",
    "annex_i_product": "no",
}
DEMO_AI_SYSTEMS: tuple[dict[str, Any], ...] = (
    {
        "fields": {
            "name": "CV screening assistant",
            "purpose": "Ranks job applications against the vacancy's requirements so that recruiters read the "
                       "strongest applications first.",
            "intended_use": "Recruiters of the People & Talent team, for every vacancy with more than 50 "
                            "applications; a recruiter reads every application the assistant ranks low before "
                            "it is declined.",
            "business_unit": "People & Talent", "lifecycle_stage": "validation", "eu_role": "deployer",
            "autonomy_level": "human_in_the_loop",
            "human_oversight": "A recruiter reviews each ranking and decides; the assistant never declines an "
                               "applicant on its own, and recruiters can switch it off per vacancy.",
            "data_categories": ["CVs and cover letters", "Contact details", "Employment history"],
            "deployment_regions": ["DE", "FR", "NL"],
            "provider_name": "TalentRank BV, compliance@talentrank.example",
        },
        # Annex III point 4 (recruitment), profiling applicants: high risk, a deployer's Article 26 duties.
        "answers": {**_NO_PROHIBITED_PRACTICE, "annex_iii_area": "employment", "profiling": "yes",
                    "deployer_organisation": "private", "emotion_or_biometric_categorisation": "no",
                    "deep_fake_or_public_text": "no", "gpai_model": "no"},
        "model": {"name": "TalentRank ranker", "version": "4.2", "provider": "TalentRank BV",
                  "license": "Commercial (SaaS agreement)", "approval_status": "approved"},
        "dataset": {"name": "Applicant CVs 2024-2026", "source": "Export of the applicant tracking system",
                    "personal_data": True, "license": "Internal use only",
                    "description": "Applications and recruiters' decisions, used to evaluate the ranker."},
        "assessment": {
            "processes": "Pre-screening of applications for engineering and sales vacancies: the assistant ranks, "
                         "a recruiter reads and decides.",
            "period_frequency": "From the first quarter of 2027, for two years; about 300 applications a week.",
            "affected_persons": "Applicants, in particular older applicants, applicants with career breaks and "
                                "applicants whose first language is not the vacancy's.",
        },
        "checks": True,
    },
    {
        "fields": {
            "name": "Customer support chatbot",
            "purpose": "Answers customers' questions about orders, deliveries and returns on the website and in "
                       "the app, and hands over to a support agent when it cannot help.",
            "intended_use": "Customers of the web shop; agents of the support team take over the conversation "
                            "on request or when the chatbot is unsure.",
            "business_unit": "Customer Service", "lifecycle_stage": "production", "eu_role": "provider",
            "autonomy_level": "human_on_the_loop",
            "human_oversight": "Support agents watch conversations live and can take over any of them.",
            "data_categories": ["Order history", "Contact details", "Chat transcripts"],
            "deployment_regions": ["DE", "AT", "BE"],
            "provider_name": "Our organisation (Customer Service), support-ai@demo.example",
        },
        # Not high-risk, but it talks to people and writes text: Article 50(1) and (2), limited risk.
        "answers": {**_NO_PROHIBITED_PRACTICE, "annex_iii_area": "none", "interacts_with_people": "yes",
                    "generates_synthetic_content": "yes", "gpai_model": "no"},
        "model": {"name": "support-llm", "version": "2026.10", "provider": "Example Models Ltd",
                  "license": "Apache-2.0", "approval_status": "approved"},
        "dataset": {"name": "Support knowledge base", "source": "Help centre articles and return policies",
                    "personal_data": False, "license": "Internal use only"},
        "assessment": None,
        "checks": False,
    },
)


def load_ai_systems(session: Session, result: DemoResult) -> None:
    """The two demo AI systems with a model and a dataset each, classified from their answers (a new
    EU AI Act classification, which imports the EU AI Act framework when it is missing); the high-risk
    one also gets an impact assessment draft and the standard AI checks. A system whose name exists
    is left as it is (a second run adds nothing). Done in the name of the demo engineer."""
    from governance import context
    from governance.models.ai import AIModel, AISystem, Dataset
    from governance.services import ai_act, ai_checks, ai_systems, impact_assessments

    engineer = identity.find_user_by_email(session, DEMO_USERS[2][1])
    officer = identity.find_user_by_email(session, DEMO_USERS[1][1])
    if engineer is None or officer is None:
        return
    actor = context.ActionContext(actor_id=engineer.id, actor_name=f"{engineer.name} (demo data)")
    with context.acting_as(actor):
        for spec in DEMO_AI_SYSTEMS:
            name = spec["fields"]["name"]
            if session.scalars(select(AISystem.id).where(AISystem.name == name,
                                                         AISystem.deleted_at.is_(None))).first() is not None:
                continue
            system = ai_systems.create_system(session, **spec["fields"], owner_id=engineer.id,
                                              oversight_owner_id=officer.id)
            model = session.scalars(select(AIModel).where(
                AIModel.name == spec["model"]["name"], AIModel.version == spec["model"]["version"],
                AIModel.deleted_at.is_(None))).first() or ai_systems.create_model(session, **spec["model"])
            ai_systems.link_model(session, system.id, model.id)
            dataset = session.scalars(select(Dataset).where(
                Dataset.name == spec["dataset"]["name"], Dataset.deleted_at.is_(None))).first() \
                or ai_systems.create_dataset(session, **spec["dataset"])
            ai_systems.link_dataset(session, system.id, dataset.id)
            classification = ai_act.save_classification(session, system.id, spec["answers"])
            if spec["assessment"]:
                draft = impact_assessments.start(session, system.id)
                impact_assessments.save_answers(session, draft.id, spec["assessment"])
            if spec["checks"]:
                ai_checks.add_standard_checks(session, system.id)
            result.ai_systems.append(f"{name} ({classification.result.value} risk)")


def describe(result: DemoResult, instance_dir: Path) -> str:
    lines = ["", "Demo data ready."]
    if result.framework_created:
        lines.append(f"  Framework {result.framework} loaded with {result.controls} controls.")
    else:
        lines.append(f"  Framework {result.framework} already present.")
    if result.evidence:
        lines.append("  Evidence: " + "; ".join(result.evidence) + ".")
    if result.ai_systems:
        lines.append("  AI systems: " + "; ".join(result.ai_systems) + ".")
    if result.new_users:
        lines.append("  Sign in with one of these accounts (passwords generated just now):")
        lines += [f"    {role:<20} {email:<28} {password}" for role, email, password in result.new_users]
    if result.existing_users:
        lines.append(f"  Demo accounts already exist; their passwords are in {instance_dir / CREDENTIALS_FILE}")
        lines += [f"    {role:<20} {email}" for role, email in result.existing_users]
    return "\n".join(lines)
