"""The AI inventory pages: AI systems (use cases), their models, datasets, controls, evidence and
checks (routes.py), and the EU AI Act questionnaire, impact assessment and register (flows.py).

The blueprint object lives here so both route modules add to the same `bp`; importing them at the
end registers their routes.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("ai_systems", __name__)

from blueprints.ai_systems import flows, routes  # noqa: E402,F401
