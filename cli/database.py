"""Commands added to Flask-Migrate's `flask db` group: `flask db roles` (docs/operations.md)."""

from __future__ import annotations

import click


def register_db_commands(group: click.Group) -> None:
    """Add our commands to the `db` group (once: the group is a module-level object)."""
