"""`flask users create | set-role | deactivate`."""

from sqlalchemy import select

from governance.models.audit import AuditLog
from governance.models.identity import UserSession
from governance.services import identity, passwords, sessions

LIFETIMES = sessions.Lifetimes()


def test_create_reads_the_password_from_stdin(app, db_session) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--email", "New.Person@Example.test", "--role", "engineer", "--name", "New Person"],
        input="a long enough passphrase\n")
    assert result.exit_code == 0, result.output
    assert "a long enough passphrase" not in result.output
    user = identity.find_user_by_email(db_session, "new.person@example.test")
    assert user is not None and user.role.name == "engineer" and user.name == "New Person"
    assert passwords.verify(user.password_hash, "a long enough passphrase")
    [entry] = db_session.scalars(select(AuditLog).where(AuditLog.action == "user.create",
                                                        AuditLog.object_id == str(user.id))).all()
    assert entry.actor_name == "cli:users create"


def test_create_applies_the_password_policy_and_roles(app, db_session) -> None:
    runner = app.test_cli_runner()
    common = runner.invoke(args=["users", "create", "--email", "c@example.test", "--role", "engineer"],
                           input="password1\n")
    assert common.exit_code != 0 and "too common" in common.output
    unknown_role = runner.invoke(args=["users", "create", "--email", "c@example.test", "--role", "wizard"],
                                 input="a long enough passphrase\n")
    assert unknown_role.exit_code != 0 and "Unknown role" in unknown_role.output
    assert identity.find_user_by_email(db_session, "c@example.test") is None


def _live(db_session, user):
    db_session.expire_all()
    return sessions.live_sessions(db_session, user.id)


def test_set_role_changes_the_role_and_ends_sessions(app, db_session, make_user) -> None:
    user = make_user("engineer")
    sessions.start(db_session, user, LIFETIMES)
    db_session.commit()
    result = app.test_cli_runner().invoke(args=["users", "set-role", "--email", user.email, "--role", "auditor"])
    assert result.exit_code == 0, result.output
    db_session.expire_all()
    assert user.role.name == "auditor"
    assert _live(db_session, user) == []
    reasons = db_session.scalars(select(UserSession.revoked_reason).where(UserSession.user_id == user.id)).all()
    assert reasons and all(r for r in reasons)


def test_deactivate_blocks_sign_in_and_ends_sessions(app, db_session, make_user) -> None:
    user = make_user("engineer")
    token, _ = sessions.start(db_session, user, LIFETIMES)
    db_session.commit()
    result = app.test_cli_runner().invoke(args=["users", "deactivate", "--email", user.email])
    assert result.exit_code == 0, result.output
    db_session.expire_all()
    assert user.is_active is False
    assert sessions.load(db_session, token, LIFETIMES) is None
    assert _live(db_session, user) == []


def test_unknown_email_is_an_error(app, db_session) -> None:
    result = app.test_cli_runner().invoke(args=["users", "deactivate", "--email", "ghost@example.test"])
    assert result.exit_code != 0 and "no user with e-mail ghost@example.test" in result.output
