"""Demo data for a development instance: one user per role, and NIST AI RMF 1.0 with its controls.

Idempotent: a second run adds nothing and changes no password. Generated passwords are printed
once and kept in instance/demo-credentials.txt (mode 0600) so a developer can find them again;
`flask demo load` refuses to run in production.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.models.enums import FrameworkStatus
from governance.models.frameworks import Control, Framework
from governance.services import audit, identity

LIBRARY = Path(__file__).resolve().parent.parent / "libraries" / "nist-ai-rmf-1.0.json"
DEMO_USERS = (
    ("admin", "admin@demo.example", "Ada Admin"),
    ("compliance_officer", "officer@demo.example", "Cora Compliance"),
    ("engineer", "engineer@demo.example", "Evan Engineer"),
    ("auditor", "auditor@demo.example", "Aud Itor"),
)
CREDENTIALS_FILE = "demo-credentials.txt"


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


def _load_ai_rmf(session: Session, result: DemoResult) -> None:
    data: dict[str, Any] = json.loads(LIBRARY.read_text(encoding="utf-8"))
    title, version = "NIST AI RMF", "1.0"
    result.framework = f"{title} {version}"
    existing = session.scalars(
        select(Framework).where(Framework.title == title, Framework.version == version)
    ).first()
    if existing is not None:
        return
    framework = Framework(
        title=title, version=version, region="US", status=FrameworkStatus.ACTIVE,
        source=data["source"]["document"], license=data["license"],
        description="Artificial Intelligence Risk Management Framework (NIST AI 100-1): "
                    "the Core's functions, categories and subcategories.",
    )
    session.add(framework)
    session.flush()
    order = 0

    def add(ref_id: str, title: str, text: str | None, parent: Control | None, assessable: bool) -> Control:
        nonlocal order
        order += 1
        control = Control(framework_id=framework.id, parent_id=parent.id if parent else None,
                          ref_id=ref_id, title=title[:500], text=text, assessable=assessable,
                          sort_order=order)
        session.add(control)
        session.flush()
        return control

    for function in data["functions"]:
        fn = add(function["id"], function["title"], None, None, False)
        for category in function["categories"]:
            cat = add(category["id"], category["title"], category["title"], fn, False)
            for sub in category["subcategories"]:
                add(sub["id"], sub["text"], sub["text"], cat, True)
    result.framework_created = True
    result.controls = order
    audit.record(session, "framework.import", object_type="framework", object_id=framework.id,
                 after={"title": title, "version": version, "controls": order})


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
