"""CLI groups of the data lifecycle (docs/operations.md), registered by commands.register_cli."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from flask_migrate.cli import db as migrate_db

    from cli.backup import backup_cli
    from cli.database import register_db_commands
    from cli.erasure import erasure_cli
    from cli.retention import retention_cli

    app.cli.add_command(backup_cli)
    app.cli.add_command(retention_cli)
    app.cli.add_command(erasure_cli)
    register_db_commands(migrate_db)
