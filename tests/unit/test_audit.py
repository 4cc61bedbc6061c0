import uuid

from sqlalchemy import select

from governance import context
from governance.models.audit import AuditLog
from governance.models.enums import AuditOutcome
from governance.services import audit


def _entries(session, request_id):
    return session.scalars(select(AuditLog).where(AuditLog.request_id == request_id)).all()


def test_record_keeps_actor_snapshot_request_and_details(db_session) -> None:
    framework_id = uuid.uuid4()
    ctx = context.ActionContext(actor_id=None, actor_name="ada@example.test", ip="203.0.113.9",
                                user_agent="pytest", request_id="req-" + uuid.uuid4().hex[:8])
    with context.acting_as(ctx):
        audit.record(db_session, "framework.update", object_type="framework", object_id=framework_id,
                     before={"title": "Old"}, after={"title": "New"}, details={"reason": "typo"})
    [entry] = _entries(db_session, ctx.request_id)
    assert entry.actor_name == "ada@example.test"
    assert entry.action == "framework.update"
    assert entry.object_type == "framework" and entry.object_id == str(framework_id)
    assert entry.outcome == AuditOutcome.SUCCESS
    assert str(entry.ip) == "203.0.113.9" and entry.user_agent == "pytest"
    assert entry.details == {"reason": "typo", "before": {"title": "Old"}, "after": {"title": "New"}}
    assert entry.created_at is not None


def test_the_entry_shares_the_transaction_of_the_change(db_session) -> None:
    request_id = "rollback-" + uuid.uuid4().hex[:8]
    savepoint = db_session.begin_nested()
    audit.record(db_session, "task.create", object_type="task", ctx=context.ActionContext(request_id=request_id))
    savepoint.rollback()
    assert _entries(db_session, request_id) == []


def test_secrets_never_enter_an_entry(db_session) -> None:
    request_id = "secret-" + uuid.uuid4().hex[:8]
    audit.record(db_session, "user.update", object_type="user", ctx=context.ActionContext(request_id=request_id),
                 details={"password": "hunter22", "nested": {"api_key": "k-123", "totp_secret": "JBSW"},
                          "items": [{"token": "t-1"}]},
                 after={"password_hash": "$argon2id$..."})
    [entry] = _entries(db_session, request_id)
    flat = repr(entry.details)
    for secret in ("hunter22", "k-123", "JBSW", "t-1", "$argon2id$"):
        assert secret not in flat
    assert entry.details["nested"]["api_key"] == audit.REDACTED


def test_outside_a_request_the_actor_is_the_system(db_session) -> None:
    entry = audit.record(db_session, "partitions.create", object_type="table", object_id="results")
    assert entry.actor_id is None and entry.actor_name == "system"
    assert entry.request_id
