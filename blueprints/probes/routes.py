"""Probe and check pages: the list, a probe (configuration, checks, runs, "run now" with a run panel
that polls while the run progresses), create and edit probes and checks, enable and disable, a
check's result history (keyset-paginated), attestations of manual_attestation checks.

Views stay thin: changes and reads in governance.services.probes (validated and audited there),
runs queued by governance.services.probe_runs; one commit per request. A kind's configuration
fields are posted as config-<name>, a check's parameters as param-<name>; a secret never leaves
the server (pages show the kind's public view; edit forms leave secrets empty).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.errors.routes import error_response
from blueprints.probes.forms import AttestForm, CheckForm, ProbeForm
from blueprints.web import done, parse_uuid, render, wants_fragment
from extensions import db
from governance import probes as kinds
from governance.models.enums import CheckStatus, ResultOutcome
from governance.models.probes import Check, Probe
from governance.services import probes as service
from governance.services.probes import ProbeServiceError

bp = Blueprint("probes", __name__)

PAGE_SIZE = 50
RESULTS_PAGE_SIZE = 50
RUNS_SHOWN = 10
ACTIVE_RUN_STATES = frozenset({"queued", "running"})
RUN_FINISHED_EVENT = "probe-run-finished"
CONFIG_PREFIX = "config-"
PARAM_PREFIX = "param-"
OUTCOME_LABELS = {
    ResultOutcome.COMPLIANT: "Compliant", ResultOutcome.NON_COMPLIANT: "Not compliant",
    ResultOutcome.PARTIAL: "Partial", ResultOutcome.ERROR: "Error", ResultOutcome.NOT_APPLICABLE: "Not applicable",
}


@bp.app_template_filter("outcome_label")
def outcome_label(outcome: ResultOutcome | str | None) -> str:
    if outcome is None:
        return "No result yet"
    try:
        return OUTCOME_LABELS[ResultOutcome(outcome)]
    except ValueError:
        return str(outcome)


@bp.app_template_filter("run_counts")
def run_counts(counts: Mapping[str, Any] | None) -> str:
    """'3 compliant, 1 error' from a run's outcome counts."""
    parts = [f"{int(n)} {outcome_label(k).lower()}" for k, n in sorted((counts or {}).items())
             if isinstance(n, int) and n]
    return ", ".join(parts)


def _probe_or_404(probe_id: uuid.UUID) -> Probe:
    probe = service.get_probe(db.session, probe_id)
    if probe is None:
        abort(404)
    return probe


def _check_or_404(check_id: uuid.UUID) -> Check:
    check = service.get_check(db.session, check_id)
    if check is None:
        abort(404)
    return check


def _kind_or_none(name: str | None) -> kinds.ProbeKind | None:
    try:
        return kinds.get(name or "")
    except kinds.ConfigError:
        return None


def _place_error(form: Any, exc: ProbeServiceError, extra_errors: dict[str, str], extra_fields: set[str]) -> None:
    """The message beside its field: a form field, one of the kind's fields, or the form's top."""
    target = getattr(form, exc.field or "", None) if exc.field and exc.field != "meta" else None
    if target is not None and hasattr(target, "errors"):
        target.errors = [*target.errors, exc.message]
    elif exc.field in extra_fields:
        extra_errors[exc.field] = exc.message
    else:
        form.form_errors.append(exc.message)


def _prefixed(prefix: str) -> dict[str, str]:
    return {k[len(prefix):]: v for k, v in request.form.items() if k.startswith(prefix)}


# --- the list --------------------------------------------------------------------------------------


@bp.get("/probes")
@requires("probes", "read")
def index() -> Response:
    after = (request.args.get("after") or "")[:service.NAME_MAX] or None
    rows, cursor = service.list_probes(db.session, after=after, limit=PAGE_SIZE)
    next_url = cursor and url_for("probes.index", after=cursor)
    return render("probes/index.html", block="results", rows=rows, next_url=next_url, paged=after is not None,
                  kind_labels={k.name: k.label for k in kinds.kinds()})


# --- create and edit probes ------------------------------------------------------------------------


def _probe_form(formdata: Any = None, **data: Any) -> ProbeForm:
    form = ProbeForm(formdata=formdata, **data)
    form.kind.choices = [("", "Choose a kind…")] + [(k.name, k.label) for k in kinds.kinds()]
    form.owner_id.choices = [("", "Nobody")] + [
        (str(u.id), f"{u.name} ({u.email})") for u in service.active_users(db.session)]
    return form


def _form_page(form: ProbeForm, *, probe: Probe | None, config_values: Mapping[str, str],
               config_errors: Mapping[str, str] | None = None, status: int = 200, block: str | None = None) -> Response:
    kind = _kind_or_none(probe.kind) if probe else _kind_or_none(form.kind.data)
    hidden = service.password_fields(kind) if kind else frozenset()
    return render("probes/form.html", block=block, status=status, form=form, probe=probe, kind=kind,
                  config_values=config_values, config_errors=config_errors or {}, password_fields=hidden)


@bp.get("/probes/new")
@requires("probes", "create")
def new() -> Response:
    form = _probe_form(None, kind=request.args.get("kind", ""), owner_id=str(current_user.id), enabled=True)
    # The kind select swaps only the configuration fields in place (hx-get with the chosen kind).
    block = "config_fields" if request.args.get("fields") == "1" else None
    return _form_page(form, probe=None, config_values={}, block=block)


@bp.post("/probes/new")
@requires("probes", "create")
def create() -> Response:
    form = _probe_form(request.form)
    config = _prefixed(CONFIG_PREFIX)
    if request.form.get("refresh") or not form.validate_on_submit():  # "Show fields" without JS, or bad CSRF/lengths
        return _form_page(form, probe=None, config_values=config, status=200 if request.form.get("refresh") else 422)
    kind = _kind_or_none(form.kind.data)
    try:
        probe = service.create_probe(
            db.session, name=form.name.data, kind=form.kind.data, description=form.description.data,
            config=config, schedule=form.schedule.data, owner_id=parse_uuid(form.owner_id.data),
            enabled=bool(form.enabled.data))
    except ProbeServiceError as exc:
        db.session.rollback()
        errors: dict[str, str] = {}
        fields = {name for name, *_rest in kind.config_fields} if kind else set()
        _place_error(form, exc, errors, fields)
        return _form_page(form, probe=None, config_values=_public_values(kind, config), config_errors=errors,
                          status=422)
    db.session.commit()
    return done(url_for("probes.detail", probe_id=probe.id), f"Probe “{probe.name}” created.")


def _public_values(kind: kinds.ProbeKind | None, config: Mapping[str, str],
                   probe: Probe | None = None) -> dict[str, str]:
    """A refused form comes back with what was typed, except secret fields: empty on a new probe
    (typed again, never echoed), the stored value's public form on an edit (saved back, it keeps
    the secret)."""
    secret = service.secret_fields(kind) if kind else frozenset()
    values = {k: ("" if k in secret else v) for k, v in config.items()}
    if kind is not None and probe is not None:
        stored = service.config_as_form(kind, probe.config or {})
        values.update({k: v for k, v in stored.items() if k in secret})
    return values


@bp.get("/probes/<uuid:probe_id>/edit")
@requires("probes", "update")
def edit(probe_id: uuid.UUID) -> Response:
    probe = _probe_or_404(probe_id)
    form = _probe_form(None, kind=probe.kind, name=probe.name, description=probe.description or "",
                       schedule=probe.schedule or "", owner_id=str(probe.owner_id or ""), enabled=probe.enabled)
    kind = _kind_or_none(probe.kind)
    values = service.config_as_form(kind, probe.config or {}) if kind else {}
    return _form_page(form, probe=probe, config_values=values)


@bp.post("/probes/<uuid:probe_id>/edit")
@requires("probes", "update")
def update(probe_id: uuid.UUID) -> Response:
    probe = _probe_or_404(probe_id)
    form = _probe_form(request.form)
    form.kind.data = probe.kind  # fixed once created
    config = _prefixed(CONFIG_PREFIX)
    kind = _kind_or_none(probe.kind)
    if not form.validate_on_submit():
        return _form_page(form, probe=probe, config_values=_public_values(kind, config, probe), status=422)
    try:
        changed = service.update_probe(
            db.session, probe, name=form.name.data, description=form.description.data, config=config,
            schedule=form.schedule.data, owner_id=parse_uuid(form.owner_id.data), enabled=bool(form.enabled.data))
    except ProbeServiceError as exc:
        db.session.rollback()
        probe = _probe_or_404(probe_id)
        errors: dict[str, str] = {}
        fields = {name for name, *_rest in kind.config_fields} if kind else set()
        _place_error(form, exc, errors, fields)
        return _form_page(form, probe=probe, config_values=_public_values(kind, config, probe),
                          config_errors=errors, status=422)
    db.session.commit()
    return done(url_for("probes.detail", probe_id=probe.id), "Saved." if changed else "Nothing changed.")


@bp.post("/probes/<uuid:probe_id>/toggle")
@requires("probes", "update")
def toggle(probe_id: uuid.UUID) -> Response:
    probe = _probe_or_404(probe_id)
    enable = request.form.get("enabled") == "1"
    service.set_enabled(db.session, probe, enable)
    db.session.commit()
    notice = f"Probe {'enabled' if enable else 'disabled'}."
    if wants_fragment():
        return _detail(probe, block="probe_state", notice=notice)
    flash(notice, "success")
    return redirect(url_for("probes.detail", probe_id=probe.id), code=303)


# --- one probe, runs -------------------------------------------------------------------------------


def _detail(probe: Probe, *, block: str | None = None, status: int = 200, **extra: Any) -> Response:
    kind = _kind_or_none(probe.kind)
    runs = service.recent_runs(db.session, probe.id, RUNS_SHOWN)
    active = next((r for r in runs if r.status in ACTIVE_RUN_STATES), None)
    context: dict[str, Any] = {
        "probe": probe, "kind": kind, "config": service.probe_snapshot(probe)["config"],
        "checks": service.probe_checks(db.session, probe.id), "runs": runs,
        "run": extra.pop("run", None) or active or (runs[0] if runs else None),
        "config_labels": {name: label for name, label, *_rest in (kind.config_fields if kind else ())},
        "notice": None, "run_error": None,
    }
    context.update(extra)
    return render("probes/detail.html", block=block, status=status, **context)


@bp.get("/probes/<uuid:probe_id>")
@requires("probes", "read")
def detail(probe_id: uuid.UUID) -> Response:
    block = request.args.get("block")
    return _detail(_probe_or_404(probe_id), block=block if block in ("checks_panel", "runs_panel") else None)


@bp.post("/probes/<uuid:probe_id>/run")
@requires("probes", "run")
def run_now(probe_id: uuid.UUID) -> Response:
    probe = _probe_or_404(probe_id)
    try:
        queued = service.run_now(db.session, probe, requested_by_id=current_user.id)
    except ProbeServiceError as exc:
        db.session.rollback()
        if wants_fragment():
            return _detail(_probe_or_404(probe_id), block="run_panel", status=exc.status, run_error=exc.message)
        return error_response(exc.status, "Not run", exc.message)
    db.session.commit()
    if wants_fragment():
        return _detail(probe, block="run_panel", run=queued.run, notice=queued.message)
    flash(queued.message, "success")
    return redirect(url_for("probes.detail", probe_id=probe.id, _anchor="run-panel"), code=303)


@bp.get("/probes/<uuid:probe_id>/runs/<uuid:run_id>")
@requires("probes", "read")
def run_status(probe_id: uuid.UUID, run_id: uuid.UUID) -> Response:
    """The run's progress. Polled every second while it is queued or running; the answer that shows
    it finished carries no polling trigger (so the polling stops) and fires probe-run-finished."""
    probe = _probe_or_404(probe_id)
    run = service.get_run(db.session, probe.id, run_id)
    if run is None:
        abort(404)
    response = render("probes/run.html", block="run_status", probe=probe, run=run)
    if wants_fragment() and run.status not in ACTIVE_RUN_STATES:
        response.headers["HX-Trigger"] = RUN_FINISHED_EVENT
    return response


# --- checks ----------------------------------------------------------------------------------------


def _param_fields(kind: kinds.ProbeKind | None) -> set[str]:
    return {name for name, *_rest in kind.parameter_fields} if kind else set()


def _chosen_controls() -> list[uuid.UUID]:
    source = request.form if request.method == "POST" else request.args
    ids = [parse_uuid(v) for v in source.getlist("control_ids")]
    return list(dict.fromkeys(i for i in ids if i is not None))


def _check_page(probe: Probe, form: CheckForm, *, check: Check | None, params: Mapping[str, str],
                control_ids: list[uuid.UUID], q: str = "", param_errors: Mapping[str, str] | None = None,
                status: int = 200, block: str | None = None) -> Response:
    kind = _kind_or_none(probe.kind)
    chosen = service.controls_by_id(db.session, control_ids)
    choices = service.control_choices(db.session, q, exclude=control_ids) if q else None
    users = service.active_users(db.session) if service.ATTESTER_PARAMETER in _param_fields(kind) else []
    return render("probes/check_form.html", block=block, status=status, probe=probe, check=check, form=form,
                  kind=kind, params=params, param_errors=param_errors or {}, chosen=chosen, choices=choices,
                  q=q, users=users, attester_field=service.ATTESTER_PARAMETER)


def _picker_query() -> str:
    source = request.form if request.method == "POST" else request.args
    return (source.get("control_q") or "").strip()[:200]


@bp.get("/probes/<uuid:probe_id>/checks/new")
@requires("checks", "create")
def new_check(probe_id: uuid.UUID) -> Response:
    probe = _probe_or_404(probe_id)
    # The control picker's search (htmx, with the chosen controls) gets only the picker back.
    block = "control_picker" if request.args.get("picker") == "1" else None
    return _check_page(probe, CheckForm(formdata=None), check=None, params={}, control_ids=_chosen_controls(),
                       q=_picker_query(), block=block)


@bp.post("/probes/<uuid:probe_id>/checks/new")
@requires("checks", "create")
def create_check(probe_id: uuid.UUID) -> Response:
    probe = _probe_or_404(probe_id)
    form = CheckForm()
    params, control_ids = _prefixed(PARAM_PREFIX), _chosen_controls()
    if request.form.get("refresh") or not form.validate_on_submit():  # the picker's "Find" without JS
        return _check_page(probe, form, check=None, params=params, control_ids=control_ids, q=_picker_query(),
                           status=200 if request.form.get("refresh") else 422)
    try:
        check = service.create_check(db.session, probe, name=form.name.data, description=form.description.data,
                                     severity=form.severity.data, control_ids=control_ids, parameters=params)
    except ProbeServiceError as exc:
        db.session.rollback()
        probe = _probe_or_404(probe_id)
        errors: dict[str, str] = {}
        _place_error(form, exc, errors, _param_fields(_kind_or_none(probe.kind)) | {"control_ids"})
        return _check_page(probe, form, check=None, params=params, control_ids=control_ids, param_errors=errors,
                           status=422)
    db.session.commit()
    return done(url_for("probes.check_detail", check_id=check.id), f"Check “{check.name}” created.")


@bp.get("/checks/<uuid:check_id>")
@requires("checks", "read")
def check_detail(check_id: uuid.UUID) -> Response:
    return _check_detail(_check_or_404(check_id))


def _results_cursor() -> tuple[datetime, uuid.UUID] | None:
    after_id = parse_uuid(request.args.get("after_id"))
    try:
        after_created = datetime.fromisoformat(request.args.get("after_created", ""))
    except ValueError:
        return None
    if after_id is None or after_created.tzinfo is None:
        return None
    return after_created, after_id


def _check_detail(check: Check, *, status: int = 200, block: str | None = None, **extra: Any) -> Response:
    probe = check.probe
    cursor = _results_cursor()
    results, next_cursor = service.check_results(db.session, check.id, after=cursor, limit=RESULTS_PAGE_SIZE)
    next_url = next_cursor and url_for("probes.check_detail", check_id=check.id,
                                       after_created=next_cursor[0].isoformat(), after_id=next_cursor[1])
    kind = _kind_or_none(probe.kind)
    manual = probe.kind == service.MANUAL_ATTESTATION
    attester = service.attester_id(check)
    users = service.users_by_id(db.session, {attester}) if attester else {}
    context: dict[str, Any] = {
        "check": check, "probe": probe, "kind": kind, "results": results, "next_url": next_url,
        "paged": cursor is not None, "manual": manual, "attester": users.get(attester) if attester else None,
        "attestations": service.recent_attestations(db.session, check.id) if manual else [],
        "may_attest": service.may_attest(check, probe, current_user.id) and check.status == CheckStatus.ACTIVE,
        "attest_form": extra.pop("attest_form", None) or AttestForm(formdata=None),
        "param_labels": {name: label for name, label, *_rest in (kind.parameter_fields if kind else ())},
        "notice": None,
    }
    context.update(extra)
    if block is None and cursor is not None:
        block = "results_panel"  # "Next page" swaps the history only
    return render("probes/check.html", block=block, status=status, **context)


@bp.get("/checks/<uuid:check_id>/edit")
@requires("checks", "update")
def edit_check(check_id: uuid.UUID) -> Response:
    check = _check_or_404(check_id)
    kind = _kind_or_none(check.probe.kind)
    if request.args.get("picker") == "1":
        return _check_page(check.probe, CheckForm(formdata=None), check=check, params={},
                           control_ids=_chosen_controls(), q=_picker_query(), block="control_picker")
    form = CheckForm(formdata=None, name=check.name, description=check.description or "",
                     severity=check.severity.value)
    params = service.parameters_as_form(kind, check.parameters or {}) if kind else {}
    return _check_page(check.probe, form, check=check, params=params,
                       control_ids=service.check_control_ids(db.session, check))


@bp.post("/checks/<uuid:check_id>/edit")
@requires("checks", "update")
def update_check(check_id: uuid.UUID) -> Response:
    check = _check_or_404(check_id)
    form = CheckForm()
    params, control_ids = _prefixed(PARAM_PREFIX), _chosen_controls()
    if request.form.get("refresh") or not form.validate_on_submit():
        return _check_page(check.probe, form, check=check, params=params, control_ids=control_ids,
                           q=_picker_query(), status=200 if request.form.get("refresh") else 422)
    try:
        changed = service.update_check(db.session, check, name=form.name.data, description=form.description.data,
                                       severity=form.severity.data, control_ids=control_ids, parameters=params)
    except ProbeServiceError as exc:
        db.session.rollback()
        check = _check_or_404(check_id)
        errors: dict[str, str] = {}
        _place_error(form, exc, errors, _param_fields(_kind_or_none(check.probe.kind)) | {"control_ids"})
        return _check_page(check.probe, form, check=check, params=params, control_ids=control_ids,
                           param_errors=errors, status=422)
    db.session.commit()
    return done(url_for("probes.check_detail", check_id=check.id), "Saved." if changed else "Nothing changed.")


@bp.post("/checks/<uuid:check_id>/toggle")
@requires("checks", "update")
def toggle_check(check_id: uuid.UUID) -> Response:
    check = _check_or_404(check_id)
    enable = request.form.get("enabled") == "1"
    service.set_check_enabled(db.session, check, enable)
    db.session.commit()
    notice = f"Check {'enabled' if enable else 'disabled'}."
    if wants_fragment():
        return _check_detail(_check_or_404(check_id), block="check_state", notice=notice)
    flash(notice, "success")
    return redirect(url_for("probes.check_detail", check_id=check.id), code=303)


@bp.post("/checks/<uuid:check_id>/attest")
@requires("checks", "read")  # who may attest is the check's named attester: the service decides
def attest(check_id: uuid.UUID) -> Response:
    check = _check_or_404(check_id)
    form = AttestForm()
    if not form.validate_on_submit():
        return _check_detail(check, status=422, block="attest_panel", attest_form=form)
    try:
        service.attest(db.session, check, user=current_user._get_current_object(), outcome=form.outcome.data,
                       comment=form.comment.data)
    except ProbeServiceError as exc:
        db.session.rollback()
        check = _check_or_404(check_id)
        if exc.status != 422:
            return error_response(exc.status, "Attestation not recorded", exc.message)
        errors: dict[str, str] = {}
        _place_error(form, exc, errors, set())
        return _check_detail(check, status=422, block="attest_panel", attest_form=form)
    db.session.commit()
    notice = "Attestation recorded; the check's result follows when the run finishes."
    if wants_fragment():
        return _check_detail(_check_or_404(check_id), block="attest_panel", notice=notice)
    flash(notice, "success")
    return redirect(url_for("probes.check_detail", check_id=check.id), code=303)

