"""Personal data sealed in audit entries at write time (governance.services.personal_data): the raw
columns hold no plaintext, reveal reads it back, a destroyed key reads as "erased person", a damaged
or transplanted token as "[unreadable]", and the key is read once per transaction."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event, select, text

from governance import context
from governance.models.audit import AuditLog
from governance.models.lifecycle import PersonKey
from governance.services import audit, identity, personal_data
from tests.conftest import TEST_PASSWORD


@pytest.fixture
def person(db_session: Any) -> Any:
    user = identity.create_user(db_session(), email=f"zelda.quill-{uuid.uuid4().hex[:6]}@example.test",
                                name="Zelda Quillfeather", role_name="engineer", password=TEST_PASSWORD)
    db_session.flush()
    return user


def _as(user: Any, **extra: Any) -> Any:
    return context.acting_as(context.ActionContext(actor_id=user.id, actor_name=user.email, ip="198.51.100.7",
                                                   user_agent="Mozilla/5.0 (Quill)", **extra))


def _raw(db_session: Any, entry_id: uuid.UUID) -> Any:
    return db_session.execute(text("SELECT actor_name, ip, user_agent, details::text AS details FROM audit_logs "
                                   "WHERE id = :id"), {"id": entry_id}).one()


def test_a_users_action_stores_no_plaintext_and_reads_back(db_session: Any, person: Any) -> None:
    with _as(person):
        entry = audit.record(db_session, "framework.update", object_type="framework", object_id="f-1",
                             details={"reason": "typo"})
    raw = _raw(db_session, entry.id)
    assert raw.actor_name == personal_data.pseudonym(person.id) == f"user:{person.id.hex[:8]}"
    assert raw.ip is None and raw.user_agent is None
    for plain in (person.email, "198.51.100.7", "Quill"):
        assert plain not in raw.details
    assert entry.details["sealed"].startswith(personal_data.SEAL_PREFIX)
    [shown] = personal_data.reveal(db_session, [entry])
    assert (shown.actor_name, shown.ip, shown.user_agent) == (person.email, "198.51.100.7", "Mozilla/5.0 (Quill)")
    assert shown.details == {"reason": "typo"} and shown.sealed and not shown.erased


def test_the_email_and_name_of_a_user_an_entry_is_about_are_sealed_under_their_key(db_session: Any,
                                                                                    person: Any) -> None:
    [created] = db_session.scalars(select(AuditLog).where(AuditLog.action == "user.create",
                                                          AuditLog.object_id == str(person.id))).all()
    raw = _raw(db_session, created.id)
    assert person.email not in raw.details and "Zelda" not in raw.details
    assert raw.actor_name == "system"  # no user acting: stays plain
    [shown] = personal_data.reveal(db_session, [created])
    assert shown.details == {"after": {"email": person.email, "name": "Zelda Quillfeather", "role": "engineer"}}


def test_a_refused_sign_in_to_an_account_seals_its_address(db_session: Any, person: Any) -> None:
    identity.attempt_login(db_session, person.email, "not the password")
    identity.attempt_login(db_session, "nobody-here@example.test", "not the password")
    denied = db_session.scalars(select(AuditLog).where(AuditLog.action == "auth.login")).all()
    mine = [e for e in denied if e.object_id == str(person.id)]
    assert mine and all(person.email not in _raw(db_session, e.id).details for e in mine)
    assert {s.details["email"] for s in personal_data.reveal(db_session, denied)} == {
        person.email, "nobody-here@example.test"}


def test_the_key_is_made_once_and_read_once_per_transaction(db_session: Any, person: Any) -> None:
    seen: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "person_keys" in statement:
            seen.append(statement)

    db_session.commit()  # a new transaction: nothing cached
    engine = db_session.get_bind().engine
    event.listen(engine, "before_cursor_execute", watch)
    try:
        with _as(person):
            for i in range(5):
                audit.record(db_session, "task.update", object_type="task", object_id=str(i))
    finally:
        event.remove(engine, "before_cursor_execute", watch)
    assert len(seen) == 1  # created by user.create already: one SELECT for five entries
    assert db_session.scalar(select(PersonKey.id).where(PersonKey.user_id == person.id)) is not None


def test_a_rolled_back_key_is_not_used_afterwards(db_session: Any) -> None:
    user = identity.create_user(db_session(), email="rollback-person@example.test", name="Rollo Back",
                                role_name="auditor", password=TEST_PASSWORD)
    db_session.commit()
    db_session.execute(text("DELETE FROM person_keys WHERE user_id = :id"), {"id": user.id})
    savepoint = db_session.begin_nested()
    with _as(user):
        audit.record(db_session, "task.update", object_type="task")
    savepoint.rollback()  # the key's INSERT is undone with the entry
    with _as(user):
        entry = audit.record(db_session, "task.update", object_type="task")
    [shown] = personal_data.reveal(db_session, [entry])
    assert shown.actor_name == "rollback-person@example.test"


def test_a_destroyed_key_reads_as_erased_and_a_bad_token_as_unreadable(db_session: Any, person: Any) -> None:
    other = identity.create_user(db_session(), email="other-person@example.test", name="Otto Other",
                                 role_name="auditor", password=TEST_PASSWORD)
    with _as(person):
        mine = audit.record(db_session, "task.update", object_type="task")
    with _as(other):
        # A token copied from another person's entry does not open under this actor's key (AAD).
        transplanted = audit.record(db_session, "task.update", object_type="task",
                                    details={"note": "x"})
    forged = AuditLog(actor_id=other.id, actor_name=personal_data.pseudonym(other.id), action="task.update",
                      object_type="task", outcome=transplanted.outcome,
                      details={"sealed": mine.details["sealed"]})
    damaged = AuditLog(actor_id=other.id, actor_name=personal_data.pseudonym(other.id), action="task.update",
                       object_type="task", outcome=transplanted.outcome, details={"sealed": "sealed:v1:AAAA!!"})
    db_session.add_all([forged, damaged])
    db_session.flush()
    db_session.execute(text("UPDATE person_keys SET key = NULL, destroyed_at = now() WHERE user_id = :id"),
                       {"id": person.id})
    shown = personal_data.reveal(db_session, [mine, transplanted, forged, damaged])
    assert (shown[0].actor_name, shown[0].ip, shown[0].erased) == (personal_data.ERASED, None, True)
    assert shown[1].actor_name == "other-person@example.test"
    assert shown[2].actor_name == shown[3].actor_name == personal_data.UNREADABLE
    # Nothing is sealed for an erased person again: no plaintext, no new key.
    personal_data.forget_key(db_session, person.id)
    assert personal_data.seal(db_session, person.id, {"v": "x"}) is None


def test_system_actors_stay_plain(db_session: Any) -> None:
    with context.acting_as(context.ActionContext(actor_name="job:test", ip="192.0.2.1")):
        entry = audit.record(db_session, "partitions.create", object_type="table")
    raw = _raw(db_session, entry.id)
    assert raw.actor_name == "job:test" and str(raw.ip) == "192.0.2.1" and "sealed" not in raw.details
