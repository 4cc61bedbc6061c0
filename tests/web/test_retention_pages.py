"""The retention page (/admin/retention), legal hold forms and the framework/control/evidence panels."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, scoped_session

from governance.models.audit import AuditLog
from governance.models.lifecycle import LegalHold
from governance.services import legal_holds
from tests.conftest import count_statements

DBSession = scoped_session[Session]
HX = {"HX-Request": "true"}


def _token(client: FlaskClient, url: str = "/admin/retention") -> str:
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("compliance_officer", 200), ("auditor", 200),
                                              ("engineer", 403)])
def test_who_may_see_the_page(client: FlaskClient, login_as: Callable[[str], Any], role: str, status: int) -> None:
    login_as(role)
    response = client.get("/admin/retention")
    assert response.status_code == status
    if status == 200:
        html = response.get_data(as_text=True)
        assert "Settings in force" in html and "36 months" in html and 'aria-label="Operations"' in html
        assert ("Run retention now" in html) == (role == "admin")
        assert ('id="hold-form"' in html) == (role in ("admin", "compliance_officer"))


def test_place_a_hold_by_reference_then_release_it(client: FlaskClient, login_as: Callable[[str], Any],
                                                   make_control: Callable[..., Any], db_session: DBSession) -> None:
    login_as("compliance_officer")
    control = make_control("RT-9")
    token = _token(client)
    placed = client.post("/admin/retention/holds", data={"csrf_token": token, "target_type": "control",
                                                         "target": "RT-9", "reason": "Matter 12"})
    assert placed.status_code == 303
    hold = db_session.scalars(select(LegalHold).where(LegalHold.control_id == control.id)).one()
    html = client.get("/admin/retention").get_data(as_text=True)
    assert f'id="hold-{hold.id}"' in html and "Matter 12" in html and "control RT-9" in html

    refused = client.post(f"/admin/retention/holds/{hold.id}/release", data={"csrf_token": token,
                                                                            "release_reason": ""}, headers=HX)
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    assert 'id="release-reason-' in body and "field-error" in body and "<html" not in body
    released = client.post(f"/admin/retention/holds/{hold.id}/release",
                           data={"csrf_token": token, "release_reason": "Settled"})
    assert released.status_code == 303
    db_session.refresh(hold)
    assert hold.released_at is not None
    actions = set(db_session.scalars(select(AuditLog.action).where(AuditLog.object_id == str(control.id))))
    assert {"legal_hold.place", "legal_hold.release"} <= actions


def test_bad_hold_input_is_a_422_with_the_error_beside_the_field(client: FlaskClient,
                                                                 login_as: Callable[[str], Any]) -> None:
    login_as("admin")
    token = _token(client)
    response = client.post("/admin/retention/holds", data={"csrf_token": token, "target_type": "control",
                                                           "target": "NO-SUCH-REF", "reason": "Why not"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(r'id="target-error">No control with reference', html)
    assert 'value="NO-SUCH-REF"' in html and "Why not" in html
    fragment = client.post("/admin/retention/holds", headers=HX,
                           data={"csrf_token": token, "target_type": "evidence", "target": "x", "reason": ""})
    assert fragment.status_code == 422
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith('<form id="hold-form"') and 'id="reason-error"' in body


def test_posts_need_csrf_and_the_right_role(client: FlaskClient, login_as: Callable[[str], Any],
                                            make_control: Callable[..., Any]) -> None:
    control = make_control("RT-1")
    login_as("auditor")
    token = _token(client)
    denied = client.post("/admin/retention/holds", data={"csrf_token": token, "target_type": "control",
                                                         "target": str(control.id), "reason": "x"})
    assert denied.status_code == 403
    assert client.post("/admin/retention/run", data={"csrf_token": token}).status_code == 403
    no_csrf = client.post("/admin/retention/holds", data={"target_type": "control", "target": str(control.id),
                                                          "reason": "x"})
    assert no_csrf.status_code in (400, 403)


def test_run_now_defers_the_retention_job(client: FlaskClient, login_as: Callable[[str], Any],
                                          db_session: DBSession) -> None:
    login_as("admin")
    token = _token(client)
    first = client.post("/admin/retention/run", data={"csrf_token": token})
    assert first.status_code == 303
    again = client.post("/admin/retention/run", data={"csrf_token": token}, headers=HX)
    assert again.status_code == 204 and again.headers["HX-Location"] == "/admin/retention"
    jobs = db_session.execute(text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'gov:retention' "
                                   "AND status = 'todo'")).scalar_one()
    assert jobs == 1  # the queueing lock joined the second request to the first
    queued = list(db_session.scalars(select(AuditLog.details).where(AuditLog.action == "retention.requested")))
    assert [d["queued"] for d in queued] == [True, False]


def test_the_page_runs_a_bounded_number_of_statements(client: FlaskClient, login_as: Callable[[str], Any],
                                                      make_control: Callable[..., Any], db_session: DBSession) -> None:
    user = login_as("admin")

    def count() -> int:
        with count_statements() as seen:
            assert client.get("/admin/retention").status_code == 200
        return len(seen)

    first = make_control("B-0")
    legal_holds.place(db_session(), "control", first.id, "Matter 0", user.id)
    db_session.commit()
    baseline = count()
    for i in range(1, 8):
        control = make_control(f"B-{i}")
        legal_holds.place(db_session(), "control", control.id, f"Matter {i}", user.id)
    db_session.commit()
    assert count() == baseline


def test_control_and_evidence_pages_have_a_legal_hold_panel(client: FlaskClient, login_as: Callable[[str], Any],
                                                            make_control: Callable[..., Any],
                                                            make_evidence: Callable[..., Any],
                                                            db_session: DBSession) -> None:
    user = login_as("compliance_officer")
    control = make_control("PN-1")
    evidence = make_evidence(user, control=control, name="Panel evidence")
    page = client.get(f"/controls/{control.id}").get_data(as_text=True)
    panel_url = re.search(r'hx-get="(/admin/retention/panel\?[^"]+)"', page)
    assert 'id="legal-hold-panel"' in page and panel_url is not None
    panel = client.get(panel_url.group(1).replace("&amp;", "&"), headers=HX).get_data(as_text=True)
    assert "Not under legal hold." in panel and "<html" not in panel and 'name="reason"' in panel
    token = _token(client, f"/controls/{control.id}")
    placed = client.post("/admin/retention/holds", data={"csrf_token": token, "target_type": "control",
                                                         "target": str(control.id), "reason": "Panel matter",
                                                         "next": f"/controls/{control.id}"})
    assert placed.status_code == 303 and placed.headers["Location"].endswith(f"/controls/{control.id}")
    held_page = client.get(f"/admin/retention/panel?type=evidence&id={evidence.id}").get_data(as_text=True)
    assert "Under legal hold on control PN-1" in held_page and "Panel matter" in held_page and "<html" in held_page
    assert 'id="legal-hold-panel"' in client.get(f"/evidence/{evidence.id}").get_data(as_text=True)
    framework_page = client.get(f"/frameworks/{control.framework_id}").get_data(as_text=True)
    assert 'id="legal-hold-panel"' in framework_page
    # Deleting the held control is refused, with the reason.
    deleted = client.post(f"/controls/{control.id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303 and deleted.headers["Location"].endswith(f"/controls/{control.id}")
    assert "cannot be deleted" in client.get(f"/controls/{control.id}").get_data(as_text=True)


def test_engineers_do_not_see_the_panel(client: FlaskClient, login_as: Callable[[str], Any],
                                        make_control: Callable[..., Any]) -> None:
    login_as("engineer")
    control = make_control("PN-2")
    assert 'id="legal-hold-panel"' not in client.get(f"/controls/{control.id}").get_data(as_text=True)
