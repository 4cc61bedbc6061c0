"""`flask erasure ...`: GDPR erasure requests from the command line (docs/erasure.md).

Read-only: requests are filed, decided and executed in the portal (/admin/erasure), where the
two-person rule is enforced with each person signed in.
"""

from __future__ import annotations

import uuid

import click
from flask.cli import AppGroup

erasure_cli = AppGroup("erasure", help="GDPR erasure requests: list, show receipts.")


@erasure_cli.command("list")
def list_command() -> None:
    """Every request, newest first: id, status, subject pseudonym, when requested and executed."""
    from extensions import db
    from governance.services import erasure, personal_data

    found = erasure.list_requests(db.session, limit=10_000)
    if not found:
        click.echo("no erasure requests")
        return
    for r in found:
        executed = r.executed_at.isoformat() if r.executed_at else "-"
        click.echo(f"{r.id}  {r.status.value:<9}  {personal_data.pseudonym(r.subject_id)}  "
                   f"requested {r.created_at.isoformat()}  executed {executed}")


@erasure_cli.command("receipt")
@click.argument("request_id")
def receipt_command(request_id: str) -> None:
    """Print the receipt of an executed erasure as JSON (the bytes its SHA-256 was taken over)."""
    from extensions import db
    from governance.services import erasure

    try:
        ident = uuid.UUID(request_id)
    except ValueError as exc:
        raise click.BadParameter("not a request id (a UUID)", param_hint="REQUEST_ID") from exc
    found = erasure.get(db.session, ident)
    if found is None:
        raise click.ClickException(f"no erasure request {ident}")
    if found.receipt is None:
        raise click.ClickException(f"erasure request {ident} is {found.status.value}: no receipt yet")
    click.echo(erasure.receipt_bytes(found.receipt).decode())
    click.echo(f"sha256 {found.receipt_sha256}", err=True)
