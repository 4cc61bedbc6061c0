"""CLI commands (flask --app app ...), registered by create_app()."""

from flask import Flask


def register_cli(app: Flask) -> None:
    return None
