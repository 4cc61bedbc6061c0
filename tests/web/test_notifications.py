"""Notification pages: one's own list (keyset pages, bounded statements), mark one / all read with
and without htmx (row swap + the nav's count out of band), another user's notification is a 404."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from governance.models.notifications import Notification
from governance.services import notifications as service
from tests.conftest import count_statements

HX = {"HX-Request": "true"}


def _raise(db_session, user, *titles: str, link: str | None = "/evidence/abc") -> list:
    ids = service.notify_many(db_session(), [service.NewNotification(user.id, "info", t, f"Body of {t}", link)
                                             for t in titles])
    db_session.commit()
    return ids


def _nav_count(html: str) -> str:
    match = re.search(r'<a id="nav-notifications"[^>]*>(.*?)</a>', html, re.S)
    assert match, "no notifications link in the page"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def _csrf(client, csrf_token) -> str:
    return csrf_token(client.get("/notifications").get_data(as_text=True))


def test_the_list_shows_only_ones_own_and_the_nav_counts_unread(client, login_as, make_user, db_session) -> None:
    user = login_as("engineer")
    other = make_user("auditor")
    _raise(db_session, user, "First for me", "Second for me")
    _raise(db_session, other, "Not for me")

    html = client.get("/notifications").get_data(as_text=True)

    assert "First for me" in html and "Second for me" in html and "Not for me" not in html
    assert "Body of First for me" in html and 'href="/evidence/abc"' in html
    assert _nav_count(html) == "Notifications (2) unread"
    # Every page's navigation carries the count.
    assert _nav_count(client.get("/").get_data(as_text=True)) == "Notifications (2) unread"


def test_nobody_sees_or_marks_another_users_notification(client, login_as, make_user, db_session,
                                                         csrf_token) -> None:
    login_as("engineer")
    other = make_user("auditor")
    [theirs] = _raise(db_session, other, "Someone else's")
    token = _csrf(client, csrf_token)

    response = client.post(f"/notifications/{theirs}/read", data={"csrf_token": token})

    assert response.status_code == 404
    db_session.expire_all()
    assert db_session.get(Notification, theirs).read_at is None
    client.post("/notifications/read-all", data={"csrf_token": token})
    db_session.expire_all()
    assert db_session.get(Notification, theirs).read_at is None


def test_mark_read_without_javascript_redirects_back(client, login_as, db_session, csrf_token) -> None:
    user = login_as("engineer")
    first, _second = _raise(db_session, user, "Read me", "Leave me")
    token = _csrf(client, csrf_token)

    response = client.post(f"/notifications/{first}/read", data={"csrf_token": token})

    assert response.status_code == 303 and response.headers["Location"] == "/notifications"
    db_session.expire_all()
    assert db_session.get(Notification, first).read_at is not None
    assert _nav_count(client.get("/notifications").get_data(as_text=True)) == "Notifications (1) unread"


def test_mark_read_with_htmx_swaps_the_row_and_the_count_out_of_band(client, login_as, db_session,
                                                                     csrf_token) -> None:
    user = login_as("engineer")
    first, _second = _raise(db_session, user, "Read me", "Leave me")
    token = _csrf(client, csrf_token)

    response = client.post(f"/notifications/{first}/read", headers={**HX, "X-CSRFToken": token})

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<html" not in html and "Leave me" not in html
    assert re.search(rf'<li id="notification-{first}" class="notification">', html)  # no longer "unread"
    assert "Mark read" not in html and "· read" in html
    assert re.search(r'<a id="nav-notifications"[^>]*hx-swap-oob="true"', html)
    assert _nav_count(html) == "Notifications (1) unread"
    assert "HX-Request" in response.headers["Vary"]


def test_mark_all_read_with_and_without_htmx(client, login_as, db_session, csrf_token) -> None:
    user = login_as("engineer")
    _raise(db_session, user, "One", "Two", "Three")
    token = _csrf(client, csrf_token)

    fragment = client.post("/notifications/read-all", headers={**HX, "X-CSRFToken": token})
    html = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in html
    assert html.count('class="notification"') == 3 and "Mark read" not in html
    assert re.search(r'<a id="nav-notifications"[^>]*hx-swap-oob="true"', html)
    assert _nav_count(html) == "Notifications"
    assert service.unread_count(db_session(), user.id) == 0

    _raise(db_session, user, "Four")
    plain = client.post("/notifications/read-all", data={"csrf_token": token})
    assert plain.status_code == 303
    assert "Marked 1 notification(s) read." in client.get(plain.headers["Location"]).get_data(as_text=True)


def test_a_post_without_the_csrf_token_is_refused(client, login_as, db_session) -> None:
    user = login_as("engineer")
    [notification_id] = _raise(db_session, user, "Guarded")
    assert client.post(f"/notifications/{notification_id}/read").status_code == 400
    assert client.post("/notifications/read-all").status_code == 400
    assert service.unread_count(db_session(), user.id) == 1


def test_only_portal_paths_become_links(client, login_as, db_session) -> None:
    user = login_as("engineer")
    # Written past the service's check (as a careless import might): the page still links nowhere else.
    db_session.add(Notification(user_id=user.id, kind="info", title="Sneaky", link="https://evil.example/x"))
    db_session.commit()
    html = client.get("/notifications").get_data(as_text=True)
    assert "Sneaky" in html and "evil.example" not in html


def test_pages_by_keyset_with_a_bounded_number_of_statements(client, login_as, db_session,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    user = login_as("engineer")
    monkeypatch.setattr(service, "PAGE_SIZE", 3)
    _raise(db_session, user, *[f"Notice {i}" for i in range(2)])
    with count_statements() as few:
        client.get("/notifications")
    _raise(db_session, user, *[f"Notice {i}" for i in range(2, 8)])
    seen: list[str] = []
    url: str | None = "/notifications"
    with count_statements() as all_pages:
        while url:
            with count_statements() as one_page:
                html = client.get(url).get_data(as_text=True)
            assert len(one_page) == len(few), (url, one_page)
            seen += re.findall(r'id="notification-([0-9a-f-]{36})"', html)
            link = re.search(r'<a href="([^"]+)" rel="next"', html)
            url = link.group(1).replace("&amp;", "&") if link else None
    assert len(seen) == 8 and len(set(seen)) == 8
    assert not any("OFFSET" in s.upper() for s in all_pages)
    mine = db_session.scalars(select(Notification.id).where(Notification.user_id == user.id)).all()
    assert {str(i) for i in mine} == set(seen)
