"""Probe and check pages: create (each kind) with errors beside the fields, edit, enable/disable,
run now (one queued job) and the polled run status, checks with the control picker, the check's
keyset-paginated result history, attestations, the control page's checks; audit rows; secrets
never rendered; statement counts equal for few and many rows."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, text

from extensions import db
from governance.models.audit import AuditLog
from governance.models.enums import CheckStatus, ResultOutcome, Severity
from governance.models.probes import Attestation, Check, CheckControl, Probe, ProbeRun, Result
from governance.services import probes as service
from tests.conftest import count_statements

HX = {"HX-Request": "true"}
DSN_PASSWORD = "pw-Zq81-never-shown"
BEARER = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"

# A valid configuration per built-in kind, as the form posts it.
KIND_CONFIGS: dict[str, dict[str, str]] = {
    "evidence_freshness": {"max_age_days": "30"},
    "http_endpoint": {"timeout_s": "5", "headers": json.dumps({"Authorization": f"Bearer {BEARER}"})},
    "manual_attestation": {},
    "metric_threshold": {},
    "sql_query": {"dsn": f"postgresql://probe:{DSN_PASSWORD}@db.internal:5432/app", "statement_timeout_ms": "2000"},
}


def _token(client: FlaskClient, csrf_token: Callable[[str], str], url: str = "/probes") -> str:
    return csrf_token(client.get(url).get_data(as_text=True))


def _probe_form(token: str, kind: str, name: str, **overrides: str) -> dict[str, str]:
    data = {"csrf_token": token, "kind": kind, "name": name, "description": "", "schedule": "0 6 * * *",
            "owner_id": "", "enabled": "y"}
    data.update({f"config-{k}": v for k, v in KIND_CONFIGS.get(kind, {}).items()})
    data.update(overrides)
    return data


def _field_error(html: str, field_id: str) -> str:
    """The error paragraph of one field (the one the input points at with aria-describedby)."""
    match = re.search(rf'<p class="field-error" id="{re.escape(field_id)}-error">(.*?)</p>', html, re.S)
    assert match, f"no error beside {field_id}"
    return match.group(1).strip()


def _audit(action: str, object_id: Any) -> list[AuditLog]:
    return list(db.session.scalars(select(AuditLog).where(AuditLog.action == action,
                                                          AuditLog.object_id == str(object_id))
                                   .order_by(AuditLog.seq)))


def _make_probe(kind: str = "metric_threshold", *, name: str | None = None, schedule: str | None = "0 6 * * *",
                enabled: bool = True, config: dict[str, str] | None = None) -> Probe:
    probe = service.create_probe(db.session, name=name or f"{kind} {uuid.uuid4().hex[:6]}", kind=kind,
                                 description=None, config=KIND_CONFIGS[kind] if config is None else config,
                                 schedule=schedule, owner_id=None, enabled=enabled)
    db.session.commit()
    return probe


def _make_check(probe: Probe, controls: list[Any], *, name: str = "Accuracy", **parameters: str) -> Check:
    params = parameters or {"key": "metrics/latest.json", "field": "accuracy", "operator": ">=", "threshold": "0.9"}
    check = service.create_check(db.session, probe, name=name, description=None, severity="high",
                                 control_ids=[c.id for c in controls], parameters=params)
    db.session.commit()
    return check


# --- create: each kind, errors beside the fields ---------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KIND_CONFIGS))
def test_compliance_officer_creates_a_probe_of_each_kind(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str], kind: str,
) -> None:
    officer = login_as("compliance_officer")
    page = client.get(f"/probes/new?kind={kind}").get_data(as_text=True)
    for name in KIND_CONFIGS[kind]:
        assert f'name="config-{name}"' in page
    token = csrf_token(page)
    response = client.post("/probes/new", data=_probe_form(token, kind, f"My {kind}", owner_id=str(officer.id)))
    assert response.status_code == 303, response.get_data(as_text=True)
    probe = db.session.scalars(select(Probe).where(Probe.name == f"My {kind}")).one()
    assert response.headers["Location"] == f"/probes/{probe.id}"
    assert probe.kind == kind and probe.owner_id == officer.id and probe.enabled
    assert probe.schedule == "0 6 * * *" and probe.next_run_at is not None and probe.next_run_at > datetime.now(UTC)
    [entry] = _audit("probe.create", probe.id)
    assert entry.actor_id == officer.id and entry.details["after"]["kind"] == kind
    detail = client.get(f"/probes/{probe.id}").get_data(as_text=True)
    assert f"My {kind}" in detail and "Run now" in detail
    assert DSN_PASSWORD not in detail and BEARER not in detail
    assert DSN_PASSWORD not in json.dumps(entry.details) and BEARER not in json.dumps(entry.details)


def test_changing_the_kind_swaps_the_config_fields_in_place(
    client: FlaskClient, login_as: Callable[[str], Any],
) -> None:
    login_as("compliance_officer")
    page = client.get("/probes/new").get_data(as_text=True)
    assert 'hx-get="/probes/new?fields=1"' in page and 'hx-target="#config-fields"' in page
    assert "Choose a kind to see its configuration." in page
    fragment = client.get("/probes/new?fields=1&kind=sql_query", headers=HX).get_data(as_text=True).strip()
    assert fragment.startswith('<fieldset id="config-fields"') and fragment.endswith("</fieldset>")
    assert 'name="config-dsn"' in fragment and 'name="config-password"' in fragment
    assert 'type="password"' in fragment  # the password field
    assert "<html" not in fragment


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"schedule": "every day"}, "schedule", "five fields"),
    ({"schedule": "61 * * * *"}, "schedule", "not a valid cron expression"),
    ({"kind": "no_such_kind"}, "kind", "Choose one of the listed probe kinds."),
    ({"kind": "sql_query", "config-dsn": "mysql://x@y/z"}, "config-dsn", "Only PostgreSQL"),
    ({"kind": "http_endpoint", "config-timeout_s": "600"}, "config-timeout_s", "60 or less"),
    ({"kind": "evidence_freshness", "config-max_age_days": "soon"}, "config-max_age_days", "whole number"),
    ({"name": "  "}, "name", "Enter a name"),
])
def test_invalid_input_is_422_with_the_error_beside_the_field(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
    overrides: dict[str, str], field: str, message: str,
) -> None:
    login_as("compliance_officer")
    token = _token(client, csrf_token, "/probes/new")
    kind = overrides.get("kind", "metric_threshold")
    data = _probe_form(token, kind if kind in KIND_CONFIGS else "metric_threshold", "Refused probe")
    data.update(overrides)
    response = client.post("/probes/new", data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in _field_error(html, field)
    assert f'aria-describedby="{field}-hint {field}-error"' in html or f'{field}-error' in html
    assert db.session.scalar(select(func.count()).select_from(Probe)) == 0
    assert DSN_PASSWORD not in html  # nothing typed into a secret field comes back


def test_a_refused_form_never_echoes_a_typed_secret(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
) -> None:
    login_as("compliance_officer")
    token = _token(client, csrf_token, "/probes/new")
    data = _probe_form(token, "sql_query", "Refused", schedule="bad", **{"config-password": DSN_PASSWORD,
                                                                            "config-dsn": "postgresql://probe@db/app"})
    html = client.post("/probes/new", data=data).get_data(as_text=True)
    assert "five fields" in _field_error(html, "schedule")
    assert DSN_PASSWORD not in html and "postgresql://probe@db/app" not in html


def test_a_duplicate_name_is_refused_beside_the_name(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
) -> None:
    login_as("compliance_officer")
    _make_probe(name="Model card live", kind="http_endpoint")
    token = _token(client, csrf_token, "/probes/new")
    response = client.post("/probes/new", data=_probe_form(token, "http_endpoint", "model card LIVE"))
    assert response.status_code == 422
    assert "already has this name" in _field_error(response.get_data(as_text=True), "name")


# --- edit, enable/disable, secrets -----------------------------------------------------------------


def test_editing_keeps_secrets_and_never_shows_them(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
) -> None:
    login_as("compliance_officer")
    sql = _make_probe("sql_query", name="Orders DB")
    http = _make_probe("http_endpoint", name="Serving health")
    for probe in (sql, http):
        for url in (f"/probes/{probe.id}", f"/probes/{probe.id}/edit", "/probes"):
            html = client.get(url).get_data(as_text=True)
            assert DSN_PASSWORD not in html and BEARER not in html, url

    # Save the edit form as it was shown (masked DSN, masked header) with a new name and schedule.
    html = client.get(f"/probes/{sql.id}/edit").get_data(as_text=True)
    shown_dsn = re.search(r'name="config-dsn" type="text"\s+value="([^"]*)"', html)
    assert shown_dsn and "********" in shown_dsn.group(1)
    data = {"csrf_token": csrf_token(html), "name": "Orders database", "description": "Read replica",
            "schedule": "*/30 * * * *", "owner_id": "", "enabled": "y",
            "config-dsn": shown_dsn.group(1).replace("&#34;", '"'), "config-password": "",
            "config-statement_timeout_ms": "2000"}
    response = client.post(f"/probes/{sql.id}/edit", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)
    db.session.expire_all()
    sql = db.session.get(Probe, sql.id)
    assert sql is not None and sql.name == "Orders database" and sql.schedule == "*/30 * * * *"
    assert sql.config["dsn"] == KIND_CONFIGS["sql_query"]["dsn"]  # the secret survived the masked form
    [entry] = _audit("probe.update", sql.id)
    assert entry.details["before"] == {"name": "Orders DB", "description": None, "schedule": "0 6 * * *"}
    assert entry.details["after"] == {"name": "Orders database", "description": "Read replica",
                                      "schedule": "*/30 * * * *"}

    html = client.get(f"/probes/{http.id}/edit").get_data(as_text=True)
    shown = re.search(r'name="config-headers" type="text"\s+value="([^"]*)"', html)
    assert shown is not None
    headers = shown.group(1).replace("&#34;", '"')
    assert "********" in headers
    data = {"csrf_token": csrf_token(html), "name": "Serving health", "description": "", "schedule": "",
            "owner_id": "", "enabled": "y", "config-headers": headers, "config-timeout_s": "7"}
    assert client.post(f"/probes/{http.id}/edit", data=data).status_code == 303
    db.session.expire_all()
    http = db.session.get(Probe, http.id)
    assert http is not None and http.config["headers"] == {"Authorization": f"Bearer {BEARER}"}
    assert http.config["timeout_s"] == 7 and http.schedule is None and http.next_run_at is None
    for entry in db.session.scalars(select(AuditLog).where(AuditLog.object_type == "probe")):
        assert DSN_PASSWORD not in json.dumps(entry.details) and BEARER not in json.dumps(entry.details)


def test_a_bad_edit_is_422_beside_the_field_and_changes_nothing(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
) -> None:
    login_as("compliance_officer")
    probe = _make_probe("evidence_freshness", name="Fresh evidence")
    token = _token(client, csrf_token, f"/probes/{probe.id}/edit")
    response = client.post(f"/probes/{probe.id}/edit", data={
        "csrf_token": token, "name": "Fresh evidence", "schedule": "0 6 * * *", "owner_id": "", "enabled": "y",
        "config-max_age_days": "0"})
    assert response.status_code == 422
    assert "1 or more" in _field_error(response.get_data(as_text=True), "config-max_age_days")
    assert _audit("probe.update", probe.id) == []


def test_enable_and_disable_are_audited_and_stop_the_schedule(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
) -> None:
    login_as("compliance_officer")
    probe = _make_probe(name="Toggle me")
    token = _token(client, csrf_token, f"/probes/{probe.id}")
    fragment = client.post(f"/probes/{probe.id}/toggle", data={"csrf_token": token, "enabled": "0"}, headers=HX)
    assert fragment.status_code == 200
    body = fragment.get_data(as_text=True).strip()
    assert body.startswith('<section id="probe-state"') and "Probe disabled." in body and ">Enable<" in body
    db.session.expire_all()
    assert not probe.enabled and probe.next_run_at is None
    [disabled] = _audit("probe.disable", probe.id)
    assert disabled.details["before"]["enabled"] is True and disabled.details["after"]["enabled"] is False

    response = client.post(f"/probes/{probe.id}/toggle", data={"csrf_token": token, "enabled": "1"})
    assert response.status_code == 303
    db.session.expire_all()
    assert probe.enabled and probe.next_run_at is not None
    assert len(_audit("probe.enable", probe.id)) == 1
    # Enabling what is enabled changes nothing and records nothing.
    client.post(f"/probes/{probe.id}/toggle", data={"csrf_token": token, "enabled": "1"})
    assert len(_audit("probe.enable", probe.id)) == 1


# --- run now and the run's progress ----------------------------------------------------------------


def _jobs_for(run_id: uuid.UUID) -> list[Any]:
    return list(db.session.execute(text(
        "SELECT id, task_name, status FROM procrastinate_jobs WHERE args->>'run_id' = :rid"), {"rid": str(run_id)}))


def test_run_now_queues_exactly_one_run_and_the_panel_polls_its_progress(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
) -> None:
    engineer = login_as("engineer")
    probe = _make_probe(name="Run me")
    token = _token(client, csrf_token, f"/probes/{probe.id}")
    response = client.post(f"/probes/{probe.id}/run", data={"csrf_token": token}, headers=HX)
    assert response.status_code == 200
    panel = response.get_data(as_text=True).strip()
    assert panel.startswith('<section id="run-panel"')
    [run] = db.session.scalars(select(ProbeRun).where(ProbeRun.probe_id == probe.id)).all()
    assert run.status == "queued" and run.trigger == "manual" and run.requested_by_id == engineer.id
    [job] = _jobs_for(run.id)
    assert job.task_name == "gov:run_probe" and job.status == "todo" and job.id == run.job_id
    status_url = f"/probes/{probe.id}/runs/{run.id}"
    assert f'hx-get="{status_url}" hx-trigger="every 1s"' in panel and "Waiting for a worker" in panel
    [entry] = _audit("probe.run", probe.id)
    assert entry.actor_id == engineer.id and entry.details["run_id"] == str(run.id)

    # A second click while it waits joins the queued run: still one run, one job.
    again = client.post(f"/probes/{probe.id}/run", data={"csrf_token": token})
    assert again.status_code == 303
    assert db.session.scalar(select(func.count()).select_from(ProbeRun).where(ProbeRun.probe_id == probe.id)) == 1
    assert len(_jobs_for(run.id)) == 1

    # Running: progress as checks_done of checks_total, still polling.
    run.status, run.started_at, run.checks_total, run.checks_done = "running", datetime.now(UTC), 4, 1
    db.session.commit()
    polled = client.get(status_url, headers=HX)
    fragment = polled.get_data(as_text=True).strip()
    assert fragment.startswith(f'<div id="run-{run.id}"') and 'hx-trigger="every 1s"' in fragment
    assert re.search(r'<progress id="progress-[^"]+" max="4" value="1">', fragment)
    assert "Checks done: 1 of 4" in fragment and "HX-Trigger" not in polled.headers

    # Finished: no polling trigger any more, and the event the dashboard and checks panel listen for.
    run.status, run.finished_at, run.checks_done = "succeeded", datetime.now(UTC), 4
    run.counts = {"compliant": 3, "error": 1}
    db.session.commit()
    done = client.get(status_url, headers=HX)
    fragment = done.get_data(as_text=True)
    assert "hx-trigger" not in fragment and done.headers["HX-Trigger"] == "probe-run-finished"
    assert "3 compliant" in fragment and "1 error" in fragment and 'value="4"' in fragment
    # The probe page's panels refresh on that event.
    page = client.get(f"/probes/{probe.id}").get_data(as_text=True)
    assert 'hx-trigger="probe-run-finished from:body"' in page
    assert client.get(f"/probes/{uuid.uuid4()}/runs/{run.id}").status_code == 404
    other = _make_probe(name="Other")
    assert client.get(f"/probes/{other.id}/runs/{run.id}").status_code == 404


def test_a_disabled_probe_does_not_run(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
) -> None:
    login_as("admin")
    probe = _make_probe(name="Off", enabled=False)
    token = _token(client, csrf_token, f"/probes/{probe.id}")
    response = client.post(f"/probes/{probe.id}/run", data={"csrf_token": token}, headers=HX)
    assert response.status_code == 409 and "disabled" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(ProbeRun)) == 0


def test_the_list_shows_kind_owner_schedule_status_and_last_run_counts(
    client: FlaskClient, login_as: Callable[[str], Any],
) -> None:
    auditor = login_as("auditor")
    probe = service.create_probe(db.session, name="Listed", kind="metric_threshold", description=None, config={},
                                 schedule="0 6 * * *", owner_id=auditor.id, enabled=True)
    db.session.add(ProbeRun(probe_id=probe.id, status="succeeded", trigger="schedule",
                            counts={"compliant": 2, "non_compliant": 1}))
    db.session.commit()
    html = client.get("/probes").get_data(as_text=True)
    row = re.search(rf'<tr id="probe-{probe.id}".*?</tr>', html, re.S)
    assert row is not None
    cells = row.group(0)
    assert "Metric threshold" in cells and auditor.name in cells and "0 6 * * *" in cells
    assert "2 compliant" in cells and "1 not compliant" in cells
    assert "New probe" not in html  # auditors read only
    assert 'href="/probes"' in html  # the nav's Probes link


# --- checks: create with the control picker, edit, toggle --------------------------------------------


def test_checks_are_created_with_the_control_picker(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
    make_control: Callable[..., Any],
) -> None:
    login_as("compliance_officer")
    probe = _make_probe(name="Model metrics")
    first = make_control("MEASURE-2.3", "Performance is measured")
    second = make_control("MEASURE-2.11", "Fairness is evaluated", framework=first.framework)
    make_control("GOVERN-1.1", "Legal requirements", framework=first.framework)
    url = f"/probes/{probe.id}/checks/new"
    page = client.get(url).get_data(as_text=True)
    assert 'name="param-threshold"' in page and "No control chosen yet." in page

    # htmx search: the hits, with what is already chosen kept (checked) above them.
    picker = client.get(f"{url}?picker=1&control_q=measure&control_ids={first.id}", headers=HX)
    fragment = picker.get_data(as_text=True).strip()
    assert fragment.startswith('<fieldset id="control-picker"')
    assert f'value="{first.id}" id="control-{first.id}" checked' in fragment
    assert f'id="choice-{second.id}"' in fragment and f'id="choice-{first.id}"' not in fragment
    assert "GOVERN-1.1" not in fragment
    by_ref = client.get(f"{url}?picker=1&control_q=GOVERN-1", headers=HX).get_data(as_text=True)
    assert "GOVERN-1.1" in by_ref

    token = csrf_token(page)
    form = {"csrf_token": token, "name": "Accuracy at least 0.9", "description": "", "severity": "high",
            "control_ids": [str(first.id), str(second.id)], "param-key": "metrics/model-a.json",
            "param-field": "accuracy", "param-operator": ">=", "param-threshold": "0.9"}
    response = client.post(url, data=form)
    assert response.status_code == 303, response.get_data(as_text=True)
    check = db.session.scalars(select(Check).where(Check.probe_id == probe.id)).one()
    assert response.headers["Location"] == f"/checks/{check.id}"
    assert check.control_id == first.id and check.severity == Severity.HIGH
    assert set(db.session.scalars(select(CheckControl.control_id).where(CheckControl.check_id == check.id))) == {
        first.id, second.id}
    [entry] = _audit("check.create", check.id)
    assert entry.details["after"]["control_ids"] == [str(first.id), str(second.id)]
    # The probe page lists it with its controls.
    detail = client.get(f"/probes/{probe.id}").get_data(as_text=True)
    assert "Accuracy at least 0.9" in detail and "MEASURE-2.11" in detail

    # Errors beside the fields: no control, a bad parameter.
    none_chosen = client.post(url, data={**form, "name": "Other", "control_ids": []})
    assert none_chosen.status_code == 422
    assert "at least one control" in _field_error(none_chosen.get_data(as_text=True), "control-picker")
    bad = client.post(url, data={**form, "name": "Other", "param-threshold": "high"})
    assert bad.status_code == 422
    assert _field_error(bad.get_data(as_text=True), "param-threshold")
    # Without JS, "Find" posts the form back unsaved with the hits.
    found = client.post(url, data={**form, "name": "Third", "refresh": "1", "control_q": "fairness",
                                   "control_ids": [str(first.id)]})
    assert found.status_code == 200 and f'id="choice-{second.id}"' in found.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Check)) == 1


def test_checks_are_edited_and_toggled_with_audit(
    client: FlaskClient, login_as: Callable[[str], Any], csrf_token: Callable[[str], str],
    make_control: Callable[..., Any],
) -> None:
    login_as("compliance_officer")
    a = make_control("A-1", "Alpha")
    b = make_control("B-1", "Beta", framework=a.framework)
    c = make_control("C-1", "Gamma", framework=a.framework)
    probe = _make_probe(name="Metrics")
    check = _make_check(probe, [a, b])
    page = client.get(f"/checks/{check.id}/edit").get_data(as_text=True)
    assert f'value="{a.id}" id="control-{a.id}" checked' in page and 'value="0.9"' in page
    form = {"csrf_token": csrf_token(page), "name": "Accuracy", "description": "Nightly", "severity": "critical",
            "control_ids": [str(c.id), str(a.id)], "param-key": "metrics/latest.json", "param-field": "accuracy",
            "param-operator": ">=", "param-threshold": "0.95"}
    assert client.post(f"/checks/{check.id}/edit", data=form).status_code == 303
    db.session.expire_all()
    assert check.control_id == c.id and check.severity == Severity.CRITICAL
    assert set(db.session.scalars(select(CheckControl.control_id).where(CheckControl.check_id == check.id))) == {
        a.id, c.id}
    [entry] = _audit("check.update", check.id)
    assert entry.details["before"]["control_ids"] == [str(a.id), str(b.id)]
    assert entry.details["after"]["control_ids"] == [str(c.id), str(a.id)]
    assert entry.details["after"]["severity"] == "critical" and "name" not in entry.details["after"]

    token = csrf_token(client.get(f"/checks/{check.id}").get_data(as_text=True))
    off = client.post(f"/checks/{check.id}/toggle", data={"csrf_token": token, "enabled": "0"}, headers=HX)
    assert off.status_code == 200 and "Check disabled." in off.get_data(as_text=True)
    db.session.expire_all()
    assert check.status == CheckStatus.DISABLED
    assert len(_audit("check.disable", check.id)) == 1
    assert client.post(f"/checks/{check.id}/toggle", data={"csrf_token": token, "enabled": "1"}).status_code == 303
    assert len(_audit("check.enable", check.id)) == 1


# --- the check page: result history -------------------------------------------------------------------


def _insert_results(check: Check, n: int) -> list[tuple[datetime, uuid.UUID]]:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [{"id": uuid.uuid4(), "check_id": check.id, "outcome": ResultOutcome.COMPLIANT if i % 3 else
             ResultOutcome.NON_COMPLIANT, "message": f"result {i}", "observed": {"value": i},
             "created_at": now - timedelta(minutes=i // 2)}  # pairs share a timestamp: the id breaks ties
            for i in range(n)]
    db.session.execute(insert(Result), rows)
    db.session.commit()
    return sorted(((r["created_at"], r["id"]) for r in rows), reverse=True)


def test_the_result_history_pages_by_keyset_in_bounded_statements(
    client: FlaskClient, login_as: Callable[[str], Any], make_control: Callable[..., Any],
) -> None:
    login_as("auditor")
    control = make_control()
    few = _make_check(_make_probe(name="Few"), [control], name="Few results")
    many = _make_check(_make_probe(name="Many"), [control], name="Many results")
    _insert_results(few, 3)
    expected = _insert_results(many, 123)

    seen: list[str] = []
    url: str | None = f"/checks/{many.id}"
    pages = 0
    while url:
        response = client.get(url, headers=HX if pages else {})
        html = response.get_data(as_text=True)
        if pages:
            assert html.strip().startswith('<section id="results-panel"')
        seen.extend(re.findall(r'<tr id="result-([0-9a-f-]+)">', html))
        more = re.search(r'<a href="([^"]+)" rel="next"', html)
        url = more.group(1).replace("&amp;", "&") if more else None
        pages += 1
    assert pages == 3
    assert seen == [str(i) for _t, i in expected]  # newest first, each once

    counts = []
    for url in (f"/checks/{few.id}", f"/checks/{many.id}"):
        with count_statements() as statements:
            assert client.get(url).status_code == 200
        counts.append(len(statements))
    assert counts[0] == counts[1], counts
    bad = client.get(f"/checks/{many.id}?after_created=yesterday&after_id=nope")
    assert bad.status_code == 200 and len(re.findall(r'<tr id="result-', bad.get_data(as_text=True))) == 50


# --- attestation ----------------------------------------------------------------------------------


def test_only_the_named_attester_attests_with_a_comment_and_a_run_follows(
    client: FlaskClient, login_as: Callable[[str], Any], make_user: Callable[..., Any],
    csrf_token: Callable[[str], str], make_control: Callable[..., Any], sign_in: Callable[..., Any],
) -> None:
    attester = make_user("engineer")
    other = login_as("compliance_officer")
    control = make_control()
    probe = _make_probe("manual_attestation", name="Quarterly review", schedule=None)
    check = _make_check(probe, [control], name="Access review done", attester_id=str(attester.id), every_days="90")

    # Someone else sees no form, and a post is refused (409, not 403) with nothing recorded.
    page = client.get(f"/checks/{check.id}").get_data(as_text=True)
    assert attester.name in page and 'name="comment"' not in page
    token = csrf_token(page)
    refused = client.post(f"/checks/{check.id}/attest", data={"csrf_token": token, "outcome": "compliant",
                                                             "comment": "Looks fine"})
    assert refused.status_code == 409 and "Only the person named" in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Attestation)) == 0
    assert other.id != attester.id

    client.post("/logout", data={"csrf_token": token})
    assert sign_in(attester.email).status_code == 303
    page = client.get(f"/checks/{check.id}").get_data(as_text=True)
    assert 'name="comment"' in page
    token = csrf_token(page)
    missing = client.post(f"/checks/{check.id}/attest", data={"csrf_token": token, "outcome": "compliant",
                                                             "comment": " "}, headers=HX)
    assert missing.status_code == 422
    assert "comment is required" in _field_error(missing.get_data(as_text=True), "comment")
    done = client.post(f"/checks/{check.id}/attest", data={"csrf_token": token, "outcome": "partial",
                                                          "comment": "Two accounts left to remove"})
    assert done.status_code == 303
    [attestation] = db.session.scalars(select(Attestation)).all()
    assert attestation.attested_by_id == attester.id and attestation.outcome == ResultOutcome.PARTIAL
    [entry] = _audit("check.attest", check.id)
    assert entry.actor_id == attester.id and entry.details["after"]["outcome"] == "partial"
    [run] = db.session.scalars(select(ProbeRun).where(ProbeRun.probe_id == probe.id)).all()
    assert run.status == "queued" and run.requested_by_id == attester.id and len(_jobs_for(run.id)) == 1
    html = client.get(f"/checks/{check.id}").get_data(as_text=True)
    assert "Two accounts left to remove" in html


# --- the control page's checks section ---------------------------------------------------------------


def test_the_control_page_lists_its_checks_latest_results_in_bounded_statements(
    client: FlaskClient, login_as: Callable[[str], Any], make_control: Callable[..., Any],
) -> None:
    login_as("auditor")
    lone = make_control("LONE-1", "Few checks")
    busy = make_control("BUSY-1", "Many checks", framework=lone.framework)
    probe = _make_probe(name="Many checks probe")
    primary = _make_check(probe, [lone, busy], name="Shared check")
    primary.last_outcome, primary.last_message = ResultOutcome.NON_COMPLIANT, "accuracy 0.81 < 0.9"
    primary.last_result_at = datetime.now(UTC)
    for n in range(30):
        _make_check(probe, [busy], name=f"Busy check {n:02d}")
    db.session.commit()

    html = client.get(f"/controls/{lone.id}").get_data(as_text=True)
    section = re.search(r'<section[^>]*id="control-checks".*?</section>', html, re.S)
    assert section is not None
    row = section.group(0)
    assert "Shared check" in row and "Many checks probe" in row and "Not compliant" in row
    assert "accuracy 0.81 &lt; 0.9" in row and f'href="/checks/{primary.id}"' in row and "High" in row
    counts = []
    for url in (f"/controls/{lone.id}", f"/controls/{busy.id}"):
        with count_statements() as statements:
            assert client.get(url).status_code == 200
        counts.append(len(statements))
    assert counts[0] == counts[1], counts
    busy_html = client.get(f"/controls/{busy.id}").get_data(as_text=True)
    assert busy_html.count('id="control-check-') == 31
    empty = make_control("NONE-1", "Unchecked", framework=lone.framework)
    assert "No check assesses this control yet." in client.get(f"/controls/{empty.id}").get_data(as_text=True)
