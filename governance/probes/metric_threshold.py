"""metric_threshold: a number read from a JSON or CSV document, compared with a threshold
(accuracy >= 0.9, demographic_parity_difference <= 0.1).

Check parameters: where the document is — source "s3" + key (an object of the evidence bucket),
"url" + url (fetched like http_endpoint: same-host redirects only), or "evidence" + evidence (the
id of a piece of evidence: its current revision's object is read, e.g. an evaluation report uploaded
as evidence) — the format (json or csv; from the name's extension when left out), the field (a dotted
path into the JSON, or a CSV column, with an optional row selector column=value: the last matching
row; the last row by default), the operator and the threshold.

At most 10 MiB is read. A missing object or field, or a value that is not a number, is an `error`
result: the probe could not measure, which is not non-compliance.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from sqlalchemy import and_, select

from governance.models.enums import ResultOutcome
from governance.models.evidence import Evidence, EvidenceRevision
from governance.probes import CheckSpec, ConfigError, Observation, RunContext, TransientProbeError, register
from governance.probes import _util as u
from governance.probes.http_endpoint import FetchError, fetch, validate_url
from governance.storage import StorageError

READ_LIMIT = 10 * 1024 * 1024
SOURCES = ("s3", "url", "evidence")
FORMATS = ("json", "csv")
OPERATORS = (">=", "<=", ">", "<", "==")
URL_TIMEOUT_S = 15.0


class ReadFailed(Exception):
    """The document could not be read or the field not found: an `error` result (transient: the
    store or the URL may answer on a retry)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass
class _EvidenceObject:
    bucket: str
    key: str
    version_id: str | None
    filename: str
    content_type: str
    number: int
    deleted: bool


def format_of(name: str, content_type: str | None = None) -> str | None:
    """json or csv from a file name's extension, else from its content type; None when neither says."""
    ext = posixpath.splitext(name.lower())[1]
    if ext in (".json", ".csv"):
        return ext[1:]
    if content_type:
        if "json" in content_type:
            return "json"
        if "csv" in content_type:
            return "csv"
    return None


def reading_parameters(parameters: Mapping[str, Any], fmt: str | None) -> dict[str, Any]:
    """The clean field, row, operator and threshold of a check reading a number from a document of
    format fmt (None: not known yet), or ConfigError beside the first bad one."""
    clean: dict[str, Any] = {}
    field = u.text_value(parameters, "field", required=True, max_len=500, label="Field")
    assert field is not None
    if fmt != "csv":
        field = u.json_path_value({"field": field}, "field") or field
    clean["field"] = field
    row = u.text_value(parameters, "row", max_len=500)
    if row is not None:
        if fmt == "json":
            raise ConfigError("row", "A row selector applies to CSV only.")
        column, sep, _value = row.partition("=")
        if not sep or not column.strip():
            raise ConfigError("row", "Write column=value, e.g. model=prod.")
        clean["row"] = row
    clean["operator"] = u.choice_value(parameters, "operator", OPERATORS, required=True)
    clean["threshold"] = u.number_value(parameters, "threshold")
    return clean


def read_object(storage: Any, key: str, version_id: str | None, shown: str) -> bytes:
    """An object (version) of the store, at most READ_LIMIT bytes; ReadFailed otherwise."""
    try:
        info = storage.stat(key, version_id)
        if info is None:
            raise ReadFailed(f"No object {shown} in the store.")
        if info.size > READ_LIMIT:
            raise ReadFailed(f"{shown} is {info.size:,} bytes; at most {READ_LIMIT // (1024 * 1024)} MiB is read.")
        data = bytearray()
        for chunk in storage.open_stream(key, version_id):
            data += chunk
            if len(data) > READ_LIMIT:
                raise ReadFailed(f"{shown} is larger than {READ_LIMIT // (1024 * 1024)} MiB.")
        return bytes(data)
    except StorageError as exc:
        raise ReadFailed(f"{shown}: {exc}", transient="unreachable" in str(exc)) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ReadFailed(f"{shown}: the object store could not be reached ({type(exc).__name__})",
                         transient=True) from None


def extract(data: bytes, fmt: str, field: str, row: Any) -> Any:
    """The value of field in a JSON (dotted path) or CSV (column; the last row, or the last one
    matching row = "column=value") document; ReadFailed when it is not there."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReadFailed("The document is not UTF-8 text.") from None
    if fmt == "json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ReadFailed(f"The document is not valid JSON ({exc}).") from None
        try:
            return u.lookup(document, field)
        except u.MissingField as exc:
            raise ReadFailed(f"The JSON has no field {exc.args[0]}.") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    if field not in columns:
        raise ReadFailed(f"The CSV has no column {field!r} (columns: {', '.join(columns[:10]) or 'none'}).")
    selected: dict[str, Any] | None = None
    if row:
        column, _sep, wanted = str(row).partition("=")
        column, wanted = column.strip(), wanted.strip()
        if column not in columns:
            raise ReadFailed(f"The CSV has no column {column!r} to select the row by.")
        for line in reader:
            if (line.get(column) or "").strip() == wanted:
                selected = line
        if selected is None:
            raise ReadFailed(f"No row of the CSV has {column} = {wanted}.")
    else:
        for line in reader:
            selected = line
        if selected is None:
            raise ReadFailed("The CSV has no rows.")
    return selected.get(field)


def judge(check_id: uuid.UUID, value: Any, *, field: str, operator: str, threshold: Any,
          expected: Any, resource: str | None) -> Observation:
    """The observation for a value read from a document: an error when it is not a number, else
    compliant when value <operator> threshold holds."""
    number = u.to_number(value)
    if number is None:
        return Observation(check_id, ResultOutcome.ERROR, observed=u.jsonable(value), expected=expected,
                           message=f"{field} is {u.short(value)}, not a number.", resource=resource)
    ok = u.compare(number, operator, threshold)
    return Observation(
        check_id, ResultOutcome.COMPLIANT if ok else ResultOutcome.NON_COMPLIANT, observed=number,
        expected=expected, resource=resource,
        message=f"{field} = {number:g} (threshold {operator} {threshold:g})"
                f"{'' if ok else ': not met'}.",
    )


class MetricThreshold:
    name = "metric_threshold"
    label = "Metric threshold"
    description = "A number read from a JSON or CSV document (object store, URL or evidence) meets a threshold."
    config_fields: u.Fields = ()
    parameter_fields: u.Fields = (
        ("source", "Source", "s3 (a key in the evidence bucket), url, or evidence (an evidence id); "
                             "default: whichever of the three fields below is filled in.", False),
        ("key", "Object key", "For source s3, e.g. metrics/model-a/latest.json.", False),
        ("url", "URL", "For source url.", False),
        ("evidence", "Evidence id", "For source evidence: its current revision is read.", False),
        ("format", "Format", "json or csv; default from the name's extension.", False),
        ("field", "Field", "JSON: a dotted path such as metrics.accuracy; CSV: a column name.", True),
        ("row", "Row (CSV)", "Optional column=value selecting the last matching row; default the last row.",
         False),
        ("operator", "Operator", "One of >=, <=, >, <, ==.", True),
        ("threshold", "Threshold", "A number, e.g. 0.9.", True),
    )
    secret_fields: tuple[str, ...] = ()

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        source = u.choice_value(parameters, "source", SOURCES)
        if source is None:
            given = [s for s in ("key", "url", "evidence") if not u.blank(parameters.get(s))]
            if len(given) != 1:
                raise ConfigError("source", "Choose s3, url or evidence, and fill in its field.")
            source = {"key": "s3", "url": "url", "evidence": "evidence"}[given[0]]
        clean: dict[str, Any] = {"source": source}
        name = ""
        if source == "s3":
            key = u.text_value(parameters, "key", required=True, max_len=1024, label="Object key")
            assert key is not None
            if key.startswith("/") or "\x00" in key:
                raise ConfigError("key", "Give the key without a leading /, e.g. metrics/latest.json.")
            clean["key"] = name = key
        elif source == "url":
            clean["url"] = validate_url(parameters.get("url"))
            name = urlsplit(clean["url"]).path
        else:
            clean["evidence"] = u.uuid_value(parameters, "evidence")
        fmt = u.choice_value(parameters, "format", FORMATS)
        if fmt is None and source != "evidence":
            fmt = format_of(name)
            if fmt is None:
                raise ConfigError("format", "The name does not end in .json or .csv: choose json or csv.")
        if fmt is not None:
            clean["format"] = fmt
        clean.update(reading_parameters(parameters, fmt))
        return clean

    def public_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def restore_secrets(self, config: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def run(self, ctx: RunContext, config: Mapping[str, Any], checks: list[CheckSpec]) -> list[Observation]:
        evidence = self._evidence_objects(ctx, checks)
        observations: list[Observation] = []
        transient: list[str] = []
        for check in checks:
            observation, failure = self._check(ctx, check, evidence)
            observations.append(observation)
            if failure:
                transient.append(failure)
        if checks and len(transient) == len(checks):
            raise TransientProbeError(f"{len(transient)} of {len(checks)} checks could not read their "
                                      f"document; first: {transient[0]}")
        return observations

    def _evidence_objects(self, ctx: RunContext, checks: list[CheckSpec]) -> dict[str, _EvidenceObject]:
        """The current revision's object of every evidence the checks read: one query."""
        ids = set()
        for check in checks:
            if check.parameters.get("source") == "evidence":
                try:
                    ids.add(uuid.UUID(str(check.parameters.get("evidence"))))
                except ValueError:
                    continue
        if not ids:
            return {}
        rows = ctx.session.execute(
            select(Evidence.id, Evidence.deleted_at, EvidenceRevision.bucket, EvidenceRevision.object_key,
                   EvidenceRevision.version_id, EvidenceRevision.filename, EvidenceRevision.content_type,
                   EvidenceRevision.number)
            .join(EvidenceRevision, and_(EvidenceRevision.evidence_id == Evidence.id,
                                         EvidenceRevision.number == Evidence.revision_number))
            .where(Evidence.id.in_(ids))
        ).all()
        return {str(r.id): _EvidenceObject(r.bucket, r.object_key, r.version_id, r.filename, r.content_type,
                                           r.number, r.deleted_at is not None) for r in rows}

    def _check(self, ctx: RunContext, check: CheckSpec,
               evidence: Mapping[str, _EvidenceObject]) -> tuple[Observation, str | None]:
        params = check.parameters
        operator = str(params.get("operator") or ">=")
        threshold = params.get("threshold")
        field = str(params.get("field") or "")
        expected = {"operator": operator, "threshold": threshold, "field": field}
        resource = self._resource(params)
        try:
            data, fmt, resource = self._read(ctx, params, evidence)
            value = self._extract(data, fmt, field, params.get("row"))
        except ReadFailed as exc:
            return Observation(check.id, ResultOutcome.ERROR, expected=expected, message=exc.message,
                               resource=resource), (exc.message if exc.transient else None)
        return judge(check.id, value, field=field, operator=operator, threshold=threshold, expected=expected,
                     resource=resource), None

    @staticmethod
    def _resource(params: Mapping[str, Any]) -> str:
        source = params.get("source")
        if source == "s3":
            return f"s3:{params.get('key')}"
        if source == "url":
            return u.mask_url(str(params.get("url") or ""))
        return f"evidence:{params.get('evidence')}"

    def _read(self, ctx: RunContext, params: Mapping[str, Any],
              evidence: Mapping[str, _EvidenceObject]) -> tuple[bytes, str, str]:
        source = params.get("source")
        fmt = params.get("format")
        if source == "url":
            url = str(params.get("url") or "")
            shown = u.mask_url(url)
            try:
                answer = fetch(url, timeout_s=min(URL_TIMEOUT_S, max(ctx.timeout_s, 1)), limit=READ_LIMIT)
            except FetchError as exc:
                raise ReadFailed(f"GET {shown}: {exc.message}", transient=exc.transient) from None
            if answer.status != 200:
                raise ReadFailed(f"GET {shown} answered {answer.status}", transient=answer.status >= 500)
            fmt = fmt or format_of(urlsplit(url).path, answer.content_type)
            return answer.body or b"", str(fmt or "json"), shown
        if source == "s3":
            key = str(params.get("key") or "")
            return self._object(ctx, key, None, f"s3:{key}"), str(fmt or format_of(key) or "json"), f"s3:{key}"
        evidence_id = str(params.get("evidence"))
        found = evidence.get(evidence_id)
        resource = f"evidence:{evidence_id}"
        if found is None or found.deleted:
            raise ReadFailed(f"Evidence {evidence_id} does not exist (any more) or has no file.")
        resource = f"evidence:{evidence_id} revision {found.number}"
        if found.bucket != ctx.storage.bucket:
            raise ReadFailed(f"Evidence {evidence_id} is in bucket {found.bucket}, not in the evidence bucket.")
        fmt = fmt or format_of(found.filename, found.content_type)
        if fmt is None:
            raise ReadFailed(f"Cannot tell whether {found.filename} is JSON or CSV: set the format of the check.")
        return self._object(ctx, found.key, found.version_id, resource), str(fmt), resource

    @staticmethod
    def _object(ctx: RunContext, key: str, version_id: str | None, shown: str) -> bytes:
        return read_object(ctx.storage, key, version_id, shown)

    @staticmethod
    def _extract(data: bytes, fmt: str, field: str, row: Any) -> Any:
        return extract(data, fmt, field, row)


KIND = register(MetricThreshold())
