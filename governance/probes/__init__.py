"""Probe kinds: the interface every kind implements, and the registry of kinds by name.

A probe has a kind, a configuration (validated by the kind) and checks (each with parameters,
validated by the kind). A run hands the kind the probe's configuration and its active checks; the
kind returns one Observation per check. The run engine (governance.services.probe_runs) writes them
as results, keeps each check's latest outcome and updates the scores.

Built-in kinds are modules of this package that call register(); a deployment adds its own kind as
a Python entry point in the group "governance.probes" whose object is a ProbeKind (docs/probes.md).

Errors: a kind raises TransientProbeError for what may pass on a retry (a timeout, a 503, a refused
connection) and ProbeError for what will not (bad credentials, a missing object). Either way the run
records `error` results: the probe failed, which never counts as non-compliance.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

from sqlalchemy.orm import Session

from governance.models.enums import ResultOutcome

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "governance.probes"


class ConfigError(ValueError):
    """A refused configuration or check parameter; `field` names the form field it belongs beside."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ProbeError(RuntimeError):
    """The probe itself failed and retrying will not help; the message is shown to people."""


class TransientProbeError(ProbeError):
    """The probe failed in a way that may pass: the run is retried with backoff."""


@dataclass(frozen=True)
class CheckSpec:
    """What a kind needs of one check."""

    id: uuid.UUID
    name: str
    parameters: Mapping[str, Any]
    control_ids: tuple[uuid.UUID, ...]


@dataclass
class Observation:
    """One check's outcome in one run (becomes a results row)."""

    check_id: uuid.UUID
    outcome: ResultOutcome
    observed: Any = None
    expected: Any = None
    message: str | None = None
    resource: str | None = None


@dataclass
class RunContext:
    """What a kind may use while running: the database session (read what it needs; never commit),
    the object store, the settings, the run's clock, and the probe's identity."""

    session: Session
    storage: Any
    settings: Any
    now: datetime
    probe_id: uuid.UUID
    probe_name: str
    timeout_s: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)


class ProbeKind(Protocol):
    name: str  # registry key, e.g. "http_endpoint"
    label: str  # shown in the UI, e.g. "HTTP endpoint"
    description: str  # one sentence for the UI
    # Form fields of the probe configuration and of a check's parameters: (field name, label,
    # help text, required). The UI renders text inputs for them; validate_* turns text into values.
    config_fields: tuple[tuple[str, str, str, bool], ...]
    parameter_fields: tuple[tuple[str, str, str, bool], ...]

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The clean configuration, or ConfigError beside the first bad field."""
        ...

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """A check's clean parameters, or ConfigError beside the first bad field."""
        ...

    def run(self, ctx: RunContext, config: Mapping[str, Any], checks: list[CheckSpec]) -> list[Observation]:
        """One Observation per check (errors for a single check are an ERROR observation; a failure
        of the whole probe raises ProbeError / TransientProbeError)."""
        ...


_REGISTRY: dict[str, ProbeKind] = {}
_loaded = False


def register(kind: ProbeKind) -> ProbeKind:
    if kind.name in _REGISTRY and _REGISTRY[kind.name] is not kind:
        raise ValueError(f"probe kind {kind.name!r} is registered twice")
    _REGISTRY[kind.name] = kind
    return kind


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from governance.probes import builtin  # noqa: F401  (registers the built-in kinds)

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            kind = ep.load()
            register(kind() if isinstance(kind, type) else kind)
        except Exception:  # a broken plug-in must not take the portal down: say so, go on
            log.exception("probe kind entry point %s could not be loaded", ep.name)


def get(name: str) -> ProbeKind:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError("kind", f"Unknown probe kind {name!r}.") from None


def kinds() -> list[ProbeKind]:
    _load()
    return sorted(_REGISTRY.values(), key=lambda k: k.label)


Factory = Callable[[], ProbeKind]
