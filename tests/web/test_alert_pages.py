"""Alert pages: the list (default open + acknowledged; filters by status, severity and rule; keyset
pages), one alert with its history and task, acknowledge (optional comment) and resolve (comment
required: 422 with the error beside the field) in place with htmx and the navigation's counts out of
band, the same without JavaScript, who may do what, and statement counts that do not grow."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from blueprints.alerts import routes as alert_routes
from extensions import db
from governance.models.audit import Alert, AlertEvent, AuditLog
from governance.models.enums import AlertStatus, Severity
from governance.services import alerts
from tests.conftest import count_statements

HX = {"HX-Request": "true"}


def _raise(rule: str = alerts.CHECK_FAILING, *, title: str | None = None, severity: Severity = Severity.MEDIUM,
           subject_type: str = "check", subject_id: Any = None, owner_id: uuid.UUID | None = None,
           details: dict[str, Any] | None = None) -> Alert:
    subject_id = subject_id or uuid.uuid4()
    alert = alerts.raise_alert(db.session, rule=rule, subject_type=subject_type, subject_id=subject_id,
                               title=title or f"Alert {uuid.uuid4().hex[:6]}", severity=severity,
                               details=details, owner_id=owner_id)
    db.session.commit()
    return alert


def _token(client: FlaskClient, csrf_token: Any, url: str = "/alerts") -> str:
    return str(csrf_token(client.get(url).get_data(as_text=True)))


def _row_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="alert-([0-9a-f-]{36})"', html)


def _shown(html: str, *made: Alert) -> set[str]:
    """Which of these alerts the page lists (other tests' and the migrations' alerts aside)."""
    return set(_row_ids(html)) & {str(a.id) for a in made}


# --- the list -------------------------------------------------------------------------------------


def test_the_list_shows_active_alerts_by_default_with_their_facts(client: FlaskClient, login_as: Any,
                                                                  make_user: Any) -> None:
    login_as("auditor")
    owner = make_user("engineer")
    failing = _raise(title="Check Accuracy is failing", owner_id=owner.id, details={"check": "Accuracy"})
    _raise(title="Check Accuracy is failing", subject_id=failing.source_id)  # a repeat: one alert, 2 occurrences
    acked = _raise(alerts.EVIDENCE_EXPIRED, title="Evidence expired: Pen test", subject_type="evidence",
                   details={"name": "Pen test"})
    alerts.acknowledge(db.session, acked.id, comment="on it")
    resolved = _raise(title="Old news")
    alerts.resolve(db.session, resolved.id, comment="fixed")
    db.session.commit()

    html = client.get("/alerts").get_data(as_text=True)

    assert _shown(html, failing, acked, resolved) == {str(failing.id), str(acked.id)}
    row = re.search(rf'<tr id="alert-{failing.id}".*?</tr>', html, re.S)
    assert row is not None
    text = row.group(0)
    assert "Check Accuracy is failing" in text and "check.failing" in text and "A check is failing" in text
    assert "2\u00d7" in text and "first " in text and "last " in text
    assert owner.name in text and "Medium" in text and "Open" in text
    assert f'href="/checks/{failing.source_id}"' in text and "Check Accuracy" in text
    acked_row = re.search(rf'<tr id="alert-{acked.id}".*?</tr>', html, re.S)
    assert acked_row is not None and f'href="/evidence/{acked.source_id}"' in acked_row.group(0)
    assert "Acknowledged" in acked_row.group(0)
    # An auditor reads alerts but may not act on them: no forms.
    assert "/acknowledge" not in html and "/resolve" not in html


def test_filters_by_status_severity_and_rule(client: FlaskClient, login_as: Any) -> None:
    login_as("compliance_officer")
    medium = _raise(title="Medium check")
    high = _raise(alerts.SCHEMA_CHANGE, title="Schema drift", severity=Severity.HIGH, subject_type="schema",
                  subject_id="public.users")
    gone = _raise(title="Gone")
    alerts.resolve(db.session, gone.id, comment="done")
    db.session.commit()

    mine = (medium, high, gone)

    def shown(url: str) -> set[str]:
        return _shown(client.get(url).get_data(as_text=True), *mine)

    assert shown("/alerts?status=resolved") == {str(gone.id)}
    assert shown("/alerts?status=all") == {str(medium.id), str(high.id), str(gone.id)}
    assert shown("/alerts?severity=high") == {str(high.id)}
    assert shown("/alerts?rule=schema.change") == {str(high.id)}
    assert shown("/alerts?status=open&rule=check.failing") == {str(medium.id)}
    # The schema subject has no page: its name, no link.
    schema_html = client.get("/alerts?rule=schema.change").get_data(as_text=True)
    assert "Schema public.users" in schema_html
    # Unknown filter values are ignored, never an error; htmx gets only the results.
    odd = client.get("/alerts?status=nope&severity=huge&rule=x' OR 1=1", headers=HX)
    assert odd.status_code == 200
    body = odd.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="alert-results"') and "<html" not in body
    assert _shown(body, *mine) == {str(medium.id), str(high.id)}


def test_the_list_pages_by_keyset(client: FlaskClient, login_as: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    login_as("auditor")
    monkeypatch.setattr(alert_routes, "PAGE_SIZE", 2)
    made = {str(_raise(title=f"Paged {i}").id) for i in range(5)}
    before = {str(a.id) for a in db.session.scalars(select(Alert)) if str(a.id) not in made}
    seen: list[str] = []
    url: str | None = "/alerts"
    with count_statements() as statements:
        while url:
            html = client.get(url, headers=HX if seen else {}).get_data(as_text=True)
            page = _row_ids(html)
            assert 1 <= len(page) <= 2
            seen += page
            link = re.search(r'<a href="([^"]+)" rel="next"', html)
            url = link.group(1).replace("&amp;", "&") if link else None
    assert len(seen) == len(set(seen)) == 5 + len(before) and set(seen) == made | before
    assert not any("OFFSET" in s.upper() for s in statements)
    assert client.get("/alerts?after=garbage").status_code == 200


# --- acknowledge and resolve ----------------------------------------------------------------------


def test_acknowledge_in_place_with_an_optional_comment_and_the_counts_out_of_band(
        client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    user = login_as("compliance_officer")
    alert = _raise(title="Needs eyes")
    token = _token(client, csrf_token)

    response = client.post(f"/alerts/{alert.id}/acknowledge", headers=HX,
                           data={"csrf_token": token, "view": "row", "comment": "Looking into it"})

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="alert-{alert.id}"')
    assert "Acknowledged." in html and "alert-status-acknowledged" in html
    assert 'id="nav-alerts-count" class="nav-count" hx-swap-oob="true"' in html
    db.session.expire_all()
    stored = db.session.get(Alert, alert.id)
    assert stored is not None and stored.status == AlertStatus.ACKNOWLEDGED and stored.acknowledged_by_id == user.id
    events = db.session.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert.id,
                                                         AlertEvent.kind == "acknowledged")).all()
    assert [e.comment for e in events] == ["Looking into it"]
    assert db.session.scalars(select(AuditLog).where(AuditLog.action == "alert.acknowledge",
                                                     AuditLog.object_id == str(alert.id))).all()
    # Acknowledging again is refused beside the form, not a crash.
    again = client.post(f"/alerts/{alert.id}/acknowledge", headers=HX, data={"csrf_token": token, "view": "row"})
    assert again.status_code == 422 and "only an open alert can be acknowledged" in again.get_data(as_text=True)


def test_resolve_needs_a_comment_shown_beside_the_field(client: FlaskClient, login_as: Any, csrf_token: Any) -> None:
    login_as("admin")
    alert = _raise(title="Resolve me")
    token = _token(client, csrf_token)

    refused = client.post(f"/alerts/{alert.id}/resolve", headers=HX,
                          data={"csrf_token": token, "view": "row", "comment": "   "})

    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    error = re.search(rf'<p class="field-error" id="resolve-comment-error-{alert.id}">(.*?)</p>', html)
    assert error is not None and error.group(1) == "Say how the alert was resolved."
    assert f'aria-describedby="resolve-comment-hint-{alert.id} resolve-comment-error-{alert.id}"' in html
    assert "<details class=\"alert-actions\" open>" in html
    db.session.expire_all()
    stored = db.session.get(Alert, alert.id)
    assert stored is not None and stored.status == AlertStatus.OPEN

    done = client.post(f"/alerts/{alert.id}/resolve", headers=HX,
                       data={"csrf_token": token, "view": "row", "comment": "Rotated the key"})
    assert done.status_code == 200
    assert "Resolved." in done.get_data(as_text=True) and "alert-status-resolved" in done.get_data(as_text=True)
    page = client.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "Rotated the key" in page and "Cleared by itself" not in page
    assert re.search(r'alert-event-resolved">\s*<span class="alert-event-kind">Resolved</span>', page)


def test_the_detail_page_acts_on_its_body_and_shows_history_and_task(
        client: FlaskClient, login_as: Any, csrf_token: Any, make_user: Any) -> None:
    login_as("admin")
    owner = make_user("engineer")
    alert = _raise(alerts.DENIAL_BURST, title="12 refused requests by eve", severity=Severity.HIGH,
                   subject_type="user", owner_id=owner.id, details={"actor_name": "eve@example.test"})
    page = client.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "Raised" in page and "by the system" in page
    task = re.search(r'<p id="alert-task"><a href="/tasks/([0-9a-f-]{36})">Remediate: 12 refused requests', page)
    assert task is not None, "a high alert opens its task"
    assert "User eve@example.test" in page and 'href="/admin/users?q=eve@example.test"' in page
    token = csrf_token(page)

    missing = client.post(f"/alerts/{alert.id}/resolve", headers=HX, data={"csrf_token": token, "view": "detail"})
    assert missing.status_code == 422
    assert missing.get_data(as_text=True).lstrip().startswith('<div id="alert-body">')

    acked = client.post(f"/alerts/{alert.id}/acknowledge", headers=HX, data={"csrf_token": token, "view": "detail"})
    body = acked.get_data(as_text=True)
    assert acked.status_code == 200 and body.lstrip().startswith('<div id="alert-body">')
    assert "Acknowledged" in body and 'hx-swap-oob="true"' in body
    assert re.findall(r'<span class="alert-event-kind">([^<]+)</span>', body) == ["Raised", "Acknowledged"]


def test_without_javascript_the_forms_redirect_or_show_the_error(client: FlaskClient, login_as: Any,
                                                                 csrf_token: Any) -> None:
    login_as("compliance_officer")
    alert = _raise(title="No JS")
    token = _token(client, csrf_token)

    acked = client.post(f"/alerts/{alert.id}/acknowledge", data={"csrf_token": token, "view": "row",
                                                                 "severity": "medium"})
    assert acked.status_code == 303 and acked.headers["Location"] == "/alerts?severity=medium"

    refused = client.post(f"/alerts/{alert.id}/resolve", data={"csrf_token": token, "view": "row"})
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "<html" in html and f'id="resolve-comment-error-{alert.id}"' in html

    resolved = client.post(f"/alerts/{alert.id}/resolve", data={"csrf_token": token, "view": "detail",
                                                                "comment": "ok"})
    assert resolved.status_code == 303 and resolved.headers["Location"] == f"/alerts/{alert.id}"
    assert "Resolved." in client.get(resolved.headers["Location"]).get_data(as_text=True)


def test_unknown_alerts_are_404_and_a_missing_csrf_token_is_refused(client: FlaskClient, login_as: Any,
                                                                    csrf_token: Any) -> None:
    login_as("admin")
    token = _token(client, csrf_token)
    assert client.get(f"/alerts/{uuid.uuid4()}").status_code == 404
    assert client.post(f"/alerts/{uuid.uuid4()}/resolve", data={"csrf_token": token, "comment": "x"}).status_code == 404
    alert = _raise(title="CSRF")
    assert client.post(f"/alerts/{alert.id}/acknowledge", data={"view": "row"}).status_code == 400


@pytest.mark.parametrize(("role", "may_act"), [("admin", True), ("compliance_officer", True),
                                               ("engineer", False), ("auditor", False)])
def test_who_may_read_and_act(client: FlaskClient, login_as: Any, csrf_token: Any, role: str, may_act: bool) -> None:
    login_as(role)
    alert = _raise(title="Permissions")
    html = client.get("/alerts").get_data(as_text=True)
    assert str(alert.id) in html
    assert ("Acknowledge or resolve" in html) is may_act
    token = csrf_token(html)
    response = client.post(f"/alerts/{alert.id}/acknowledge", headers=HX, data={"csrf_token": token, "view": "row"})
    assert response.status_code == (200 if may_act else 403)


# --- statement counts -----------------------------------------------------------------------------


def test_pages_run_the_same_statements_for_few_and_many_alerts(client: FlaskClient, login_as: Any,
                                                               make_user: Any) -> None:
    login_as("admin")
    owners = [make_user("engineer") for _ in range(3)]
    first = _raise(title="First", severity=Severity.HIGH, owner_id=owners[0].id)
    client.get("/alerts")  # the first request after signing in also loads the access rules

    def measure(url: str) -> int:
        with count_statements() as statements:
            assert client.get(url).status_code == 200
        return len(statements)

    few_list, few_detail = measure("/alerts"), measure(f"/alerts/{first.id}")
    for i in range(12):
        other = _raise(title=f"More {i}", severity=Severity.HIGH if i % 2 else Severity.LOW,
                       owner_id=owners[i % 3].id)
        alerts.acknowledge(db.session, other.id, comment=f"ack {i}")
        _raise(title=f"More {i}", subject_id=other.source_id)
    alerts.acknowledge(db.session, first.id, comment="ack")
    db.session.commit()
    many_list, many_detail = measure("/alerts"), measure(f"/alerts/{first.id}")
    assert (few_list, few_detail) == (many_list, many_detail)
