"""`flask backup create|restore|list|prune|drill` (docs/backups.md, docs/operations.md).

Exit status: 0 on success, 1 when the backup, restore or prune failed (the reason on stderr), 2 for
bad arguments.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from extensions import db
from governance import context

backup_cli = AppGroup("backup", help="Encrypted backups, restores and restore drills.")


def _cli_context(command: str) -> context.ActionContext:
    return context.ActionContext(actor_name=f"cli:backup {command}")


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@backup_cli.command("create")
@click.option("--kind", type=click.Choice(["full", "diff"]), default="full", show_default=True,
              help="diff: only the tables changed since the newest full backup (a full one if there is none).")
def create_command(kind: str) -> None:
    """Take an encrypted backup into BACKUP_BUCKET now (also nightly and hourly as jobs)."""
    from governance.services import backups

    settings = current_app.config["SETTINGS"]
    with context.acting_as(_cli_context("create")):
        try:
            backup = backups.create_backup(settings, kind, started_by="cli:backup create")
        except backups.BackupError as exc:
            raise click.ClickException(str(exc)) from exc
    if kind != backup.kind:
        click.echo(f"note: {backups.read_manifest(settings, backup.id).get('note')}")
    click.echo(f"backup {backup.id} ({backup.kind}) succeeded: {backup.tables_included}/{backup.tables} tables' data, "
               f"{backup.rows} rows, {backup.evidence_objects} evidence objects, {_size(backup.size_bytes)} "
               f"in {backup.bucket}/{backup.object_key}")


@backup_cli.command("restore")
@click.argument("backup_id")
@click.option("--target", "target", required=True, metavar="DSN",
              help="An empty database to restore into, e.g. postgresql://owner@host/gov_restored.")
@click.option("--no-migrate", is_flag=True, help="Leave the restored database at the backup's migration head.")
def restore_command(backup_id: str, target: str, no_migrate: bool) -> None:
    """Restore BACKUP_ID (read from the bucket alone) into the empty database --target, then run the
    migrations forward on it. Afterwards run `flask db roles` against it (docs/backups.md)."""
    from governance.services import backups

    settings = current_app.config["SETTINGS"]
    try:
        result = backups.restore_backup(settings, backup_id, target, migrate=not no_migrate, progress=click.echo)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"restored backup {result.backup_id} in {result.passes} pass(es), {result.bytes_restored} bytes, "
               f"{result.seconds:.1f} s; migration head {result.migrated_from} -> {result.migrated_to}")


@backup_cli.command("list")
@click.option("--from-bucket", is_flag=True,
              help="List the manifests in BACKUP_BUCKET instead of the database's history (for a fresh machine).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def list_command(from_bucket: bool, limit: int) -> None:
    """The newest backups first."""
    from governance.models.lifecycle import Backup
    from governance.services import backups

    settings = current_app.config["SETTINGS"]
    if from_bucket:
        try:
            manifests = backups.list_from_bucket(settings)
        except backups.BackupError as exc:
            raise click.ClickException(str(exc)) from exc
        for manifest in manifests[:limit]:
            if "error" in manifest:
                click.echo(f"{manifest['id']}  unreadable: {manifest['error']}")
                continue
            base = f" of {manifest['base_id']}" if manifest.get("base_id") else ""
            click.echo(f"{manifest['id']}  {manifest['kind']}{base}  {manifest['created_at']}  "
                       f"head {manifest['migration_head']}  {_size(manifest['dump']['size'])}")
        if not manifests:
            click.echo(f"no backups in bucket {settings.backup_bucket!r}")
        return
    rows = db.session.scalars(select(Backup).order_by(Backup.created_at.desc()).limit(limit)).all()
    for row in rows:
        base = f" of {row.base_id}" if row.base_id else ""
        error = f"  {row.error[:200]}" if row.error else ""
        click.echo(f"{row.id}  {row.kind}{base}  {row.status}  {row.created_at:%Y-%m-%d %H:%M:%S%z}  "
                   f"{_size(row.size_bytes)}{error}")
    if not rows:
        click.echo("no backups yet")


@backup_cli.command("prune")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def prune_command(dry_run: bool) -> None:
    """Remove backups older than BACKUP_RETENTION_DAYS from the bucket (never the newest full one,
    nor a full one a kept diff needs); their rows stay as history (also after each nightly full)."""
    from governance.services import backups

    settings = current_app.config["SETTINGS"]
    with context.acting_as(_cli_context("prune")):
        try:
            result = backups.prune(settings, dry_run=dry_run)
        except backups.BackupError as exc:
            raise click.ClickException(str(exc)) from exc
    verb = "would remove" if dry_run else "removed"
    for backup in result.pruned:
        click.echo(f"{verb} {backup.id} ({backup.kind}, {backup.created_at:%Y-%m-%d})")
    for backup_id, reason in result.kept.items():
        click.echo(f"{'would keep' if dry_run else 'kept'} {backup_id}: {reason}")
    click.echo(f"{verb} {len(result.pruned)} backup(s) older than {settings.backup_retention_days} days")


# =====================================================================================================
# `flask backup drill` (H2, restore drills) goes below this line.
# =====================================================================================================


@backup_cli.command("drill")
@click.option("--backup", "backup_id", type=click.UUID, default=None,
              help="The backup to restore (default: the newest succeeded one).")
def drill_command(backup_id: object) -> None:
    """Restore a backup into a scratch database, check it against its manifest (rows, audit chain,
    evidence objects), migrate it forward, drop it; print each check. Exit status 1 if it failed
    (also monthly as a job; docs/drills.md)."""
    import uuid

    from governance.services import drills

    settings = current_app.config["SETTINGS"]
    chosen = backup_id if isinstance(backup_id, uuid.UUID) else None
    click.echo(f"restore drill of backup {chosen or 'newest restorable'} ...")
    with context.acting_as(_cli_context("drill")):
        drill = drills.run_drill(settings, backup_id=chosen, started_by="cli:backup drill")
    for check, state, covered in drills.check_lines(drill):
        detail = f" ({covered})" if covered and state != "not run" else ""
        click.echo(f"  {drills.CHECK_TITLES[check]}: {state}{detail}")
    for problem in drill.problems:
        click.echo(f"  - [{problem['check']}] {problem['message']}")
    restore = f"{drill.restore_seconds:.2f} s (restore and migration)" if drill.restore_seconds is not None else "-"
    click.echo(f"restore time: {restore}")
    if drill.status.value != "passed":
        click.echo(f"drill FAILED: {drill.id} of backup {drill.backup_id or '-'}, "
                   f"{len(drill.problems)} problem(s)")
        raise click.exceptions.Exit(1)
    click.echo(f"drill passed: {drill.id} of backup {drill.backup_id}")
