"""The metric_threshold probe kind on real documents: JSON and CSV objects in the test bucket, a CSV
served by a local HTTP server, and an evaluation report stored as evidence."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from governance.models.enums import ResultOutcome
from governance.probes import CheckSpec, ConfigError, RunContext, TransientProbeError, get
from governance.storage import Storage

KIND = get("metric_threshold")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
EVAL_JSON = {"model": "credit-v3", "metrics": {"accuracy": 0.93, "fairness": {"dpd": 0.14}}, "label": "n/a",
             "runs": [{"auc": 0.81}, {"auc": 0.88}]}
EVAL_CSV = "model,accuracy,dpd\nbaseline,0.80,0.02\nprod,0.91,0.08\ncandidate,0.95,0.12\n"


def _check(**params: Any) -> CheckSpec:
    return CheckSpec(id=uuid.uuid4(), name="m", parameters=KIND.validate_parameters(params),
                     control_ids=(uuid.uuid4(),))


def _run(db_session: Any, storage: Storage, checks: list[CheckSpec]) -> list[Any]:
    ctx = RunContext(session=db_session(), storage=storage, settings=None, now=NOW, probe_id=uuid.uuid4(),
                     probe_name="metrics")
    return KIND.run(ctx, KIND.validate_config({}), checks)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = self.server.routes.get(self.path, (404, b"missing"))  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[Any]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes = {}  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_json_and_csv_objects_in_the_bucket(db_session: Any, storage: Storage) -> None:
    storage.put("metrics/eval.json", json.dumps(EVAL_JSON).encode(), content_type="application/json")
    storage.put("metrics/eval.csv", EVAL_CSV.encode(), content_type="text/csv")
    storage.put("metrics/latest", json.dumps({"accuracy": 0.5}).encode())
    checks = [
        _check(source="s3", key="metrics/eval.json", field="metrics.accuracy", operator=">=", threshold="0.9"),
        _check(key="metrics/eval.json", field="metrics.fairness.dpd", operator="<=", threshold="0.1"),
        _check(key="metrics/eval.json", field="runs.-1.auc", operator=">", threshold="0.85"),
        _check(key="metrics/eval.csv", field="accuracy", operator=">=", threshold="0.9"),
        _check(key="metrics/eval.csv", field="dpd", row="model=prod", operator="<=", threshold="0.1"),
        _check(key="metrics/eval.csv", field="accuracy", row="model = baseline", operator=">=", threshold="0.9"),
        _check(key="metrics/latest", format="json", field="accuracy", operator="==", threshold="0.5"),
    ]
    got = _run(db_session, storage, checks)
    assert [o.outcome for o in got] == [
        ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT, ResultOutcome.COMPLIANT, ResultOutcome.COMPLIANT,
        ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT, ResultOutcome.COMPLIANT,
    ]
    assert got[0].observed == 0.93
    assert got[0].expected == {"operator": ">=", "threshold": 0.9, "field": "metrics.accuracy"}
    assert got[0].resource == "s3:metrics/eval.json"
    assert got[1].message == "metrics.fairness.dpd = 0.14 (threshold <= 0.1): not met."
    assert got[3].observed == 0.95  # the last row by default
    assert got[4].observed == 0.08
    assert got[5].observed == 0.8


def test_what_cannot_be_measured_is_an_error_not_non_compliance(db_session: Any, storage: Storage) -> None:
    storage.put("m/eval.json", json.dumps(EVAL_JSON).encode())
    storage.put("m/eval.csv", EVAL_CSV.encode())
    storage.put("m/broken.json", b"{not json")
    storage.put("m/empty.csv", b"model,accuracy\n")
    storage.put("m/big.json", b" " * (10 * 1024 * 1024 + 1))
    checks = [
        _check(key="m/nothing-here.json", field="a", operator=">=", threshold=1),
        _check(key="m/eval.json", field="metrics.recall", operator=">=", threshold=1),
        _check(key="m/eval.json", field="label", operator=">=", threshold=1),
        _check(key="m/eval.json", field="metrics", operator=">=", threshold=1),
        _check(key="m/broken.json", field="a", operator=">=", threshold=1),
        _check(key="m/eval.csv", field="recall", operator=">=", threshold=1),
        _check(key="m/eval.csv", field="accuracy", row="model=none", operator=">=", threshold=1),
        _check(key="m/empty.csv", field="accuracy", operator=">=", threshold=1),
        _check(key="m/big.json", field="a", operator=">=", threshold=1),
    ]
    got = _run(db_session, storage, checks)
    assert {o.outcome for o in got} == {ResultOutcome.ERROR}
    messages = [o.message for o in got]
    assert "No object s3:m/nothing-here.json" in messages[0]
    assert "no field metrics.recall" in messages[1]
    assert messages[2] == 'label is "n/a", not a number.'
    assert "not a number" in messages[3]
    assert "not valid JSON" in messages[4]
    assert "no column 'recall' (columns: model, accuracy, dpd)" in messages[5]
    assert "No row of the CSV has model = none" in messages[6]
    assert "no rows" in messages[7]
    assert "at most 10 MiB is read" in messages[8]


def test_a_url_source_and_an_unreachable_one(db_session: Any, storage: Storage, web: Any) -> None:
    web.routes["/reports/eval.csv"] = (200, EVAL_CSV.encode())
    web.routes["/reports/down.json"] = (503, b"busy")
    base = f"http://127.0.0.1:{web.server_port}/reports"
    ok = _check(source="url", url=f"{base}/eval.csv", field="dpd", operator="<=", threshold="0.2")
    gone = _check(url=f"{base}/missing.json", field="a", operator=">=", threshold=1)
    down = _check(url=f"{base}/down.json", field="a", operator=">=", threshold=1)
    got = _run(db_session, storage, [ok, gone, down])
    assert [o.outcome for o in got] == [ResultOutcome.COMPLIANT, ResultOutcome.ERROR, ResultOutcome.ERROR]
    assert got[0].observed == 0.12 and got[0].resource == f"{base}/eval.csv"
    assert "answered 404" in got[1].message
    with pytest.raises(TransientProbeError, match="1 of 1 checks could not read"):
        _run(db_session, storage, [down])


def test_an_evaluation_stored_as_evidence(db_session: Any, storage: Storage, make_user: Any, make_control: Any,
                                          make_evidence: Any) -> None:
    engineer = make_user("engineer")
    report = make_evidence(engineer, json.dumps(EVAL_JSON).encode(), name="Evaluation Q3", control=make_control(),
                           filename="eval.json", content_type="application/json")
    table = make_evidence(engineer, EVAL_CSV.encode(), name="Fairness table", filename="fairness.csv",
                          content_type="text/csv")
    unknown = make_evidence(engineer, b"%PDF-1.4", name="A PDF")
    checks = [
        _check(source="evidence", evidence=str(report.id), field="metrics.accuracy", operator=">=", threshold="0.9"),
        _check(evidence=str(table.id), field="dpd", row="model=candidate", operator="<=", threshold="0.1"),
        _check(evidence=str(uuid.uuid4()), field="a", operator=">=", threshold=1),
        _check(evidence=str(unknown.id), field="a", operator=">=", threshold=1),
    ]
    got = _run(db_session, storage, checks)
    assert [o.outcome for o in got] == [ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT, ResultOutcome.ERROR,
                                        ResultOutcome.ERROR]
    assert got[0].resource == f"evidence:{report.id} revision 1"
    assert got[1].observed == 0.12
    assert "does not exist" in got[2].message
    assert "set the format of the check" in got[3].message


@pytest.mark.parametrize(("params", "field"), [
    ({"field": "a", "operator": ">=", "threshold": 1}, "source"),
    ({"key": "a.json", "url": "https://x.org/a.json", "field": "a", "operator": ">=", "threshold": 1}, "source"),
    ({"source": "ftp", "field": "a", "operator": ">=", "threshold": 1}, "source"),
    ({"source": "s3", "field": "a", "operator": ">=", "threshold": 1}, "key"),
    ({"key": "/abs.json", "field": "a", "operator": ">=", "threshold": 1}, "key"),
    ({"key": "metrics.parquet", "field": "a", "operator": ">=", "threshold": 1}, "format"),
    ({"key": "a.json", "format": "xml", "field": "a", "operator": ">=", "threshold": 1}, "format"),
    ({"url": "file:///etc/passwd", "field": "a", "operator": ">=", "threshold": 1}, "url"),
    ({"evidence": "not-a-uuid", "field": "a", "operator": ">=", "threshold": 1}, "evidence"),
    ({"key": "a.json", "operator": ">=", "threshold": 1}, "field"),
    ({"key": "a.json", "field": "a..b", "operator": ">=", "threshold": 1}, "field"),
    ({"key": "a.json", "field": "a", "row": "x=1", "operator": ">=", "threshold": 1}, "row"),
    ({"key": "a.csv", "field": "a", "row": "no-equals", "operator": ">=", "threshold": 1}, "row"),
    ({"key": "a.csv", "field": "a", "operator": "contains", "threshold": 1}, "operator"),
    ({"key": "a.csv", "field": "a", "threshold": 1}, "operator"),
    ({"key": "a.csv", "field": "a", "operator": ">=", "threshold": "high"}, "threshold"),
    ({"key": "a.csv", "field": "a", "operator": ">=", "threshold": "nan"}, "threshold"),
])
def test_bad_parameters_are_refused_beside_their_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        KIND.validate_parameters(params)
    assert refused.value.field == field


def test_form_text_becomes_typed_values() -> None:
    assert KIND.validate_parameters({"source": "", "key": " m/eval.CSV ", "url": "", "evidence": "", "format": "",
                                     "field": "accuracy", "row": "", "operator": ">=", "threshold": "0.90"}) == {
        "source": "s3", "key": "m/eval.CSV", "format": "csv", "field": "accuracy", "operator": ">=",
        "threshold": 0.9}
    evidence_id = uuid.uuid4()
    assert KIND.validate_parameters({"evidence": str(evidence_id).upper(), "field": "a.b", "operator": "<",
                                     "threshold": "1"})["evidence"] == str(evidence_id)
