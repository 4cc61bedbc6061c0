"""CLI commands (`flask --app app ...`), registered by create_app().

Commands act as the "system" actor with a request id of their own, so what they change is
audited like a web request.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from extensions import db
from governance import context
from governance.models.identity import User
from governance.services import db_roles, demo, partitions

partitions_cli = AppGroup("partitions", help="Monthly partitions of audit_logs and results.")
demo_cli = AppGroup("demo", help="Demo data for a development instance.")
jobs_cli = AppGroup("jobs", help="The job queue (procrastinate).")
users_cli = AppGroup("users", help="Accounts: create, change role, deactivate.")
frameworks_cli = AppGroup("frameworks", help="Framework libraries: import and export (docs/framework-format.md).")


def _cli_context(command: str) -> context.ActionContext:
    return context.ActionContext(actor_name=f"cli:{command}")


@partitions_cli.command("create")
@click.option("--months", default=3, show_default=True, type=click.IntRange(0, 120),
              help="How many months ahead of the current one to create.")
def create_partitions(months: int) -> None:
    """Create the monthly partitions up to MONTHS ahead (idempotent)."""
    # DDL: on the admin URL (DATABASE_ADMIN_URL), not the app's service role.
    with context.acting_as(_cli_context("partitions create")), \
            db_roles.admin_session(current_app.config["SETTINGS"]) as session:
        created = partitions.ensure_partitions(session, months_ahead=months)
        session.commit()
    click.echo(f"created {len(created)} partition(s)" + (": " + ", ".join(created) if created else ""))


@click.command("setup")
def setup() -> None:
    """Prepare a migrated database and the object store: partitions ahead, evidence bucket."""
    with context.acting_as(_cli_context("setup")), \
            db_roles.admin_session(current_app.config["SETTINGS"]) as session:
        created = partitions.ensure_partitions(session, months_ahead=3)
        session.commit()
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
        demo.load_evidence(db.session, current_app.extensions["storage"], settings, result)
        db.session.commit()
    click.echo(demo.describe(result, settings.instance_dir))
    if settings.mfa_required_roles:
        roles = ", ".join(settings.mfa_required_roles)
        click.echo(f"  Accounts with the role(s) {roles} set up two-factor sign-in (a TOTP app) at first sign-in\n"
                   "  (MFA_REQUIRED_ROLES; set it empty to turn that off on a development instance).")


@jobs_cli.command("worker")
@click.option("--queue", "queues", multiple=True, help="Only these queues (default: all).")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--once", is_flag=True, help="Run the jobs already queued, then exit.")
def run_worker(queues: tuple[str, ...], concurrency: int, once: bool) -> None:
    """Run queued and periodic jobs until stopped (SIGINT / SIGTERM finish the running job first)."""
    current_app.extensions["jobs"].run_worker(queues=list(queues) or None, concurrency=concurrency,
                                              wait=not once)


def _read_password() -> str:
    """From a prompt (typed twice, hidden) on a terminal; else the first line of stdin, so that
    `printf '%s\\n' "$PW" | flask users create ...` works without the password in argv or history."""
    stdin = sys.stdin
    if stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return stdin.readline().rstrip("\r\n")


def _user_or_fail(email: str) -> User:
    from governance.services import identity

    user = identity.find_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no user with e-mail {email}")
    return user


@users_cli.command("create")
@click.option("--email", required=True, help="The sign-in e-mail address.")
@click.option("--role", "role_name", required=True, help="admin, compliance_officer, engineer or auditor.")
@click.option("--name", default="", help="Display name (default: the e-mail address).")
def create_user_command(email: str, role_name: str, name: str) -> None:
    """Create an active user; the password is read from stdin or prompted for (never an option)."""
    from governance.services import identity

    password = _read_password()
    with context.acting_as(_cli_context("users create")):
        try:
            user = identity.create_user(db.session, email=email, name=name, role_name=role_name,
                                        password=password)
        except identity.IdentityError as exc:
            db.session.rollback()
            raise click.ClickException(f"{exc.field}: {exc.message}") from exc
        db.session.commit()
        click.echo(f"created {user.email} ({role_name})")


@users_cli.command("set-role")
@click.option("--email", required=True)
@click.option("--role", "role_name", required=True)
def set_role_command(email: str, role_name: str) -> None:
    """Move a user to another role; their sessions end at once."""
    from governance.services import identity, users

    with context.acting_as(_cli_context("users set-role")):
        user = _user_or_fail(email)
        try:
            changed = users.set_role(db.session, user, role_name, actor_id=None)
        except identity.IdentityError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from exc
        db.session.commit()
    click.echo(f"{email} is now {role_name}" if changed else f"{email} already has role {role_name}")


@users_cli.command("deactivate")
@click.option("--email", required=True)
def deactivate_command(email: str) -> None:
    """Block a user from signing in and end their sessions at once."""
    from governance.services import identity, users

    with context.acting_as(_cli_context("users deactivate")):
        user = _user_or_fail(email)
        try:
            changed = users.deactivate(db.session, user)
        except identity.IdentityError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from exc
        db.session.commit()
    click.echo(f"{email} deactivated" if changed else f"{email} was already inactive")


@frameworks_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", "ours", "oscal"]), default="auto", show_default=True,
              help="ours: our JSON/YAML format; oscal: an OSCAL catalog (JSON); auto: by content.")
@click.option("--title", default=None, help="Import under this title instead of the file's.")
@click.option("--version", "version_", default=None, help="Import under this version instead of the file's.")
def import_framework_command(file: Path, fmt: str, title: str | None, version_: str | None) -> None:
    """Import FILE as a new framework version (the same content again changes nothing)."""
    from governance.services import framework_io

    with context.acting_as(_cli_context("frameworks import")):
        try:
            document = framework_io.load_document(file.read_bytes(), file.name)
            result = framework_io.import_framework(db.session, document, fmt=fmt, title=title, version=version_)
        except framework_io.FrameworkIOError as exc:
            db.session.rollback()
            raise click.ClickException(str(exc)) from exc
        db.session.commit()
    name = f"{result.framework.title} {result.framework.version}"
    if not result.created:
        click.echo(f"{name} is already imported with this content: nothing changed")
        return
    click.echo(f"imported {name} ({result.format}): {result.controls} controls, {result.withdrawn} withdrawn, "
               f"in {result.seconds:.2f} s")


@frameworks_cli.command("export")
@click.option("--title", required=True)
@click.option("--version", "version_", required=True)
@click.option("--format", "fmt", type=click.Choice(["ours", "oscal"]), default="ours", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout (a .yaml / .yml name writes our format as YAML).")
def export_framework_command(title: str, version_: str, fmt: str, output: Path | None) -> None:
    """Export one framework version in our format or as an OSCAL catalog."""
    from governance.services import framework_io

    framework = framework_io.find_framework(db.session, title, version_)
    if framework is None:
        raise click.ClickException(f"no framework {title!r} with version {version_!r}")
    document = framework_io.export_framework(db.session, framework, fmt)
    if output is not None and output.suffix.lower() in (".yaml", ".yml") and fmt == "ours":
        import yaml  # type: ignore[import-untyped]

        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")


@frameworks_cli.command("load-library")
@click.argument("name", required=False)
@click.option("--all", "load_all", is_flag=True, help="Load every shipped library.")
def load_library_command(name: str | None, load_all: bool) -> None:
    """Load a framework library shipped with the product (governance/libraries), or --all of them.

    Each library is its own transaction; one already loaded with the same content is left as it is."""
    import time

    from governance.services import framework_io, libraries

    if bool(name) == load_all:
        raise click.UsageError(f"give a library NAME or --all (libraries: {', '.join(libraries.LIBRARIES)})")
    names = list(libraries.LIBRARIES) if load_all else [str(name)]
    started = time.perf_counter()
    failed = 0
    with context.acting_as(_cli_context("frameworks load-library")):
        for lib_name in names:
            try:
                result = libraries.load_library(db.session, lib_name)
            except framework_io.FrameworkIOError as exc:
                db.session.rollback()
                if not load_all:
                    raise click.ClickException(str(exc)) from exc
                failed += 1
                click.echo(f"{lib_name}: failed: {exc}", err=True)
                continue
            db.session.commit()
            label = f"{result.framework.title} {result.framework.version}"
            state = "loaded" if result.created else "already loaded, unchanged"
            click.echo(f"{lib_name}: {label} {state}: {result.controls} controls "
                       f"({result.withdrawn} withdrawn) in {result.seconds:.2f} s")
    with context.acting_as(_cli_context("frameworks load-library")):
        from governance.services import mappings

        sets = mappings.load_available_mapping_sets(db.session)
        db.session.commit()
    for set_name, outcome in sets.items():
        click.echo(f"mapping set {set_name}: {outcome.created} created, {outcome.updated} updated, "
                   f"{outcome.unchanged} unchanged")
    click.echo(f"{len(names) - failed} of {len(names)} libraries in {time.perf_counter() - started:.2f} s")
    if failed:
        raise click.ClickException(f"{failed} library(ies) failed to load")

mappings_cli = AppGroup("mappings", help="Control-to-control mappings (crosswalks): import, export, shipped sets.")


@mappings_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", "origin", default=None,
              help="Label the mappings' origin (default: the JSON file's `source`, else its name; CSV: none).")
def import_mappings_command(file: Path, origin: str | None) -> None:
    """Import a mapping set FILE (.json or .csv); identical rows are left as they are."""
    from governance.services import mappings

    with context.acting_as(_cli_context("mappings import")):
        try:
            spec = mappings.load_document(file.read_bytes(), file.name, source=origin)
            result = mappings.import_mapping_set(db.session, spec)
        except mappings.MappingIOError as exc:
            db.session.rollback()
            raise click.ClickException(str(exc)) from exc
        db.session.commit()
    click.echo(f"imported {file.name}: {result.created} created, {result.updated} updated, "
               f"{result.unchanged} unchanged")


@mappings_cli.command("export")
@click.option("--source-title", required=True)
@click.option("--source-version", required=True)
@click.option("--target-title", required=True)
@click.option("--target-version", required=True)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout.")
def export_mappings_command(source_title: str, source_version: str, target_title: str, target_version: str,
                            fmt: str, output: Path | None) -> None:
    """Export the mappings from one framework version's controls to another's."""
    from governance.services import mappings

    ends = []
    for title, version in ((source_title, source_version), (target_title, target_version)):
        framework = mappings.find_framework(db.session, title, version)
        if framework is None:
            raise click.ClickException(f"no framework {title!r} with version {version!r}")
        ends.append(framework)
    text = mappings.export_mapping_set(db.session, ends[0], ends[1], fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")


@mappings_cli.command("load")
@click.argument("name", required=False)
@click.option("--all", "load_all", is_flag=True, help="Load every shipped mapping set.")
def load_mappings_command(name: str | None, load_all: bool) -> None:
    """Load a shipped mapping set NAME (see governance/libraries/mappings), or --all of them."""
    from governance.services import mappings

    if bool(name) == load_all:
        raise click.UsageError(f"give a set NAME or --all (sets: {', '.join(mappings.shipped_sets())})")
    with context.acting_as(_cli_context("mappings load")):
        try:
            results = (mappings.load_all_mapping_sets(db.session) if load_all
                       else {str(name): mappings.load_mapping_set(db.session, str(name))})
        except mappings.MappingIOError as exc:
            db.session.rollback()
            raise click.ClickException(str(exc)) from exc
        db.session.commit()
    for set_name, result in results.items():
        click.echo(f"{set_name}: {result.created} created, {result.updated} updated, {result.unchanged} unchanged")


evidence_cli = AppGroup("evidence", help="Evidence: consistency with the object store, freshness.")


@evidence_cli.command("verify")
@click.option("--no-hash", is_flag=True, help="Compare sizes only (fast); by default the SHA-256 of every "
              "object version is computed too (streamed).")
@click.option("--abort-incomplete", is_flag=True,
              help="Abort multipart uploads under evidence/ begun more than --incomplete-age minutes ago.")
@click.option("--incomplete-age", default=60, show_default=True, type=click.IntRange(0, None),
              help="Minutes after which an unfinished multipart upload counts as abandoned.")
def verify_evidence_command(no_hash: bool, abort_incomplete: bool, incomplete_age: int) -> None:
    """Check every evidence revision against its object version (exists, size, SHA-256), list object
    versions no revision names and abandoned multipart uploads.

    Exit status: 0 when all is consistent, 1 when any problem is listed, 2 when the object store
    cannot be reached."""
    from datetime import timedelta

    from governance.services import evidence_verify

    with context.acting_as(_cli_context("evidence verify")):
        report = evidence_verify.verify(db.session, current_app.extensions["storage"], hashed=not no_hash,
                                        abort_incomplete=abort_incomplete,
                                        incomplete_age=timedelta(minutes=incomplete_age))
        db.session.commit()
    for problem in report.problems:
        click.echo(problem.line())
    for upload in report.aborted:
        click.echo(f"{'ABORTED':<13} {upload['key']}: multipart upload {upload['upload_id']} "
                   f"begun {upload.get('initiated')} aborted")
    for upload in report.in_progress:
        click.echo(f"{'IN PROGRESS':<13} {upload['key']}: multipart upload {upload['upload_id']} begun "
                   f"{upload.get('initiated')} (younger than {incomplete_age} min: left alone, not a problem)")
    if report.unreachable:
        click.echo(f"error: {report.summary()}", err=True)
        raise click.exceptions.Exit(2)
    click.echo(report.summary())
    if not report.clean:
        raise click.exceptions.Exit(1)


@evidence_cli.command("sweep")
@click.option("--no-email", is_flag=True, help="Only the sweep: leave e-mail to the job queue.")
def sweep_evidence_command(no_email: bool) -> None:
    """Run the daily freshness sweep now: expire lapsed evidence, warn owners of what lapses soon
    (EVIDENCE_EXPIRY_NOTICE_DAYS), then e-mail pending notifications when SMTP is configured."""
    from sqlalchemy import func, select

    from governance.services import evidence_freshness, mail

    settings = current_app.config["SETTINGS"]
    with context.acting_as(_cli_context("evidence sweep")):
        now = db.session.scalar(select(func.now()))
        result = evidence_freshness.sweep(db.session, settings, now)
        db.session.commit()
    days = settings.evidence_expiry_notice_days
    click.echo(f"expired {result.expired} evidence item(s) ({result.expired_notified} owner notice(s)); "
               f"{result.expiring_notified} new notice(s) of expiry within {days} day(s)")
    if no_email:
        return
    delivery = mail.deliver_pending(db.session, settings)
    if delivery.stopped == "not configured":
        click.echo("e-mail: not sent (SMTP_HOST is not set)")
    else:
        click.echo(f"e-mail: {delivery.sent} sent, {delivery.failed} refused"
                   + (f"; stopped: {delivery.stopped}" if delivery.stopped else ""))


scores_cli = AppGroup("scores", help="Compliance scores and daily KPI metrics.")


@scores_cli.command("rebuild")
def rebuild_scores_command() -> None:
    """Recompute every control, framework and owner score from the checks' latest outcomes (repair)."""
    from governance.services import scoring

    with context.acting_as(_cli_context("scores rebuild")):
        result = scoring.rebuild_all(db.session)
        db.session.commit()
    click.echo(f"rebuilt {result['controls']} control, {result['frameworks']} framework and "
               f"{result['users']} user score(s)")


@scores_cli.command("snapshot")
def snapshot_kpis_command() -> None:
    """Write today's KPI metrics now (also the daily gov:kpi_snapshot job)."""
    from governance.services import kpis

    with context.acting_as(_cli_context("scores snapshot")):
        written = kpis.snapshot(db.session)
        db.session.commit()
    click.echo(f"wrote {written} metric(s) for today")


audit_cli = AppGroup("audit", help="The audit log: verify its hash chain, export an anchor, app-role grants.")


@audit_cli.command("verify")
@click.option("--no-anchors", is_flag=True, help="Check the chain and its head only, not the anchors in "
              "the object store (AUDIT_ANCHOR_BUCKET).")
@click.option("--anchors", "anchor_count", default=24, show_default=True, type=click.IntRange(0, 10_000),
              help="How many of the newest anchors to compare the chain with.")
@click.option("--no-alert", is_flag=True, help="Report only: raise no audit.chain_broken alert on failure.")
def verify_audit_command(no_anchors: bool, anchor_count: int, no_alert: bool) -> None:
    """Recompute every entry's hash, walk the chain's links in seq order, check the head
    and the newest anchors; name the first entry that does not match (docs/audit.md).

    Exit status: 0 when the chain holds, 1 when it is broken (and the critical alert is raised)."""
    from governance.services import audit_chain
    from governance.storage import StorageError

    settings = current_app.config["SETTINGS"]
    anchors: list[audit_chain.Anchor] = []
    if not no_anchors and anchor_count:
        try:
            anchors = audit_chain.latest_anchors(audit_chain.anchor_store(settings), anchor_count)
        except StorageError as exc:
            click.echo(f"warning: anchors not checked ({exc})", err=True)
    url = db.engine.url.render_as_string(hide_password=False)
    result = audit_chain.verify_database(url, anchors=anchors)
    click.echo(result.summary())
    if result.ok:
        return
    if not no_alert:
        with context.acting_as(_cli_context("audit verify")):
            audit_chain.report_failure(db.session, result)
            db.session.commit()
        click.echo("raised the critical alert audit.chain_broken", err=True)
    raise click.exceptions.Exit(1)


@audit_cli.command("anchor")
def export_anchor_command() -> None:
    """Export the chain head as an anchor into AUDIT_ANCHOR_BUCKET now (also hourly, gov:audit_anchor)."""
    from governance.services import audit_chain

    settings = current_app.config["SETTINGS"]
    with context.acting_as(_cli_context("audit anchor")):
        anchor = audit_chain.export_anchor(db.session, audit_chain.anchor_store(settings),
                                           lock_days=settings.audit_anchor_lock_days,
                                           lock_mode=settings.evidence_lock_mode)
        db.session.commit()
    click.echo(f"anchored seq {anchor.seq} ({anchor.hash.hex()}) as {settings.audit_anchor_bucket}/{anchor.key}")


@audit_cli.command("grant-app-role")
@click.argument("role")
def grant_app_role_command(role: str) -> None:
    """Grant ROLE (an existing database role) what the app needs, audit_logs limited to SELECT and
    INSERT. Run it as the tables' owner after each migration that adds tables."""
    from sqlalchemy import text

    from governance.services import audit_chain

    # GRANTs need the tables' owner: the admin URL (`flask db roles` does this and more).
    with context.acting_as(_cli_context("audit grant-app-role")), \
            db_roles.admin_session(current_app.config["SETTINGS"]) as session:
        exists = session.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        if exists is None:
            raise click.ClickException(f"no database role {role!r}")
        statements = audit_chain.grant_app_role(session, role)
        session.commit()
    click.echo("\n".join(statements))


def register_cli(app: Flask) -> None:
    import cli

    cli.register(app)
    app.cli.add_command(audit_cli)
    app.cli.add_command(scores_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(partitions_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(setup)
    app.cli.add_command(users_cli)
    app.cli.add_command(frameworks_cli)
    app.cli.add_command(mappings_cli)
    app.cli.add_command(evidence_cli)
