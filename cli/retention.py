"""`flask retention run [--dry-run]` and legal holds (docs/retention.md)."""

from __future__ import annotations

import sys
import uuid

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from extensions import db
from governance import context
from governance.models.enums import HoldTarget
from governance.models.identity import User
from governance.services import legal_holds, retention

retention_cli = AppGroup("retention", help="Retention: archive expired audit partitions and evidence; legal holds.")


def _user_id(email: str | None) -> uuid.UUID | None:
    if not email:
        return None
    user = db.session.scalars(select(User).where(func.lower(User.email) == email.strip().lower())).first()
    if user is None:
        raise click.UsageError(f"no user with e-mail {email}")
    return user.id


@retention_cli.command("run")
@click.option("--dry-run", is_flag=True, help="Print (and audit) the plan; change nothing.")
def run(dry_run: bool) -> None:
    """Archive what is past its retention (never what a legal hold covers)."""
    result = retention.execute(current_app.config["SETTINGS"], dry_run=dry_run, actor="cli:retention run")
    for line in (result.plan.lines() if not dry_run else []) + result.lines():
        click.echo(line)
    if not result.ok:
        sys.exit(1)


@retention_cli.command("hold")
@click.option("--framework", "framework_id", type=click.UUID, help="Hold a framework (its controls and evidence).")
@click.option("--control", "control_id", type=click.UUID, help="Hold a control (its sub-controls and evidence).")
@click.option("--evidence", "evidence_id", type=click.UUID, help="Hold one piece of evidence.")
@click.option("--reason", required=True, help="Why (the matter or ticket).")
@click.option("--by", "by_email", help="E-mail of the person placing it (recorded on the hold).")
def hold(framework_id: uuid.UUID | None, control_id: uuid.UUID | None, evidence_id: uuid.UUID | None,
         reason: str, by_email: str | None) -> None:
    """Place a legal hold on exactly one framework, control or evidence."""
    given = [(t, i) for t, i in ((HoldTarget.FRAMEWORK, framework_id), (HoldTarget.CONTROL, control_id),
                                 (HoldTarget.EVIDENCE, evidence_id)) if i is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --framework, --control, --evidence")
    with context.acting_as(context.ActionContext(actor_name="cli:retention hold")):
        try:
            placed = legal_holds.place(db.session, given[0][0], given[0][1], reason, _user_id(by_email))
        except legal_holds.HoldError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from None
        db.session.commit()
    click.echo(f"legal hold {placed.id} placed on {given[0][0].value} {given[0][1]}")


@retention_cli.command("release")
@click.argument("hold_id", type=click.UUID)
@click.option("--reason", required=True, help="Why the hold ends.")
@click.option("--by", "by_email", required=True, help="E-mail of the person releasing it (recorded on the hold).")
def release(hold_id: uuid.UUID, reason: str, by_email: str) -> None:
    """Release a legal hold (it stays as history)."""
    with context.acting_as(context.ActionContext(actor_name="cli:retention release")):
        by = _user_id(by_email)
        assert by is not None
        try:
            legal_holds.release(db.session, hold_id, reason, by)
        except legal_holds.HoldError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from None
        db.session.commit()
    click.echo(f"legal hold {hold_id} released")
