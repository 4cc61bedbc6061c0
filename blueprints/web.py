"""Rendering helpers shared by every blueprint (page or htmx fragment)."""

from flask import Flask


def init_app(app: Flask) -> None:
    return None
