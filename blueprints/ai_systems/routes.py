"""Inventory pages: the list of AI systems (filters, CSV export), a system's page (details, risk
class, impact assessment, flags, score, controls, models, datasets, evidence, probes, alerts,
tasks, expiring evidence), the system form, soft delete, and the models and datasets.

Views stay thin: changes and reads in governance.services.ai_systems (validated and audited there,
AIInventoryError beside its field), one commit per request. Every form posts and redirects without
JavaScript; with htmx a link or unlink swaps only its section of the system page, and the flags and
score follow out of band. The list filters are a GET form: htmx swaps the results and pushes the
URL, which also works on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import abort, flash, make_response, redirect, request, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_block
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.ai_systems import bp
from blueprints.ai_systems.forms import (
    APPROVAL_LABELS,
    AUTONOMY_LABELS,
    RISK_LABELS,
    ROLE_LABELS,
    STAGE_LABELS,
    DatasetForm,
    ModelForm,
    SystemForm,
)
from blueprints.web import done, parse_uuid, render, wants_fragment
from extensions import db
from governance import context
from governance.models.ai import AIModel, AISystem, Dataset
from governance.models.enums import (
    AIActRole,
    AIAutonomy,
    AILifecycleStage,
    AIModelApproval,
    EvidenceCategory,
)
from governance.models.evidence import Evidence, EvidenceLink
from governance.services import ai_act, ai_checks, audit, evidence_queries, impact_assessments, scoring
from governance.services import ai_systems as service
from governance.services import probes as directory
from governance.services.ai_checks import AIChecksError
from governance.services.ai_systems import AIInventoryError

INDEX_TEMPLATE = "ai_systems/index.html"
DETAIL_TEMPLATE = "ai_systems/detail.html"
FORM_TEMPLATE = "ai_systems/form.html"
DELETE_TEMPLATE = "ai_systems/delete.html"
MODELS_TEMPLATE = "ai_systems/models.html"
MODEL_FORM_TEMPLATE = "ai_systems/model_form.html"
DATASETS_TEMPLATE = "ai_systems/datasets.html"
DATASET_FORM_TEMPLATE = "ai_systems/dataset_form.html"

PAGE_SIZE = service.PAGE_SIZE
FILTER_NAMES = ("risk_class", "stage", "owner_id", "q", "flagged")
FILTER_MAX = 255
QUERY_MAX = 200
CANDIDATE_LIMIT = evidence_queries.TARGET_LIMIT
CSV_BATCH = 100  # rows per chunk handed to the server
EXPORT_ACTION = "ai_system.export"
EXPORT_FINISHED_ACTION = "ai_system.export.finished"
# The system page's sections: name -> its template block (an htmx change swaps only that one).
SECTIONS = {"controls": "system_controls", "models": "system_models", "datasets": "system_datasets",
            "evidence": "system_evidence", "probes": "system_probes"}
CATEGORY_LABELS = {
    EvidenceCategory.GENERAL: "Document or record",
    EvidenceCategory.MODEL_CARD: "Model card",
    EvidenceCategory.EVALUATION_REPORT: "Evaluation report",
    EvidenceCategory.DATA_SHEET: "Data sheet",
}


# --- template helpers ------------------------------------------------------------------------------


def _label(labels: Mapping[Any, str], enum: type[Any], value: Any) -> str:
    if value is None:
        return ""
    try:
        return labels[enum(value)]
    except ValueError:
        return str(value)


@bp.app_template_filter("ai_stage")
def ai_stage(value: AILifecycleStage | str | None) -> str:
    return _label(STAGE_LABELS, AILifecycleStage, value)


@bp.app_template_filter("ai_role")
def ai_role(value: AIActRole | str | None) -> str:
    return _label(ROLE_LABELS, AIActRole, value)


@bp.app_template_filter("ai_autonomy")
def ai_autonomy(value: AIAutonomy | str | None) -> str:
    return _label(AUTONOMY_LABELS, AIAutonomy, value)


@bp.app_template_filter("model_approval")
def model_approval(value: AIModelApproval | str | None) -> str:
    return _label(APPROVAL_LABELS, AIModelApproval, value)


@bp.app_template_filter("evidence_category")
def evidence_category(value: EvidenceCategory | str | None) -> str:
    return _label(CATEGORY_LABELS, EvidenceCategory, value)


def _system_or_404(system_id: uuid.UUID) -> AISystem:
    system = service.get_system(db.session, system_id)
    if system is None:
        abort(404)
    return system


def _detail_url(system_id: uuid.UUID, section: str | None = None) -> str:
    return url_for("ai_systems.detail", system_id=system_id, _anchor=f"system-{section}" if section else None)


def _query(name: str) -> str:
    return (request.values.get(name) or "").replace("\x00", " ").strip()[:QUERY_MAX]


# --- the list and the CSV export -------------------------------------------------------------------


def _filter_args() -> dict[str, str]:
    """The filters as given (empty ones left out)."""
    raw = {name: (request.args.get(name) or "").replace("\x00", " ").strip()[:FILTER_MAX] for name in FILTER_NAMES}
    return {name: value for name, value in raw.items() if value}


def _offset() -> int:
    try:
        return max(0, int(request.args.get("offset", "0")))
    except ValueError:
        return 0


@bp.get("/ai-systems")
@requires("ai_systems", "read")
def index() -> Response:
    args = _filter_args()
    offset = _offset()
    errors: dict[str, str] = {}
    page: service.SystemList = service.SystemList()
    try:
        page = service.list_systems(db.session, **args, limit=PAGE_SIZE, offset=offset)
    except AIInventoryError as exc:
        errors[exc.field or "q"] = exc.message
    next_url = url_for("ai_systems.index", **args, offset=offset + PAGE_SIZE) if page.has_more else None
    return render(INDEX_TEMPLATE, block="results", status=422 if errors else 200, page=page, filters=args,
                  errors=errors, next_url=next_url, paged=offset > 0, users=directory.active_users(db.session),
                  risk_labels=RISK_LABELS, stage_labels=STAGE_LABELS, unclassified=service.UNCLASSIFIED,
                  export_url=url_for("ai_systems.export", **args))


def _csv_chunks(lines: Iterator[str], batch: int) -> Iterator[tuple[str, int]]:
    """The CSV lines (the header first) joined in chunks of about `batch` rows, with the number of
    rows (not counting the header) sent so far."""
    chunk: list[str] = []
    count = -1
    for line in lines:
        chunk.append(line)
        count += 1
        if len(chunk) >= batch:
            yield "".join(chunk), count
            chunk = []
    yield "".join(chunk), max(count, 0)


@bp.get("/ai-systems/export.csv")
@requires("ai_systems", "read")
def export() -> Response:
    """The systems the filters match (all pages), by name, streamed as CSV (service.CSV_COLUMNS).

    Audited before the first byte leaves (ai_system.export, with the filters), so an interrupted
    download is on record too; when the stream ends, ai_system.export.finished records how many rows
    went out and whether the client took all of them. The rows come from a server-side cursor in
    batches (service.iter_systems_csv), so memory stays flat at any size. As the audit log's export,
    the stream has a session and connection of its own and needs no request context: it runs after
    the request's entry committed, however long the client takes."""
    args = _filter_args()
    try:
        service.iter_systems_csv(db.session, **args)  # validates the filters (no row is read yet)
    except AIInventoryError as exc:
        return Response(f"The export filters are not valid. {exc.field}: {exc.message}\n", status=422,
                        mimetype="text/plain")
    ctx = context.current()
    started = audit.record(db.session, EXPORT_ACTION, object_type="ai_system",
                           details={"filters": args, "format": "csv"})
    started_id = started.id
    db.session.commit()
    bind = db.session.get_bind()

    def stream() -> Iterator[str]:
        sent, complete = 0, False
        try:
            with Session(bind=bind) as session:
                for chunk, count in _csv_chunks(service.iter_systems_csv(session, **args), CSV_BATCH):
                    sent = count
                    yield chunk
                complete = True
        finally:
            # Runs when the last row is out, and also when the client went away (GeneratorExit).
            with Session(bind=bind) as session:
                audit.record(session, EXPORT_FINISHED_ACTION, object_type="ai_system", object_id=started_id,
                             details={"rows": sent, "complete": complete}, ctx=ctx)
                session.commit()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = Response(stream(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="ai-systems-{stamp}.csv"'
    return response


# --- the system form -------------------------------------------------------------------------------


def _user_choices(*keep: Any) -> list[tuple[str, str]]:
    """Active users, plus the ones a system names now even when they can no longer sign in (so the
    form shows who it is, and the service says beside the field that they must change)."""
    users = directory.active_users(db.session)
    choices = [("", "Nobody")] + [(str(u.id), f"{u.name} ({u.email})") for u in users]
    known = {str(u.id) for u in users}
    for user in keep:
        if user is not None and str(user.id) not in known:
            choices.append((str(user.id), f"{user.name} ({user.email}), cannot sign in"))
            known.add(str(user.id))
    return choices


def _system_form(formdata: Any = None, system: AISystem | None = None, **data: Any) -> SystemForm:
    form = SystemForm(formdata=formdata, **data)
    choices = _user_choices(*(() if system is None else (system.owner, system.oversight_owner)))
    form.owner_id.choices = choices
    form.oversight_owner_id.choices = list(choices)
    return form


def _system_fields(form: SystemForm) -> dict[str, Any]:
    """Everything the form posts, as typed: the service trims, splits the lists and checks it all."""
    return {name: getattr(form, name).data or "" for name in service.SYSTEM_FIELDS}


def _system_data(system: AISystem) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in service.SYSTEM_FIELDS:
        value = getattr(system, name)
        if name in ("data_categories", "deployment_regions"):
            value = "\n".join(value or [])
        elif name in ("owner_id", "oversight_owner_id"):
            value = str(value) if value else ""
        elif name == "next_review_date":
            value = value.isoformat() if value else ""
        elif hasattr(value, "value"):
            value = value.value
        data[name] = value if value is not None else ""
    return data


def _place(form: Any, exc: AIInventoryError) -> None:
    """The message beside its field, or above the form when it belongs to none."""
    target = getattr(form, exc.field or "", None) if exc.field and exc.field != "meta" else None
    if target is not None and hasattr(target, "errors"):
        target.errors = [*target.errors, exc.message]
    else:
        form.form_errors.append(exc.message)


def _form_page(form: SystemForm, *, system: AISystem | None, status: int = 200) -> Response:
    return render(FORM_TEMPLATE, status=status, form=form, system=system)


@bp.get("/ai-systems/new")
@requires("ai_systems", "create")
def new() -> Response:
    return _form_page(_system_form(None, owner_id=str(current_user.id)), system=None)


@bp.post("/ai-systems/new")
@requires("ai_systems", "create")
def create() -> Response:
    form = _system_form(request.form)
    if not form.validate_on_submit():
        return _form_page(form, system=None, status=422)
    try:
        system = service.create_system(db.session, **_system_fields(form))
    except AIInventoryError as exc:
        db.session.rollback()
        _place(form, exc)
        return _form_page(form, system=None, status=422)
    db.session.commit()
    return done(_detail_url(system.id), f"AI system “{system.name}” registered.")


@bp.get("/ai-systems/<uuid:system_id>/edit")
@requires("ai_systems", "update")
def edit(system_id: uuid.UUID) -> Response:
    system = _system_or_404(system_id)
    return _form_page(_system_form(None, system, **_system_data(system)), system=system)


@bp.post("/ai-systems/<uuid:system_id>/edit")
@requires("ai_systems", "update")
def update(system_id: uuid.UUID) -> Response:
    system = _system_or_404(system_id)
    form = _system_form(request.form, system)
    if not form.validate_on_submit():
        return _form_page(form, system=system, status=422)
    try:
        service.update_system(db.session, system.id, **_system_fields(form))
    except AIInventoryError as exc:
        db.session.rollback()
        if exc.field == "system":
            abort(404)
        system = _system_or_404(system_id)
        _place(form, exc)
        return _form_page(_refill(form, system), system=system, status=422)
    db.session.commit()
    return done(_detail_url(system_id), "Saved.")


def _refill(form: SystemForm, system: AISystem) -> SystemForm:
    """After a rollback the user choices are read again (the form keeps what was typed)."""
    choices = _user_choices(system.owner, system.oversight_owner)
    form.owner_id.choices = choices
    form.oversight_owner_id.choices = list(choices)
    return form


# --- delete ----------------------------------------------------------------------------------------


@bp.get("/ai-systems/<uuid:system_id>/delete")
@requires("ai_systems", "delete")
def confirm_delete(system_id: uuid.UUID) -> Response:
    return render(DELETE_TEMPLATE, system=_system_or_404(system_id))


@bp.post("/ai-systems/<uuid:system_id>/delete")
@requires("ai_systems", "delete")
def delete(system_id: uuid.UUID) -> Response:
    system = _system_or_404(system_id)
    name = system.name
    try:
        service.delete_system(db.session, system.id)
    except AIInventoryError:
        db.session.rollback()
        abort(404)
    db.session.commit()
    return done(url_for("ai_systems.index"), f"AI system “{name}” deleted.")


# --- one system ------------------------------------------------------------------------------------


def _group_controls(rows: list[service.SystemControl]) -> dict[str, list[service.SystemControl]]:
    groups: dict[str, list[service.SystemControl]] = {service.CLASSIFICATION: [], service.MANUAL: []}
    for row in rows:
        for origin in row.origins:
            groups.setdefault(origin, []).append(row)
    return groups


def _evidence_candidates(system_id: uuid.UUID, q: str) -> list[Evidence]:
    """Live evidence not yet linked to the system whose name matches q (the newest when q is
    empty), at most CANDIDATE_LIMIT."""
    linked = select(EvidenceLink.id).where(EvidenceLink.evidence_id == Evidence.id,
                                           EvidenceLink.ai_system_id == system_id).exists()
    stmt = select(Evidence).where(Evidence.deleted_at.is_(None), ~linked)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Evidence.name.ilike(f"%{escaped}%", escape="\\"))
    return list(db.session.scalars(stmt.order_by(Evidence.created_at.desc(), Evidence.id.desc())
                                   .limit(CANDIDATE_LIMIT)))


def _detail_context(system: AISystem, **extra: Any) -> dict[str, Any]:
    controls = service.system_controls(db.session, system.id)
    linked_models = {m.id for m in system.models}
    linked_datasets = {d.id for d in system.datasets}
    context: dict[str, Any] = {
        "system": system,
        "classification": ai_act.latest(db.session, system.id),
        "assessment": impact_assessments.latest(db.session, system.id),
        "approved_assessment": impact_assessments.latest_approved(db.session, system.id),
        "needs_assessment": service.needs_assessment(system),
        "flags": service.flags(db.session, system),
        "score": service.system_score(db.session, system.id),
        "formula": scoring.FORMULA_TEXT,
        "control_groups": _group_controls(controls),
        "control_count": len(controls),
        "model_options": [m for m in service.list_models(db.session) if m.id not in linked_models],
        "dataset_options": [d for d in service.list_datasets(db.session) if d.id not in linked_datasets],
        "evidence_rows": service.system_evidence(db.session, system.id),
        "probes": service.system_probes(db.session, system.id),
        "alerts": service.system_alerts(db.session, system.id),
        "tasks": service.system_tasks(db.session, system.id),
        "expiring": service.expiring_evidence(db.session, system.id),
        "now": datetime.now(UTC),
        "notices": {}, "section_errors": {}, "oob": False,
        "control_q": "", "control_choices": None, "evidence_q": "", "evidence_candidates": None,
    }
    context.update(extra)
    return context


@bp.get("/ai-systems/<uuid:system_id>")
@requires("ai_systems", "read")
def detail(system_id: uuid.UUID) -> Response:
    return render(DETAIL_TEMPLATE, **_detail_context(_system_or_404(system_id)))


def _section_answer(system_id: uuid.UUID, section: str, *, notice: str | None = None, error: str | None = None,
                    status: int = 200, **extra: Any) -> Response:
    """After a change in one section: with htmx that section (and the flags and score out of
    band); without, a redirect to it with the notice, or the page with the error (422)."""
    system = _system_or_404(system_id)
    if not wants_fragment() and error is None and notice is not None:
        flash(notice, "success")
        return redirect(_detail_url(system.id, section), code=303)
    context = _detail_context(system, notices={section: notice} if notice else {},
                              section_errors={section: error} if error else {}, **extra)
    if not wants_fragment():
        return render(DETAIL_TEMPLATE, status=status, **context)
    body = render_block(DETAIL_TEMPLATE, SECTIONS[section], **context)
    if notice is not None:
        oob = {**context, "oob": True}
        body += render_block(DETAIL_TEMPLATE, "system_flags", **oob)
        body += render_block(DETAIL_TEMPLATE, "system_score", **oob)
    response = make_response(body, status)
    response.vary.add("HX-Request")
    return response


def _search_answer(system_id: uuid.UUID, section: str, block: str, **extra: Any) -> Response:
    """A candidate search: with htmx only the candidates; without, the page with them shown."""
    context = _detail_context(_system_or_404(system_id), **extra)
    if wants_fragment():
        response = make_response(render_block(DETAIL_TEMPLATE, block, **context))
        response.vary.add("HX-Request")
        return response
    return render(DETAIL_TEMPLATE, **context)


def _refused(system_id: uuid.UUID, section: str, exc: AIInventoryError | AIChecksError) -> Response:
    db.session.rollback()
    if exc.field == "system" or (isinstance(exc, AIChecksError) and service.get_system(db.session, system_id) is None):
        abort(404)
    return _section_answer(system_id, section, error=exc.message, status=422)


# --- controls --------------------------------------------------------------------------------------


@bp.get("/ai-systems/<uuid:system_id>/controls/candidates")
@requires("ai_systems", "update")
def control_candidates(system_id: uuid.UUID) -> Response:
    q = _query("control_q")
    manual = {c.control.id for c in service.system_controls(db.session, system_id)
              if service.MANUAL in c.origins}
    choices = directory.control_choices(db.session, q, exclude=list(manual)) if q else []
    return _search_answer(system_id, "controls", "control_candidates", control_q=q, control_choices=choices)


@bp.post("/ai-systems/<uuid:system_id>/controls")
@requires("ai_systems", "update")
def link_control(system_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    control_id = parse_uuid(request.form.get("control_id"))
    if control_id is None:
        return _section_answer(system_id, "controls", error="Choose a control to link.", status=422)
    try:
        row = service.link_control(db.session, system_id, control_id)
        label = f"{row.control.ref_id} {row.control.title}"
    except AIInventoryError as exc:
        return _refused(system_id, "controls", exc)
    db.session.commit()
    return _section_answer(system_id, "controls", notice=f"Linked {label}.")


@bp.post("/ai-systems/<uuid:system_id>/controls/<uuid:control_id>/unlink")
@requires("ai_systems", "update")
def unlink_control(system_id: uuid.UUID, control_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    try:
        removed = service.unlink_control(db.session, system_id, control_id)
    except AIInventoryError as exc:
        return _refused(system_id, "controls", exc)
    db.session.commit()
    return _section_answer(system_id, "controls", notice="Control unlinked." if removed else "It was not linked.")


# --- models and datasets of a system ---------------------------------------------------------------


@bp.post("/ai-systems/<uuid:system_id>/models")
@requires("ai_systems", "update")
def link_model(system_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    model_id = parse_uuid(request.form.get("model_id"))
    if model_id is None:
        return _section_answer(system_id, "models", error="Choose a model to link.", status=422)
    try:
        service.link_model(db.session, system_id, model_id)
    except AIInventoryError as exc:
        return _refused(system_id, "models", exc)
    db.session.commit()
    model = service.get_model(db.session, model_id)
    return _section_answer(system_id, "models", notice=f"Linked {_model_name(model)}.")


def _model_name(model: AIModel | None) -> str:
    if model is None:
        return "the model"
    return f"{model.name} {model.version}".strip()


@bp.post("/ai-systems/<uuid:system_id>/models/<uuid:model_id>/unlink")
@requires("ai_systems", "update")
def unlink_model(system_id: uuid.UUID, model_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    try:
        removed = service.unlink_model(db.session, system_id, model_id)
    except AIInventoryError as exc:
        return _refused(system_id, "models", exc)
    db.session.commit()
    return _section_answer(system_id, "models", notice="Model unlinked." if removed else "It was not linked.")


@bp.post("/ai-systems/<uuid:system_id>/datasets")
@requires("ai_systems", "update")
def link_dataset(system_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    dataset_id = parse_uuid(request.form.get("dataset_id"))
    if dataset_id is None:
        return _section_answer(system_id, "datasets", error="Choose a dataset to link.", status=422)
    try:
        service.link_dataset(db.session, system_id, dataset_id)
    except AIInventoryError as exc:
        return _refused(system_id, "datasets", exc)
    db.session.commit()
    dataset = service.get_dataset(db.session, dataset_id)
    return _section_answer(system_id, "datasets", notice=f"Linked {dataset.name if dataset else 'the dataset'}.")


@bp.post("/ai-systems/<uuid:system_id>/datasets/<uuid:dataset_id>/unlink")
@requires("ai_systems", "update")
def unlink_dataset(system_id: uuid.UUID, dataset_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    try:
        removed = service.unlink_dataset(db.session, system_id, dataset_id)
    except AIInventoryError as exc:
        return _refused(system_id, "datasets", exc)
    db.session.commit()
    return _section_answer(system_id, "datasets", notice="Dataset unlinked." if removed else "It was not linked.")


# --- evidence --------------------------------------------------------------------------------------


@bp.get("/ai-systems/<uuid:system_id>/evidence/candidates")
@requires("ai_systems", "update")
def evidence_candidates(system_id: uuid.UUID) -> Response:
    q = evidence_queries.clean_query(request.args.get("evidence_q"))
    return _search_answer(system_id, "evidence", "evidence_candidates", evidence_q=q,
                          evidence_candidates=_evidence_candidates(system_id, q))


@bp.post("/ai-systems/<uuid:system_id>/evidence")
@requires("ai_systems", "update")
def link_evidence(system_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    evidence_id = parse_uuid(request.form.get("evidence_id"))
    if evidence_id is None:
        return _section_answer(system_id, "evidence", error="Choose evidence to link.", status=422)
    try:
        row = service.link_evidence(db.session, system_id, evidence_id)
        name = row.evidence.name
    except AIInventoryError as exc:
        return _refused(system_id, "evidence", exc)
    db.session.commit()
    return _section_answer(system_id, "evidence", notice=f"Linked {name}.")


@bp.post("/ai-systems/<uuid:system_id>/evidence/<uuid:evidence_id>/unlink")
@requires("ai_systems", "update")
def unlink_evidence(system_id: uuid.UUID, evidence_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    try:
        removed = service.unlink_evidence(db.session, system_id, evidence_id)
    except AIInventoryError as exc:
        return _refused(system_id, "evidence", exc)
    db.session.commit()
    return _section_answer(system_id, "evidence", notice="Evidence unlinked." if removed else "It was not linked.")


# --- probes ----------------------------------------------------------------------------------------


@bp.post("/ai-systems/<uuid:system_id>/checks")
@requires("ai_systems", "update")
def add_standard_checks(system_id: uuid.UUID) -> Response:
    _system_or_404(system_id)
    try:
        probe = ai_checks.add_standard_checks(db.session, system_id)
    except AIChecksError as exc:
        return _refused(system_id, "probes", exc)
    db.session.commit()
    return _section_answer(system_id, "probes", notice=f"The standard AI checks are in “{probe.name}”.")


# --- models ----------------------------------------------------------------------------------------


def _model_or_404(model_id: uuid.UUID) -> AIModel:
    model = service.get_model(db.session, model_id)
    if model is None:
        abort(404)
    return model


@bp.get("/ai-systems/models")
@requires("ai_systems", "read")
def models() -> Response:
    return render(MODELS_TEMPLATE, models=service.list_models(db.session), limit=service.PAGE_MAX)


def _model_fields(form: ModelForm) -> dict[str, Any]:
    return {name: getattr(form, name).data or "" for name in service.MODEL_FIELDS}


def _model_page(form: ModelForm, *, model: AIModel | None, status: int = 200) -> Response:
    return render(MODEL_FORM_TEMPLATE, status=status, form=form, model=model)


@bp.get("/ai-systems/models/new")
@requires("ai_systems", "create")
def new_model() -> Response:
    return _model_page(ModelForm(formdata=None), model=None)


@bp.post("/ai-systems/models/new")
@requires("ai_systems", "create")
def create_model() -> Response:
    form = ModelForm()
    if not form.validate_on_submit():
        return _model_page(form, model=None, status=422)
    try:
        model = service.create_model(db.session, **_model_fields(form))
    except AIInventoryError as exc:
        db.session.rollback()
        _place(form, exc)
        return _model_page(form, model=None, status=422)
    db.session.commit()
    return done(url_for("ai_systems.models"), f"Model “{_model_name(model)}” added.")


@bp.get("/ai-systems/models/<uuid:model_id>/edit")
@requires("ai_systems", "update")
def edit_model(model_id: uuid.UUID) -> Response:
    model = _model_or_404(model_id)
    data = {name: getattr(model, name) or "" for name in service.MODEL_FIELDS}
    data["approval_status"] = model.approval_status.value
    return _model_page(ModelForm(formdata=None, **data), model=model)


@bp.post("/ai-systems/models/<uuid:model_id>/edit")
@requires("ai_systems", "update")
def update_model(model_id: uuid.UUID) -> Response:
    model = _model_or_404(model_id)
    form = ModelForm()
    if not form.validate_on_submit():
        return _model_page(form, model=model, status=422)
    try:
        service.update_model(db.session, model.id, **_model_fields(form))
    except AIInventoryError as exc:
        db.session.rollback()
        _place(form, exc)
        return _model_page(form, model=_model_or_404(model_id), status=422)
    db.session.commit()
    return done(url_for("ai_systems.models"), "Saved.")


@bp.post("/ai-systems/models/<uuid:model_id>/delete")
@requires("ai_systems", "delete")
def delete_model(model_id: uuid.UUID) -> Response:
    model = _model_or_404(model_id)
    name = _model_name(model)
    try:
        service.delete_model(db.session, model.id)
    except AIInventoryError as exc:
        db.session.rollback()
        model = _model_or_404(model_id)
        form = ModelForm(formdata=None, **{n: getattr(model, n) or "" for n in service.MODEL_FIELDS})
        form.approval_status.data = model.approval_status.value
        form.form_errors.append(exc.message)
        return _model_page(form, model=model, status=422)
    db.session.commit()
    return done(url_for("ai_systems.models"), f"Model “{name}” deleted.")


# --- datasets --------------------------------------------------------------------------------------


def _dataset_or_404(dataset_id: uuid.UUID) -> Dataset:
    dataset = service.get_dataset(db.session, dataset_id)
    if dataset is None:
        abort(404)
    return dataset


@bp.get("/ai-systems/datasets")
@requires("ai_systems", "read")
def datasets() -> Response:
    return render(DATASETS_TEMPLATE, datasets=service.list_datasets(db.session), limit=service.PAGE_MAX)


def _dataset_fields(form: DatasetForm) -> dict[str, Any]:
    return {name: getattr(form, name).data or "" for name in service.DATASET_FIELDS}


def _dataset_data(dataset: Dataset) -> dict[str, Any]:
    data = {name: getattr(dataset, name) or "" for name in service.DATASET_FIELDS}
    data["personal_data"] = "yes" if dataset.personal_data else "no"
    return data


def _dataset_page(form: DatasetForm, *, dataset: Dataset | None, status: int = 200) -> Response:
    return render(DATASET_FORM_TEMPLATE, status=status, form=form, dataset=dataset)


@bp.get("/ai-systems/datasets/new")
@requires("ai_systems", "create")
def new_dataset() -> Response:
    return _dataset_page(DatasetForm(formdata=None), dataset=None)


@bp.post("/ai-systems/datasets/new")
@requires("ai_systems", "create")
def create_dataset() -> Response:
    form = DatasetForm()
    if not form.validate_on_submit():
        return _dataset_page(form, dataset=None, status=422)
    try:
        dataset = service.create_dataset(db.session, **_dataset_fields(form))
    except AIInventoryError as exc:
        db.session.rollback()
        _place(form, exc)
        return _dataset_page(form, dataset=None, status=422)
    db.session.commit()
    return done(url_for("ai_systems.datasets"), f"Dataset “{dataset.name}” added.")


@bp.get("/ai-systems/datasets/<uuid:dataset_id>/edit")
@requires("ai_systems", "update")
def edit_dataset(dataset_id: uuid.UUID) -> Response:
    dataset = _dataset_or_404(dataset_id)
    return _dataset_page(DatasetForm(formdata=None, **_dataset_data(dataset)), dataset=dataset)


@bp.post("/ai-systems/datasets/<uuid:dataset_id>/edit")
@requires("ai_systems", "update")
def update_dataset(dataset_id: uuid.UUID) -> Response:
    dataset = _dataset_or_404(dataset_id)
    form = DatasetForm()
    if not form.validate_on_submit():
        return _dataset_page(form, dataset=dataset, status=422)
    try:
        service.update_dataset(db.session, dataset.id, **_dataset_fields(form))
    except AIInventoryError as exc:
        db.session.rollback()
        _place(form, exc)
        return _dataset_page(form, dataset=_dataset_or_404(dataset_id), status=422)
    db.session.commit()
    return done(url_for("ai_systems.datasets"), "Saved.")


@bp.post("/ai-systems/datasets/<uuid:dataset_id>/delete")
@requires("ai_systems", "delete")
def delete_dataset(dataset_id: uuid.UUID) -> Response:
    dataset = _dataset_or_404(dataset_id)
    name = dataset.name
    try:
        service.delete_dataset(db.session, dataset.id)
    except AIInventoryError as exc:
        db.session.rollback()
        dataset = _dataset_or_404(dataset_id)
        form = DatasetForm(formdata=None, **_dataset_data(dataset))
        form.form_errors.append(exc.message)
        return _dataset_page(form, dataset=dataset, status=422)
    db.session.commit()
    return done(url_for("ai_systems.datasets"), f"Dataset “{name}” deleted.")
