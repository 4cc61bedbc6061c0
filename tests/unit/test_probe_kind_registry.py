"""The probe-kind registry: the built-in kinds are registered with the whole interface, and a kind
from another distribution's entry point (a real *.dist-info found by importlib.metadata) is loaded,
while a broken entry point is logged and skipped."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import governance.probes as probes
from governance.models.enums import ResultOutcome

BUILTIN = ("ai_system", "evidence_freshness", "http_endpoint", "manual_attestation", "metric_threshold", "sql_query")


def test_the_built_in_kinds_implement_the_interface() -> None:
    names = [kind.name for kind in probes.kinds()]
    assert set(BUILTIN) <= set(names)
    for name in BUILTIN:
        kind: Any = probes.get(name)
        assert kind.name == name and kind.label and kind.description.endswith(".")
        for fields in (kind.config_fields, kind.parameter_fields):
            for field in fields:
                assert len(field) == 4 and all(isinstance(part, str) and part for part in field[:3])
                assert isinstance(field[3], bool)
        assert isinstance(kind.public_config({}), dict)
        assert isinstance(kind.restore_secrets({}, {}), dict)
        assert set(kind.secret_fields) <= {f[0] for f in kind.config_fields}
    with pytest.raises(probes.ConfigError) as unknown:
        probes.get("no_such_kind")
    assert unknown.value.field == "kind"


PLUGIN = '''
from governance.models.enums import ResultOutcome
from governance.probes import ConfigError, Observation


class AcmeKind:
    name = "acme_model_registry"
    label = "Acme model registry"
    description = "The model is registered in Acme."
    config_fields = ()
    parameter_fields = (("model", "Model", "Its registry name.", True),)

    def validate_config(self, config):
        return {}

    def validate_parameters(self, parameters):
        model = (parameters.get("model") or "").strip()
        if not model:
            raise ConfigError("model", "Name the model.")
        return {"model": model}

    def run(self, ctx, config, checks):
        return [Observation(c.id, ResultOutcome.COMPLIANT, observed=c.parameters["model"]) for c in checks]
'''


def test_a_kind_registered_through_an_entry_point_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "acme_probe_kind.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "acme_probe_kind-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-probe-kind\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[governance.probes]\nacme = acme_probe_kind:AcmeKind\nbroken = acme_no_such_module:KIND\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(probes, "_loaded", False)
    saved = dict(probes._REGISTRY)
    try:
        with caplog.at_level(logging.ERROR, logger="governance.probes"):
            kind = probes.get("acme_model_registry")
        assert kind.label == "Acme model registry"
        assert "acme_model_registry" in [k.name for k in probes.kinds()]
        assert "probe kind entry point broken could not be loaded" in caplog.text
        assert probes.get("http_endpoint").name == "http_endpoint"  # the built-ins are still there
        spec = probes.CheckSpec(id=uuid.uuid4(), name="x", parameters=kind.validate_parameters({"model": " m1 "}),
                                control_ids=())
        ctx = probes.RunContext(session=None, storage=None, settings=None,  # type: ignore[arg-type]
                                now=datetime.now(UTC), probe_id=uuid.uuid4(), probe_name="acme")
        [observation] = kind.run(ctx, {}, [spec])
        assert (observation.outcome, observation.observed) == (ResultOutcome.COMPLIANT, "m1")
    finally:
        probes._REGISTRY.clear()
        probes._REGISTRY.update(saved)
        sys.modules.pop("acme_probe_kind", None)


def test_two_kinds_of_one_name_are_refused() -> None:
    class Impostor:
        name = "http_endpoint"

    with pytest.raises(ValueError, match="registered twice"):
        probes.register(Impostor())  # type: ignore[arg-type]
    assert probes.get("http_endpoint").label == "HTTP endpoint"
