"""The audit-log pages: filters (each and together), keyset pages newer/older at a fixed statement count,
an entry expanded in place with its before/after diff, filter errors beside their field, who may see
them, escaping, and the streamed, audited CSV export."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from blueprints.audit import routes as audit_routes
from extensions import db
from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.services import audit_queries
from tests.conftest import count_statements

HX = {"HX-Request": "true"}
# Every entry a test makes lies in this year, and every list the tests read is bounded to it, so the
# sign-ins and other entries of the test itself never show up in what is compared.
YEAR = 2001
IN_YEAR = {"from": f"{YEAR}-01-01", "to": f"{YEAR}-12-31"}
T0 = datetime(YEAR, 3, 1, 12, 0, tzinfo=UTC)


def _entry(at: datetime, action: str = "evidence.review", *, actor: Any = None, object_type: str = "evidence",
           object_id: str = "e-1", outcome: AuditOutcome = AuditOutcome.SUCCESS,
           details: dict[str, Any] | None = None, actor_name: str | None = None) -> AuditLog:
    row = AuditLog(created_at=at, actor_id=actor.id if actor else None,
                   actor_name=actor_name or (actor.email if actor else "system"), action=action,
                   object_type=object_type, object_id=object_id, outcome=outcome, ip="192.0.2.10",
                   request_id=uuid.uuid4().hex, details=details or {})
    db.session.add(row)
    db.session.flush()
    return row


def _ids(html: str) -> list[str]:
    return re.findall(r'<tbody id="audit-entry-([0-9a-f-]{36})"', html)


def _get(client: Any, **args: str) -> Any:
    return client.get("/audit", query_string={**IN_YEAR, **args})


def _link(html: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}"', html)
    return match.group(1).replace("&amp;", "&") if match else None


@pytest.fixture
def people(make_user: Any) -> dict[str, Any]:
    return {"ana": make_user("engineer", email="ana.lopez@example.test"),
            "bo": make_user("compliance_officer", email="bo.berg@example.test")}


@pytest.fixture
def log(people: dict[str, Any]) -> dict[str, AuditLog]:
    """Eight entries over 2001, oldest first."""
    ana, bo = people["ana"], people["bo"]
    rows = {
        "upload": _entry(T0, "evidence.upload", actor=ana, object_id="e-1"),
        "review": _entry(T0 + timedelta(days=1), "evidence.review", actor=bo, object_id="e-1"),
        "denied": _entry(T0 + timedelta(days=2), "evidence.review", actor=ana, object_id="e-2",
                         outcome=AuditOutcome.DENIED),
        "control": _entry(T0 + timedelta(days=3), "control.update", actor=bo, object_type="control",
                          object_id="c-9"),
        "error": _entry(T0 + timedelta(days=4), "probe.run", object_type="probe", object_id="p-1",
                        outcome=AuditOutcome.ERROR),
        "evidence_like": _entry(T0 + timedelta(days=5), "evidencex.other", actor=ana, object_id="e-1"),
        "april": _entry(datetime(YEAR, 4, 30, 23, 59, 30, tzinfo=UTC), "control.update", actor=ana,
                        object_type="control", object_id="c-9"),
        "may": _entry(datetime(YEAR, 5, 1, 0, 0, tzinfo=UTC), "evidence.link", actor=bo, object_id="e-2"),
    }
    db.session.commit()
    return rows


def _names(log: dict[str, AuditLog], html: str) -> list[str]:
    by_id = {str(e.id): name for name, e in log.items()}
    return [by_id.get(i, i) for i in _ids(html)]


# --- the list and its filters ---------------------------------------------------------------------


def test_the_auditor_sees_entries_newest_first_with_their_fields(client: Any, login_as: Any, log: Any) -> None:
    login_as("auditor")
    response = _get(client)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert _names(log, html) == ["may", "april", "evidence_like", "error", "control", "denied", "review", "upload"]
    assert "ana.lopez@example.test" in html and "control.update" in html and "c-9" in html
    assert "192.0.2.10" in html and "Denied" in html
    # The form keeps what was typed, and an export link carries the same filters.
    assert f'value="{YEAR}-01-01"' in html
    assert f"/audit/export.csv?from={YEAR}-01-01&amp;to={YEAR}-12-31" in html


@pytest.mark.parametrize(("args", "expected"), [
    ({"actor": "ana.lopez@example.test"}, ["april", "evidence_like", "denied", "upload"]),
    ({"actor": "ANA.LOPEZ@EXAMPLE.TEST"}, ["april", "evidence_like", "denied", "upload"]),
    ({"actor": "bo.berg"}, ["may", "control", "review"]),  # part of an e-mail address, one match
    ({"action": "evidence.review"}, ["denied", "review"]),
    ({"action": "evidence."}, ["may", "denied", "review", "upload"]),  # a prefix, not evidencex.*
    ({"action": "evidence.re*"}, ["denied", "review"]),
    ({"object_type": "control"}, ["april", "control"]),
    ({"object_type": "evidence", "object_id": "e-2"}, ["may", "denied"]),
    ({"outcome": "denied"}, ["denied"]),
    ({"outcome": "error"}, ["error"]),
    ({"outcome": "success"}, ["may", "april", "evidence_like", "control", "review", "upload"]),
    ({"from": f"{YEAR}-04-30", "to": f"{YEAR}-04-30"}, ["april"]),  # a date "to" includes its whole day
    ({"from": f"{YEAR}-05-01T00:00"}, ["may"]),
    ({"to": f"{YEAR}-04-30 23:59"}, ["april", "evidence_like", "error", "control", "denied", "review", "upload"]),
    ({"to": f"{YEAR}-04-30 23:59:29"}, ["evidence_like", "error", "control", "denied", "review", "upload"]),
    ({"from": f"{YEAR}-03-02 14:00+02:00", "to": f"{YEAR}-03-03"}, ["denied", "review"]),  # 12:00 UTC
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_each_filter(client: Any, login_as: Any, log: Any, args: dict[str, str], expected: list[str]) -> None:
    login_as("auditor")
    response = _get(client, **args)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _names(log, response.get_data(as_text=True)) == expected


def test_filters_combine(client: Any, login_as: Any, log: Any) -> None:
    login_as("admin")
    html = _get(client, actor="ana.lopez@example.test", action="evidence.", outcome="success").get_data(as_text=True)
    assert _names(log, html) == ["upload"]
    html = _get(client, actor="Bo", object_type="control", object_id="c-9", to=f"{YEAR}-03-31").get_data(as_text=True)
    assert _names(log, html) == ["control"]
    html = _get(client, actor="ana.lopez@example.test", outcome="error").get_data(as_text=True)
    assert _ids(html) == [] and "No entries match these filters." in html


def test_an_htmx_filter_swaps_the_list_and_the_form_only(client: Any, login_as: Any, log: Any) -> None:
    login_as("auditor")
    html = client.get("/audit", query_string={**IN_YEAR, "outcome": "denied"}, headers=HX).get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith('<div id="audit-page">')
    assert 'id="audit-filters"' in html and 'hx-push-url="true"' in html
    assert _names(log, html) == ["denied"]


# --- keyset pages ---------------------------------------------------------------------------------


def test_older_and_newer_pages_walk_the_log_both_ways(client: Any, login_as: Any, monkeypatch: Any) -> None:
    login_as("auditor")
    made = [str(_entry(T0 + timedelta(minutes=i)).id) for i in range(7)]
    db.session.commit()
    newest_first = list(reversed(made))
    monkeypatch.setattr(audit_routes, "PAGE_SIZE", 3)

    first = _get(client).get_data(as_text=True)
    assert _ids(first) == newest_first[:3] and _link(first, "prev") is None
    second = client.get(_link(first, "next"), headers=HX).get_data(as_text=True)
    assert _ids(second) == newest_first[3:6]
    third = client.get(_link(second, "next")).get_data(as_text=True)
    assert _ids(third) == newest_first[6:] and _link(third, "next") is None
    # Back up again with "newer".
    back = client.get(_link(third, "prev")).get_data(as_text=True)
    assert _ids(back) == newest_first[3:6]
    top = client.get(_link(back, "prev")).get_data(as_text=True)
    assert _ids(top) == newest_first[:3] and _link(top, "prev") is None and _link(top, "next")


def test_a_deep_page_runs_the_same_statements_as_the_first(client: Any, login_as: Any, monkeypatch: Any,
                                                           people: Any) -> None:
    login_as("auditor")
    monkeypatch.setattr(audit_routes, "PAGE_SIZE", 3)
    for i in range(5):
        _entry(T0 + timedelta(minutes=i))
    db.session.commit()

    def statements(url: str, **args: str) -> tuple[int, str]:
        with count_statements() as seen:
            response = client.get(url, query_string=args or None)
        assert response.status_code == 200
        assert not any("OFFSET" in s.upper() for s in seen)
        return len(seen), response.get_data(as_text=True)

    _get(client)  # the first request after signing in also loads the access rules
    small, _html = statements("/audit", **IN_YEAR)
    for i in range(5, 40):
        _entry(T0 + timedelta(minutes=i), actor_name=f"bulk-{i}")
    db.session.commit()
    large, html = statements("/audit", **IN_YEAR)
    url: str | None = _link(html, "next")
    depth = 0
    while url and depth < 10:
        deep, html = statements(url)
        assert deep == large, (depth, deep, large)
        url, depth = _link(html, "next"), depth + 1
    assert depth == 10 and small == large
    # An actor filter costs one statement more (finding the person), at any size.
    with_actor, _ = statements("/audit", actor=people["ana"].email, **IN_YEAR)
    assert with_actor == large + 1
    assert large <= 8


# --- one entry, expanded in place ---------------------------------------------------------------------


def test_an_entry_expands_in_place_with_its_fields_and_a_before_after_diff(client: Any, login_as: Any,
                                                                          people: Any) -> None:
    login_as("auditor")
    entry = _entry(T0, "control.update", actor=people["bo"], object_type="control", object_id="c-1", details={
        "before": {"status": "draft", "owner": {"id": 1, "name": "A"}, "tags": ["x"], "gone": 1},
        "after": {"status": "active", "owner": {"id": 2, "name": "A"}, "tags": ["x", "y"], "new": True},
        "reason": {"ticket": "GOV-7"},
    })
    db.session.commit()
    url = f"/audit/{entry.id}?created_at={entry.created_at.isoformat()}"
    list_html = _get(client).get_data(as_text=True)
    assert f'hx-get="{url.replace("+", "%2B")}"' in list_html or f'hx-get="/audit/{entry.id}?' in list_html

    html = client.get(url, headers=HX).get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith(f'<tbody id="audit-entry-{entry.id}"')
    assert 'aria-expanded="true"' in html and f'id="audit-detail-{entry.id}"' in html
    rows = {key: change for change, key in
            re.findall(r'<tr class="diff-(\w+)">\s*<th scope="row"><code>([^<]+)</code>', html)}
    assert rows == {"gone": "removed", "new": "added", "owner.id": "changed", "owner.name": "unchanged",
                    "status": "changed", "tags[0]": "unchanged", "tags[1]": "added"}
    assert "<del><code>&#34;draft&#34;</code></del>" in html and "<ins><code>&#34;active&#34;</code></ins>" in html
    assert "(5 keys differ)" in html
    # Every column, and the other details flattened.
    for field in ("request id", "actor name", "object type", "user agent", "created at"):
        assert f"<dt>{field}</dt>" in html
    assert "reason.ticket" in html and "GOV-7" in html

    collapsed = client.get(url + "&collapsed=1", headers=HX).get_data(as_text=True)
    assert 'aria-expanded="false"' in collapsed and "audit-detail-row" not in collapsed
    # Without htmx (a bookmark, no JavaScript): a page of its own.
    page = client.get(f"/audit/{entry.id}").get_data(as_text=True)
    assert "<html" in page and "(5 keys differ)" in page


def test_an_entry_expands_with_a_fixed_number_of_statements(client: Any, login_as: Any) -> None:
    login_as("auditor")
    small = _entry(T0, details={"before": {"a": 1}, "after": {"a": 2}})
    large = _entry(T0, details={"before": {f"k{i}": i for i in range(200)}, "after": {f"k{i}": -i for i in range(200)}})
    db.session.commit()
    urls = [f"/audit/{e.id}?created_at={e.created_at.isoformat()}".replace("+", "%2B") for e in (small, large)]
    _get(client)  # the first request after signing in also loads the access rules
    counts = []
    for url in urls:
        with count_statements() as seen:
            assert client.get(url, headers=HX).status_code == 200
        counts.append(len(seen))
    assert counts[0] == counts[1]


def test_unknown_or_mismatched_entries_are_not_found(client: Any, login_as: Any) -> None:
    login_as("auditor")
    entry = _entry(T0)
    db.session.commit()
    assert client.get(f"/audit/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/audit/{entry.id}?created_at=not-a-time").status_code == 404
    assert client.get(f"/audit/{entry.id}?created_at={(T0 + timedelta(seconds=1)).isoformat()}").status_code == 404
    assert client.get(f"/audit/{entry.id}?created_at=2001-03-01T12:00:00").status_code == 404  # no offset
    assert client.get(f"/audit/{entry.id}").status_code == 200


# --- bad filter values: 4xx with the message beside the field -----------------------------------------


@pytest.mark.parametrize(("args", "field", "message"), [
    ({"from": "yesterday"}, "from", "Enter a date"),
    ({"to": "2001-02-30"}, "to", "There is no such date."),
    ({"from": "2001-13-01 10:00"}, "from", "There is no such date or time."),
    ({"to": "9999-12-31"}, "to", "There is no such date."),
    ({"from": "2001-05-02", "to": "2001-05-01"}, "to", "later than"),
    ({"outcome": "maybe"}, "outcome", "Choose success, denied or error."),
    ({"object_id": "e-1"}, "object_id", "Choose an object type too"),
    ({"actor": "nobody-at-all"}, "actor", "Nobody with that name"),
    ({"actor": "example.test"}, "actor", "Several people match"),
    ({"action": "***"}, "action", "Enter an action"),
    ({"action": "evidence\x00review"}, "action", "not allowed"),
    ({"object_type": "x" * 65}, "object_type", "at most 64"),
])
def test_a_bad_filter_is_refused_beside_its_field(client: Any, login_as: Any, people: Any, args: dict[str, str],
                                                  field: str, message: str) -> None:
    login_as("auditor")
    for headers in ({}, HX):
        response = client.get("/audit", query_string=args, headers=headers)
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        beside = re.search(rf'<p class="field-error" id="audit-{field}-error">([^<]+)</p>', html)
        assert beside and message in beside.group(1).replace("&#34;", '"'), html
        assert 'aria-describedby="' in html and 'aria-invalid="true"' in html
        assert _ids(html) == []


def test_an_ambiguous_actor_lists_who_matches(client: Any, login_as: Any, people: Any) -> None:
    login_as("auditor")
    html = client.get("/audit", query_string={"actor": "example.test"}).get_data(as_text=True)
    assert "ana.lopez@example.test" in html and "bo.berg@example.test" in html


def test_a_tampered_page_link_is_a_clear_400(client: Any, login_as: Any) -> None:
    login_as("auditor")
    for cursor in ("older=garbage", "newer=2001-01-01T00:00:00_notauuid", f"older=2001-01-01T00:00:00_{uuid.uuid4()}"
                   f"&newer=2001-01-01T00:00:00%2B00:00_{uuid.uuid4()}"):
        response = client.get(f"/audit?{cursor}")
        assert response.status_code == 400
        assert "This page link is not valid" in response.get_data(as_text=True)


# --- who may see it, and escaping ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["engineer", "compliance_officer"])
def test_other_roles_are_refused(client: Any, login_as: Any, role: str) -> None:
    login_as(role)
    entry = _entry(T0)
    db.session.commit()
    for url in ("/audit", f"/audit/{entry.id}", "/audit/export.csv"):
        assert client.get(url).status_code == 403, url


def test_details_render_escaped(client: Any, login_as: Any) -> None:
    login_as("auditor")
    script = "<script>alert('x')</script>"
    entry = _entry(T0, action="evidence.review", actor_name=script, object_id=script,
                   details={"note": script, script: 1, "before": {"title": script}, "after": {"title": "ok"}})
    db.session.commit()
    pages = [_get(client).get_data(as_text=True),
             client.get(f"/audit/{entry.id}", headers=HX).get_data(as_text=True),
             client.get(f"/audit/{entry.id}").get_data(as_text=True)]
    for html in pages:
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(" in html


# --- the CSV export ----------------------------------------------------------------------------------------


def _bulk(count: int, start: datetime, **values: Any) -> None:
    rows = [{"created_at": start + timedelta(seconds=i), "actor_name": values.get("actor_name", f"user{i % 7}"),
             "action": values.get("action", "evidence.download" if i % 2 else "evidence.review"),
             "object_type": "evidence", "object_id": f"e-{i}", "outcome": AuditOutcome.SUCCESS,
             "details": {"n": i}} for i in range(count)]
    db.session.execute(insert(AuditLog), rows)
    db.session.commit()


def test_the_export_streams_every_matching_row_in_order_and_is_audited(client: Any, login_as: Any,
                                                                        monkeypatch: Any) -> None:
    auditor = login_as("auditor")
    monkeypatch.setattr(audit_queries, "EXPORT_BATCH", 500)
    _bulk(4_500, T0)
    response = client.get("/audit/export.csv", query_string={**IN_YEAR, "action": "evidence.review"})
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-log-')
    # The request is on record before the first byte.
    started = db.session.scalars(select(AuditLog).where(AuditLog.action == "audit_log.export")).one()
    assert started.actor_id == auditor.id
    assert started.details["filters"] == {"action": "evidence.review", "from": f"{YEAR}-01-01T00:00:00+00:00",
                                          "until": f"{YEAR + 1}-01-01T00:00:00+00:00"}

    chunks = list(response.response)
    assert len(chunks) > 4  # several batches, not one body
    rows = list(csv.reader(io.StringIO("".join(c.decode() if isinstance(c, bytes) else c for c in chunks))))
    assert rows[0] == list(audit_queries.EXPORT_COLUMNS)
    body = rows[1:]
    assert len(body) == 2_250
    assert all(r[4] == "evidence.review" for r in body)
    stamps = [datetime.fromisoformat(r[0]) for r in body]
    assert stamps == sorted(stamps, reverse=True) and stamps[0] == T0 + timedelta(seconds=4_498)
    assert body[0][11] == '{"n": 4498}' and body[0][3] == "user4"
    response.close()

    finished = db.session.scalars(select(AuditLog).where(AuditLog.action == "audit_log.export.finished")).one()
    # The auditor's own name, IP and user agent are sealed under their person key (docs/erasure.md).
    assert {k: v for k, v in finished.details.items() if k != "sealed"} == {"rows": 2_250, "complete": True}
    assert finished.details["sealed"].startswith("sealed:v1:")
    assert finished.object_id == str(started.id) and finished.request_id == started.request_id


def test_the_export_neutralises_spreadsheet_formulas_and_refuses_bad_filters(client: Any, login_as: Any) -> None:
    login_as("admin")
    _entry(T0, actor_name="=HYPERLINK(\"http://evil\")", object_id="+1")
    db.session.commit()
    body = client.get("/audit/export.csv", query_string=IN_YEAR).get_data(as_text=True)
    row = list(csv.reader(io.StringIO(body)))[1]
    assert row[3] == "'=HYPERLINK(\"http://evil\")" and row[6] == "'+1"
    bad = client.get("/audit/export.csv", query_string={"from": "soon"})
    assert bad.status_code == 422 and "from:" in bad.get_data(as_text=True)
    assert not bad.is_streamed
