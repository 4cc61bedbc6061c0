"""Notifications (raise once per dedup key, count, keyset list, mark read, only one's own) and their
e-mail outbox against a real SMTP server (aiosmtpd on a free local port)."""

from __future__ import annotations

import dataclasses
import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select, update

from governance.models.notifications import Notification
from governance.services import mail
from governance.services import notifications as service
from tests.conftest import count_statements

SMTP_PASSWORD = "sink-secret-Xq7"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sink:
    """Keeps every message the server accepted."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"


@dataclasses.dataclass
class SmtpSink:
    host: str
    port: int
    sink: Sink

    @property
    def messages(self) -> list[Message]:
        return self.sink.messages


def _check_password(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"portal" and \
        auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)



def _start(**kwargs: Any) -> Iterator[SmtpSink]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port(), **kwargs)
    controller.start()
    try:
        yield SmtpSink("127.0.0.1", controller.port, sink)
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on 127.0.0.1 (no TLS, no auth) that keeps what it receives."""
    yield from _start()


@pytest.fixture
def smtp_sink_with_login() -> Iterator[SmtpSink]:
    yield from _start(authenticator=_check_password, auth_require_tls=False)


def mail_settings(app: Any, sink: SmtpSink | None, **changes: Any) -> Any:
    base = app.config["SETTINGS"]
    if sink is not None:
        changes = {"smtp_host": sink.host, "smtp_port": sink.port, "smtp_starttls": False, **changes}
    return dataclasses.replace(base, public_base_url="https://governance.example.org", **changes)


# --- raising, counting, listing ---------------------------------------------------------------------


def test_notify_inserts_once_per_dedup_key(db_session, make_user) -> None:
    user = make_user("engineer")
    first = service.notify(db_session(), user.id, kind="evidence_expiring", title="Expires soon",
                           body="Upload a new revision.", link="/evidence/x", dedup_key="k:1")
    again = service.notify(db_session(), user.id, kind="evidence_expiring", title="Expires soon (again)",
                           link="/evidence/x", dedup_key="k:1")
    assert first is not None and again is None
    no_key = [service.notify(db_session(), user.id, kind="info", title="Hello") for _ in range(2)]
    assert None not in no_key and no_key[0] != no_key[1]
    rows = db_session.scalars(select(Notification).where(Notification.user_id == user.id)).all()
    assert sorted(r.title for r in rows) == ["Expires soon", "Hello", "Hello"]


@pytest.mark.parametrize("link", ["https://evil.example/x", "//evil.example/x", "evidence/x", "/\\evil",
                                  "javascript:x"])
def test_links_must_stay_inside_the_portal(db_session, make_user, link) -> None:
    user = make_user("engineer")
    with pytest.raises(service.NotificationError):
        service.notify(db_session(), user.id, kind="info", title="t", link=link)


def test_unread_count_is_capped_and_per_user(db_session, make_user) -> None:
    user, other = make_user("engineer"), make_user("auditor")
    service.notify_many(db_session(), [service.NewNotification(user.id, "info", f"n{i}") for i in range(7)])
    service.notify(db_session(), other.id, kind="info", title="not yours")
    assert service.unread_count(db_session(), user.id) == 7
    assert service.unread_count(db_session(), user.id, cap=5) == 5
    assert service.unread_count(db_session(), other.id) == 1


def test_the_list_is_newest_first_by_keyset(db_session, make_user) -> None:
    user = make_user("engineer")
    ids = service.notify_many(db_session(), [service.NewNotification(user.id, "info", f"n{i}") for i in range(5)])
    base = datetime(2026, 3, 1, tzinfo=UTC)
    # Two share a timestamp: the id breaks the tie, so no row repeats or goes missing across pages.
    stamps = [base, base + timedelta(hours=1), base + timedelta(hours=1), base + timedelta(hours=2),
              base + timedelta(hours=3)]
    for notification_id, stamp in zip(ids, stamps, strict=True):
        db_session.execute(update(Notification).where(Notification.id == notification_id).values(created_at=stamp))
    db_session.expire_all()
    seen: list[Notification] = []
    cursor = None
    with count_statements() as statements:
        while True:
            page = service.list_for_user(db_session(), user.id, after=cursor, limit=2)
            seen += page.items
            if page.next_cursor is None:
                break
            cursor = service.Cursor.decode(page.next_cursor.encode())
    assert len(seen) == 5 and len({n.id for n in seen}) == 5
    assert [n.created_at for n in seen] == sorted(stamps, reverse=True)
    assert not any("OFFSET" in s.upper() for s in statements)
    assert service.Cursor.decode("garbage") is None and service.Cursor.decode("2026-01-01T00:00:00_x") is None


def test_mark_read_only_touches_ones_own(db_session, make_user) -> None:
    user, other = make_user("engineer"), make_user("auditor")
    mine = service.notify(db_session(), user.id, kind="info", title="mine")
    theirs = service.notify(db_session(), other.id, kind="info", title="theirs")
    assert mine and theirs
    assert service.mark_read(db_session(), user.id, theirs) is None
    read = service.mark_read(db_session(), user.id, mine)
    assert read is not None and read.read_at is not None
    assert service.unread_count(db_session(), user.id) == 0
    assert service.unread_count(db_session(), other.id) == 1


def test_mark_all_read_marks_only_ones_own(db_session, make_user) -> None:
    user, other = make_user("engineer"), make_user("auditor")
    service.notify_many(db_session(), [service.NewNotification(user.id, "info", f"n{i}") for i in range(3)])
    service.notify(db_session(), other.id, kind="info", title="theirs")
    assert service.mark_all_read(db_session(), user.id) == 3
    assert service.mark_all_read(db_session(), user.id) == 0
    assert service.unread_count(db_session(), other.id) == 1


# --- e-mail -----------------------------------------------------------------------------------------


def _pending(db_session, user_id: uuid.UUID) -> list[Notification]:
    db_session.expire_all()
    return list(db_session.scalars(select(Notification).where(Notification.user_id == user_id,
                                                               Notification.emailed_at.is_(None))))


def test_pending_notifications_are_emailed_once_with_subject_and_absolute_link(
        app, db_session, make_user, smtp_sink) -> None:
    user = make_user("engineer")
    notification_id = service.notify(db_session(), user.id, kind="evidence_expiring",
                                     title="Evidence expires soon: Access review Q3",
                                     body="Upload a current revision.", link="/evidence/abc")
    db_session.commit()
    settings = mail_settings(app, smtp_sink)

    delivery = mail.deliver_pending(db_session(), settings)

    assert delivery == mail.Delivery(sent=1, failed=0, stopped=None)
    [message] = smtp_sink.messages
    assert message["Subject"] == "Evidence expires soon: Access review Q3"
    assert user.email in message["To"] and message["From"] == settings.smtp_from
    text = message.get_payload(decode=True).decode()
    assert "Upload a current revision." in text
    assert "https://governance.example.org/evidence/abc" in text
    assert smtp_sink.sink.envelopes[0].rcpt_tos == [user.email]
    assert _pending(db_session, user.id) == []
    assert db_session.get(Notification, notification_id).emailed_at is not None
    # Sent once: a second run finds nothing to send.
    assert mail.deliver_pending(db_session(), settings).sent == 0
    assert len(smtp_sink.messages) == 1


def test_one_message_per_notification_and_not_to_inactive_users_or_read_ones(
        app, db_session, make_user, smtp_sink) -> None:
    active, inactive = make_user("engineer"), make_user("auditor")
    service.notify_many(db_session(), [service.NewNotification(active.id, "info", f"Notice {i}") for i in range(3)])
    service.notify(db_session(), inactive.id, kind="info", title="For someone who left")
    already_read = service.notify(db_session(), active.id, kind="info", title="Seen in the portal")
    assert already_read
    service.mark_read(db_session(), active.id, already_read)
    inactive.is_active = False
    db_session.commit()

    assert mail.deliver_pending(db_session(), mail_settings(app, smtp_sink)).sent == 3

    assert sorted(m["Subject"] for m in smtp_sink.messages) == ["Notice 0", "Notice 1", "Notice 2"]
    assert [n.title for n in _pending(db_session, inactive.id)] == ["For someone who left"]


def test_smtp_down_leaves_rows_pending_and_logs_a_warning(app, db_session, make_user, caplog) -> None:
    user = make_user("engineer")
    service.notify(db_session(), user.id, kind="info", title="Waiting for the mail server")
    db_session.commit()
    settings = mail_settings(app, None, smtp_host="127.0.0.1", smtp_port=_free_port(), smtp_starttls=False)
    with caplog.at_level(logging.WARNING, logger="governance.services.mail"):
        delivery = mail.deliver_pending(db_session(), settings)
    assert delivery.sent == 0 and delivery.stopped and "unavailable" in delivery.stopped
    assert "stay pending" in caplog.text
    assert [n.title for n in _pending(db_session, user.id)] == ["Waiting for the mail server"]


def test_nothing_is_sent_or_queried_without_smtp_host(app, db_session, make_user) -> None:
    user = make_user("engineer")
    service.notify(db_session(), user.id, kind="info", title="No mail server configured")
    db_session.commit()
    with count_statements() as statements:
        delivery = mail.deliver_pending(db_session(), mail_settings(app, None, smtp_host=None))
    assert delivery == mail.Delivery(stopped="not configured")
    assert statements == []
    assert len(_pending(db_session, user.id)) == 1


def test_login_is_used_when_a_username_is_set_and_the_password_never_logged(
        app, db_session, make_user, smtp_sink_with_login, caplog) -> None:
    user = make_user("engineer")
    service.notify(db_session(), user.id, kind="info", title="Signed-in delivery")
    db_session.commit()
    wrong = mail_settings(app, smtp_sink_with_login, smtp_username="portal", smtp_password="not-the-password")
    with caplog.at_level(logging.DEBUG):
        refused = mail.deliver_pending(db_session(), wrong)
    assert refused.sent == 0 and "SMTPAuthenticationError" in (refused.stopped or "")
    assert "not-the-password" not in caplog.text
    assert smtp_sink_with_login.messages == []

    right = mail_settings(app, smtp_sink_with_login, smtp_username="portal", smtp_password=SMTP_PASSWORD)
    with caplog.at_level(logging.DEBUG):
        assert mail.deliver_pending(db_session(), right).sent == 1
    assert SMTP_PASSWORD not in caplog.text
    assert [m["Subject"] for m in smtp_sink_with_login.messages] == ["Signed-in delivery"]


def test_a_refused_recipient_stays_pending_and_the_others_go(app, db_session, make_user, smtp_sink) -> None:
    good = make_user("engineer")
    bad = make_user("auditor", email="bad-recipient@example.test")
    service.notify(db_session(), bad.id, kind="info", title="To a refused address")
    service.notify(db_session(), good.id, kind="info", title="To a good address")
    db_session.commit()

    async def refuse_bad(server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bad-recipient"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    smtp_sink.sink.handle_RCPT = refuse_bad  # type: ignore[attr-defined]
    delivery = mail.deliver_pending(db_session(), mail_settings(app, smtp_sink))
    assert (delivery.sent, delivery.failed) == (1, 1)
    assert [m["Subject"] for m in smtp_sink.messages] == ["To a good address"]
    assert [n.title for n in _pending(db_session, bad.id)] == ["To a refused address"]
