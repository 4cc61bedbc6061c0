"""E-mail for notifications: the notifications table is the outbox.

A notification is e-mailed once, to its user, when SMTP is configured (SMTP_HOST): deliver_pending()
sends each pending one (emailed_at NULL, still unread, the user active, raised within MAX_AGE) as its
own message and sets emailed_at as soon as the server accepted it. When the server is down the rows
stay pending for the next run (every few minutes, governance.jobs): a warning is logged and nothing
is raised into the caller.

Unlike the other services this one commits, one notification at a time: a sent e-mail cannot be
taken back, so its emailed_at must be durable before the next is sent. Each row is claimed with
FOR UPDATE SKIP LOCKED, so two workers never send the same notification.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance.models.identity import User
from governance.models.notifications import Notification
from governance.services.notifications import NotificationError, check_link

log = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 10.0
# At most this many messages per run (the next run, minutes later, carries on).
MAX_PER_RUN = 500
# A notice older than this is not e-mailed any more: turning SMTP on later must not flood inboxes
# with last quarter's news (it stays in the portal).
MAX_AGE = timedelta(days=7)


class MailSettings(Protocol):
    """The fields of config.Settings this module reads."""

    @property
    def smtp_host(self) -> str | None: ...
    @property
    def smtp_port(self) -> int: ...
    @property
    def smtp_username(self) -> str | None: ...
    @property
    def smtp_password(self) -> str | None: ...
    @property
    def smtp_starttls(self) -> bool: ...
    @property
    def smtp_from(self) -> str: ...
    @property
    def public_base_url(self) -> str: ...


@dataclass(frozen=True)
class Delivery:
    sent: int = 0
    failed: int = 0
    # Why nothing (more) could be sent: "not configured", or the connection problem.
    stopped: str | None = None


def _one_line(value: str) -> str:
    return " ".join(value.split())


def absolute_link(settings: MailSettings, link: str | None) -> str | None:
    """The portal path as an absolute URL under PUBLIC_BASE_URL (None when there is no valid link)."""
    try:
        path = check_link(link)
    except NotificationError:
        return None
    return None if path is None else settings.public_base_url.rstrip("/") + path


def compose(settings: MailSettings, notification: Notification, to_email: str, to_name: str) -> EmailMessage:
    """One plain-text message: subject = the title; body = the text and the absolute link."""
    message = EmailMessage()
    message["Subject"] = _one_line(notification.title)
    message["From"] = settings.smtp_from
    message["To"] = formataddr((_one_line(to_name), to_email))
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(idstring=str(notification.id))
    message["Auto-Submitted"] = "auto-generated"
    parts = [notification.body.strip()] if notification.body and notification.body.strip() else []
    url = absolute_link(settings, notification.link)
    if url:
        parts.append(f"Open it in the portal: {url}")
    parts.append("You receive this because you hold a role in the AI governance portal.")
    message.set_content("\n\n".join(parts) + "\n")
    return message


def connect(settings: MailSettings) -> smtplib.SMTP:
    """An SMTP session, upgraded with STARTTLS (certificate verified) and signed in when configured."""
    smtp = smtplib.SMTP(settings.smtp_host or "", settings.smtp_port, timeout=SMTP_TIMEOUT_S)
    try:
        smtp.ehlo()
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
    except BaseException:
        _close(smtp)
        raise
    return smtp


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _describe(exc: BaseException) -> str:
    """The failure for the log: its type and SMTP code only (never credentials or message text)."""
    code = getattr(exc, "smtp_code", None)
    return f"{type(exc).__name__}{f' {code}' if code else ''}"


def _claim_next(session: Session, skip: list[uuid.UUID]) -> tuple[Notification, str, str] | None:
    """Lock the oldest pending notification nobody else is sending; None when there is none."""
    stmt = (
        select(Notification, User.email, User.name)
        .join(User, User.id == Notification.user_id)
        .where(Notification.emailed_at.is_(None), Notification.read_at.is_(None),
               Notification.created_at >= func.now() - MAX_AGE,
               User.is_active.is_(True), User.deleted_at.is_(None))
        .order_by(Notification.created_at, Notification.id)
        .limit(1)
        .with_for_update(of=Notification, skip_locked=True)
    )
    if skip:
        stmt = stmt.where(Notification.id.not_in(skip))
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1], row[2])


# Refusals of one message (a bad recipient, say): that one stays pending, the rest go on.
_MESSAGE_ERRORS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError,
                   smtplib.SMTPNotSupportedError, ValueError)


def deliver_pending(session: Session, settings: MailSettings, *, limit: int = MAX_PER_RUN) -> Delivery:
    """Send pending notifications by e-mail (see the module docstring). Never raises for SMTP trouble."""
    if not settings.smtp_host:
        return Delivery(stopped="not configured")
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        smtp = connect(settings)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("e-mail not sent: SMTP server %s unavailable (%s); notifications stay pending",
                    where, _describe(exc))
        return Delivery(stopped=f"SMTP server {where} unavailable ({_describe(exc)})")
    sent = 0
    refused: list[uuid.UUID] = []
    stopped = None
    try:
        while sent + len(refused) < limit:
            claimed = _claim_next(session, refused)
            if claimed is None:
                break
            notification, email, name = claimed
            try:
                smtp.send_message(compose(settings, notification, email, name))
            except _MESSAGE_ERRORS as exc:
                session.rollback()  # releases the row: it stays pending
                refused.append(notification.id)
                log.warning("e-mail for notification %s refused by %s (%s); it stays pending",
                            notification.id, where, _describe(exc))
                continue
            except (OSError, smtplib.SMTPException) as exc:
                session.rollback()
                stopped = f"SMTP server {where} failed ({_describe(exc)})"
                log.warning("e-mail sending stopped: SMTP server %s failed (%s); notifications stay pending",
                            where, _describe(exc))
                break
            notification.emailed_at = func.now()  # type: ignore[assignment]
            session.commit()
            sent += 1
    finally:
        _close(smtp)
    if sent:
        log.info("e-mailed %d notification(s)", sent)
    return Delivery(sent=sent, failed=len(refused), stopped=stopped)


def deliver_pending_now(session_factory: Callable[[], Session], settings: MailSettings) -> Delivery:
    """deliver_pending() in a session of its own (the job queue and the CLI)."""
    with session_factory() as session:
        return deliver_pending(session, settings)
