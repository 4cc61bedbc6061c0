"""CLI commands (`flask --app app ...`), registered by create_app().

Commands act as the "system" actor with a request id of their own, so what they change is
audited like a web request.
"""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from extensions import db
from governance import context
from governance.services import demo, partitions

partitions_cli = AppGroup("partitions", help="Monthly partitions of audit_logs and results.")
demo_cli = AppGroup("demo", help="Demo data for a development instance.")
jobs_cli = AppGroup("jobs", help="The job queue (procrastinate).")


def _cli_context(command: str) -> context.ActionContext:
    return context.ActionContext(actor_name=f"cli:{command}")


@partitions_cli.command("create")
@click.option("--months", default=3, show_default=True, type=click.IntRange(0, 120),
              help="How many months ahead of the current one to create.")
def create_partitions(months: int) -> None:
    """Create the monthly partitions up to MONTHS ahead (idempotent)."""
    with context.acting_as(_cli_context("partitions create")):
        created = partitions.ensure_partitions(db.session, months_ahead=months)
        db.session.commit()
    click.echo(f"created {len(created)} partition(s)" + (": " + ", ".join(created) if created else ""))


@click.command("setup")
def setup() -> None:
    """Prepare a migrated database and the object store: partitions ahead, evidence bucket."""
    with context.acting_as(_cli_context("setup")):
        created = partitions.ensure_partitions(db.session, months_ahead=3)
        db.session.commit()
    current_app.extensions["storage"].ensure_bucket()
    click.echo(f"setup done ({len(created)} new partition(s); bucket ready)")


@demo_cli.command("load")
def load_demo() -> None:
    """One user per role and the NIST AI RMF framework; passwords are generated and printed."""
    settings = current_app.config["SETTINGS"]
    if settings.production:
        raise click.ClickException("demo data is for development instances only (APP_ENV=production)")
    with context.acting_as(_cli_context("demo load")):
        result = demo.load(db.session, settings.instance_dir)
        db.session.commit()
    click.echo(demo.describe(result, settings.instance_dir))


@jobs_cli.command("worker")
@click.option("--queue", "queues", multiple=True, help="Only these queues (default: all).")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--once", is_flag=True, help="Run the jobs already queued, then exit.")
def run_worker(queues: tuple[str, ...], concurrency: int, once: bool) -> None:
    """Run queued and periodic jobs until stopped (SIGINT / SIGTERM finish the running job first)."""
    current_app.extensions["jobs"].run_worker(queues=list(queues) or None, concurrency=concurrency,
                                              wait=not once)


def register_cli(app: Flask) -> None:
    app.cli.add_command(jobs_cli)
    app.cli.add_command(partitions_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(setup)
