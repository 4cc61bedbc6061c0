"""Evidence uploads (being written)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("evidence_upload", __name__)
