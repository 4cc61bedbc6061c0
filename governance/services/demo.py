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


def describe(result: DemoResult, instance_dir: Path) -> str:
    lines = ["", "Demo data ready."]
    if result.framework_created:
        lines.append(f"  Framework {result.framework} loaded with {result.controls} controls.")
    else:
        lines.append(f"  Framework {result.framework} already present.")
    if result.new_users:
        lines.append("  Sign in with one of these accounts (passwords generated just now):")
        lines += [f"    {role:<20} {email:<28} {password}" for role, email, password in result.new_users]
    if result.existing_users:
        lines.append(f"  Demo accounts already exist; their passwords are in {instance_dir / CREDENTIALS_FILE}")
        lines += [f"    {role:<20} {email}" for role, email in result.existing_users]
    return "\n".join(lines)
