"""Server-side sessions: validity (revoked, absolute lifetime, idle timeout, user state), revocation."""

from datetime import timedelta

from sqlalchemy import func, select, update

from governance.models.identity import UserSession
from governance.services import sessions

LIFETIMES = sessions.Lifetimes(idle_minutes=30, max_hours=8)


def _shift(db_session, row, **columns) -> None:
    """Move a session's timestamps relative to the database clock (now() - delta)."""
    db_session.execute(update(UserSession).where(UserSession.id == row.id)
                       .values({k: func.now() - v for k, v in columns.items()}))
    db_session.expire_all()


def test_a_started_session_is_found_by_its_token_only(db_session, make_user) -> None:
    user = make_user("engineer")
    token, row = sessions.start(db_session, user, LIFETIMES, ip="10.0.0.7", user_agent="pytest")
    assert len(token) >= 43 and row.token_hash == sessions.token_hash(token) != token
    assert sessions.load(db_session, token, LIFETIMES).user.id == user.id
    assert sessions.load(db_session, token + "x", LIFETIMES) is None
    assert sessions.load(db_session, "", LIFETIMES) is None
    db_session.refresh(row)
    assert row.expires_at - row.created_at == timedelta(hours=8)


def test_idle_timeout(db_session, make_user) -> None:
    token, row = sessions.start(db_session, make_user("engineer"), LIFETIMES)
    _shift(db_session, row, last_seen_at=timedelta(minutes=29))
    assert sessions.load(db_session, token, LIFETIMES) is not None
    _shift(db_session, row, last_seen_at=timedelta(minutes=31))
    assert sessions.load(db_session, token, LIFETIMES) is None


def test_idle_timeout_is_configurable(db_session, make_user) -> None:
    token, row = sessions.start(db_session, make_user("engineer"), LIFETIMES)
    _shift(db_session, row, last_seen_at=timedelta(minutes=6))
    assert sessions.load(db_session, token, LIFETIMES) is not None
    db_session.expire_all()  # drop that load's last_seen_at refresh: the same moment, judged by 5 minutes
    assert sessions.load(db_session, token, sessions.Lifetimes(idle_minutes=5, max_hours=8)) is None


def test_absolute_lifetime(db_session, make_user) -> None:
    token, row = sessions.start(db_session, make_user("engineer"), sessions.Lifetimes(max_hours=1))
    db_session.refresh(row)
    assert row.expires_at - row.created_at == timedelta(hours=1)
    _shift(db_session, row, expires_at=timedelta(seconds=1))
    assert sessions.load(db_session, token, LIFETIMES) is None


def test_last_seen_is_written_at_most_once_a_minute(db_session, make_user) -> None:
    token, row = sessions.start(db_session, make_user("engineer"), LIFETIMES)
    _shift(db_session, row, last_seen_at=timedelta(seconds=30))
    loaded = sessions.load(db_session, token, LIFETIMES)
    assert loaded not in db_session.dirty
    _shift(db_session, row, last_seen_at=timedelta(minutes=5))
    loaded = sessions.load(db_session, token, LIFETIMES)
    assert loaded in db_session.dirty
    db_session.flush()
    db_session.refresh(loaded)
    assert loaded.last_seen_at == db_session.scalar(select(func.now()))


def test_a_deactivated_or_deleted_user_has_no_session(db_session, make_user) -> None:
    user = make_user("engineer")
    token, _ = sessions.start(db_session, user, LIFETIMES)
    user.is_active = False
    db_session.flush()
    assert sessions.load(db_session, token, LIFETIMES) is None
    user.is_active, user.deleted_at = True, func.now()
    db_session.flush()
    db_session.expire_all()
    assert sessions.load(db_session, token, LIFETIMES) is None


def test_revoke_all_for_user_ends_only_that_users_live_sessions(db_session, make_user) -> None:
    user, other = make_user("engineer"), make_user("engineer")
    tokens = [sessions.start(db_session, user, LIFETIMES)[0] for _ in range(3)]
    _, already = sessions.start(db_session, user, LIFETIMES)
    sessions.revoke(db_session, already.id, "logout")
    other_token, _ = sessions.start(db_session, other, LIFETIMES)
    assert sessions.revoke_all_for_user(db_session, user.id, "signed_out_everywhere") == 3
    assert all(sessions.load(db_session, t, LIFETIMES) is None for t in tokens)
    assert sessions.load(db_session, other_token, LIFETIMES) is not None
    reasons = db_session.scalars(select(UserSession.revoked_reason).where(UserSession.user_id == user.id)).all()
    assert sorted(reasons) == ["logout"] + ["signed_out_everywhere"] * 3
    assert sessions.revoke_all_for_user(db_session, user.id, "again") == 0
    assert sessions.live_sessions(db_session, user.id) == []
