"""Commands added to Flask-Migrate's `flask db` group: `flask db roles` (docs/database-security.md) and
`flask db slow-queries` (docs/operations.md, "Query performance")."""

from __future__ import annotations

import click
from flask import current_app

from governance import context


def _show(statements: list[str]) -> None:
    for statement in statements:
        click.echo(statement.rstrip(";") + ";")


@click.command("roles")
@click.option("--print-sql", is_flag=True,
              help="Run everything in a transaction, print the SQL, then roll it back (a dry run).")
@click.option("--login", "login", metavar="NAME", help="Also create (or update) the LOGIN role NAME.")
@click.option("--role", "kind", type=click.Choice(["service", "readonly", "admin"]),
              help="The group the --login joins.")
@click.option("--password", envvar="DB_ROLE_PASSWORD", default=None,
              help="The --login's password (or DB_ROLE_PASSWORD); default: a random one, printed once.")
def roles_command(print_sql: bool, login: str | None, kind: str | None, password: str | None) -> None:
    """Create the roles governance_readonly / _service / _admin and grant them least privilege,
    on DATABASE_ADMIN_URL (as a superuser the first time). Re-run after every migration that adds
    tables and after a restore. Prints the SQL it runs."""
    import secrets

    from sqlalchemy.orm import Session

    from governance.services import audit, db_roles

    if (login is None) != (kind is None):
        raise click.UsageError("--login and --role go together")
    settings = current_app.config["SETTINGS"]
    engine = db_roles.admin_engine(settings)
    secret = password or (secrets.token_urlsafe(24) if login else None)
    try:
        with engine.connect() as conn, context.acting_as(context.ActionContext(actor_name="cli:db roles")):
            transaction = conn.begin()
            statements = db_roles.apply(conn)
            if login is not None and kind is not None and secret is not None:
                try:
                    statements += db_roles.create_login(conn, login, kind, password=secret)  # type: ignore[arg-type]
                except ValueError as exc:
                    raise click.ClickException(str(exc)) from exc
            with Session(bind=conn) as session:
                audit.record(session, "database.roles_apply", object_type="database",
                             object_id=str(engine.url.database),
                             details={"statements": len(statements), "login": login, "role": kind,
                                      "dry_run": print_sql})
                session.flush()
            _show(statements)
            if print_sql:
                transaction.rollback()
                click.echo("-- dry run: rolled back, nothing changed", err=True)
                return
            transaction.commit()
    finally:
        engine.dispose()
    click.echo(f"-- roles applied on {engine.url.database} ({len(statements)} statements)", err=True)
    if login is not None and password is None:
        click.echo(f"-- password of {login} (shown once): {secret}", err=True)


@click.command("slow-queries")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many statements.")
@click.option("--order", default="total", show_default=True, type=click.Choice(["total", "mean", "calls"]),
              help="Most total execution time, highest mean time, or most calls first.")
@click.option("--width", default=120, show_default=True, type=click.IntRange(min=20),
              help="Trim each statement's text to this many characters.")
def slow_queries_command(limit: int, order: str, width: int) -> None:
    """The costliest statements of this database from pg_stat_statements (on DATABASE_ADMIN_URL, which
    sees every role's statement text): for the periodic plan review in docs/operations.md."""
    from governance.services import db_roles, slow_queries

    engine = db_roles.admin_engine(current_app.config["SETTINGS"])
    try:
        with engine.connect() as conn:
            found = slow_queries.costliest(conn, limit=limit, order=order, width=width)
    except slow_queries.NotAvailable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    if not found:
        click.echo("no statements recorded yet (pg_stat_statements was reset or the database is idle)")
        return
    for line in slow_queries.format_table(found):
        click.echo(line)


def register_db_commands(group: click.Group) -> None:
    """Add our commands to the `db` group (once: the group is a module-level object)."""
    if "roles" not in group.commands:
        group.add_command(roles_command)
    if "slow-queries" not in group.commands:
        group.add_command(slow_queries_command)
