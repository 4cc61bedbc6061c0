"""In-app notifications: raise one (at most once per dedup_key), count, list and mark read.

Every read and change is scoped to one user: a user only ever sees or changes their own. Functions
flush, never commit. E-mail delivery of the same rows is governance.services.mail (an outbox).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from governance.models.notifications import Notification

PAGE_SIZE = 50
# The navigation shows "99+" past this: counting stops there, so the badge costs the same however
# many notices pile up unread.
UNREAD_COUNT_CAP = 100

TITLE_MAX = 500
LINK_MAX = 1024
DEDUP_KEY_MAX = 255


class NotificationError(ValueError):
    """A notification that must not be stored (e.g. a link leaving the portal)."""


@dataclass(frozen=True)
class NewNotification:
    user_id: uuid.UUID
    kind: str
    title: str
    body: str | None = None
    link: str | None = None
    dedup_key: str | None = None


def check_link(link: str | None) -> str | None:
    """A link is a path inside the portal: "/evidence/…", never "https://…", "//host" or "\\host"."""
    if link is None:
        return None
    parts = urlsplit(link)
    if (not link.startswith("/") or link.startswith("//") or "\\" in link or parts.scheme or parts.netloc
            or len(link) > LINK_MAX or any(ord(ch) < 32 for ch in link)):
        raise NotificationError(f"a notification links to a path inside the portal, not {link[:80]!r}")
    return link


def _row(n: NewNotification) -> dict[str, object]:
    if not n.title.strip():
        raise NotificationError("a notification needs a title")
    if n.dedup_key is not None and len(n.dedup_key) > DEDUP_KEY_MAX:
        raise NotificationError(f"dedup_key longer than {DEDUP_KEY_MAX} characters")
    return {"user_id": n.user_id, "kind": n.kind, "title": n.title[:TITLE_MAX], "body": n.body,
            "link": check_link(n.link), "dedup_key": n.dedup_key}


def notify_many(session: Session, items: Iterable[NewNotification]) -> list[uuid.UUID]:
    """Insert the notifications in one statement; one whose dedup_key was raised before is skipped
    (ON CONFLICT DO NOTHING on uq_notifications_dedup_key). Returns the ids of the new rows."""
    rows = [_row(n) for n in items]
    if not rows:
        return []
    stmt = (
        insert(Notification)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["dedup_key"], index_where=text("dedup_key IS NOT NULL"))
        .returning(Notification.id)
    )
    return list(session.scalars(stmt))


def notify(session: Session, user_id: uuid.UUID, *, kind: str, title: str, body: str | None = None,
           link: str | None = None, dedup_key: str | None = None) -> uuid.UUID | None:
    """Raise one notification for `user_id`; None when one with this dedup_key already exists."""
    ids = notify_many(session, [NewNotification(user_id, kind, title, body, link, dedup_key)])
    return ids[0] if ids else None


def unread_count(session: Session, user_id: uuid.UUID, cap: int = UNREAD_COUNT_CAP) -> int:
    """How many unread notifications the user has, counted up to `cap` (one index-only probe of
    ix_notifications_unread_user_id, however many there are)."""
    capped = (select(Notification.id)
              .where(Notification.user_id == user_id, Notification.read_at.is_(None))
              .limit(cap).subquery())
    return int(session.scalar(select(func.count()).select_from(capped)) or 0)


@dataclass(frozen=True)
class Cursor:
    """Keyset position in the newest-first list: the (created_at, id) of the last row shown."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        return f"{self.created_at.isoformat()}_{self.id}"

    @classmethod
    def decode(cls, raw: str | None) -> Cursor | None:
        """None for a missing or malformed cursor (the list then starts at the top)."""
        if not raw:
            return None
        stamp, _, ident = raw.rpartition("_")
        try:
            created_at = datetime.fromisoformat(stamp)
            if created_at.tzinfo is None:
                return None
            return cls(created_at, uuid.UUID(ident))
        except ValueError:
            return None


@dataclass(frozen=True)
class Page:
    items: list[Notification]
    next_cursor: Cursor | None


def list_for_user(session: Session, user_id: uuid.UUID, *, after: Cursor | None = None,
                  limit: int | None = None) -> Page:
    """One page of the user's notifications, newest first (keyset on created_at, id: one statement,
    served by ix_notifications_user_id_created_at)."""
    limit = limit or PAGE_SIZE
    stmt = select(Notification).where(Notification.user_id == user_id)
    if after is not None:
        stmt = stmt.where(or_(Notification.created_at < after.created_at,
                              (Notification.created_at == after.created_at) & (Notification.id < after.id)))
    rows = list(session.scalars(
        stmt.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, Cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)


def get_for_user(session: Session, user_id: uuid.UUID, notification_id: uuid.UUID) -> Notification | None:
    """The notification when it is this user's (another user's is None, as if it did not exist)."""
    return session.scalars(
        select(Notification).where(Notification.id == notification_id, Notification.user_id == user_id)
    ).one_or_none()


def mark_read(session: Session, user_id: uuid.UUID, notification_id: uuid.UUID) -> Notification | None:
    """Mark one of the user's notifications read (already read: unchanged); None when it is not theirs."""
    notification = get_for_user(session, user_id, notification_id)
    if notification is None:
        return None
    if notification.read_at is None:
        notification.read_at = func.now()  # type: ignore[assignment]
        session.flush()
    return notification


def mark_all_read(session: Session, user_id: uuid.UUID) -> int:
    """Mark every unread notification of the user read in one statement; returns how many."""
    result = session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=func.now())
        .execution_options(synchronize_session="fetch")
    )
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
