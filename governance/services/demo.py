"""Demo data for a development instance: one user per role, and NIST AI RMF 1.0 with its controls.

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


def describe(result: DemoResult, instance_dir: Path) -> str:
    lines = ["", "Demo data ready."]
    if result.framework_created:
        lines.append(f"  Framework {result.framework} loaded with {result.controls} controls.")
    else:
        lines.append(f"  Framework {result.framework} already present.")
    if result.evidence:
        lines.append("  Evidence: " + "; ".join(result.evidence) + ".")
    if result.new_users:
        lines.append("  Sign in with one of these accounts (passwords generated just now):")
        lines += [f"    {role:<20} {email:<28} {password}" for role, email, password in result.new_users]
    if result.existing_users:
        lines.append(f"  Demo accounts already exist; their passwords are in {instance_dir / CREDENTIALS_FILE}")
        lines += [f"    {role:<20} {email}" for role, email in result.existing_users]
    return "\n".join(lines)
