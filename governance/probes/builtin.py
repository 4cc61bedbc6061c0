"""The built-in probe kinds: importing each module registers its kind (governance.probes.register)."""

from __future__ import annotations

from governance.probes import (  # noqa: F401  (imported for their register() calls)
    ai_system,
    evidence_freshness,
    http_endpoint,
    manual_attestation,
    metric_threshold,
    sql_query,
)
