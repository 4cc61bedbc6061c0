"""Evidence freshness: expire evidence whose expiry passed, warn owners before it does.

What expires: live evidence that is approved or in review when its expires_at has passed. Those are
the states in which evidence counts (or is about to count) towards a control, so letting them lapse
silently is what this guards against. Drafts (never submitted) and rejected evidence (counting for
nothing already) keep their status. Only evidence.status changes: each revision keeps its own review
state (who approved what, and when, stays true).

Each expiry is audited ("evidence.expire", actor: the job or the CLI command from the current
ActionContext), tells the owner and raises an EVIDENCE_EXPIRED alert (governance.services.alerts;
a newer approved revision clears it). Owners of approved evidence expiring within N days get one
notice per evidence and expiry date (dedup_key), so running the sweep twice, or daily, repeats
nothing. Queries are bounded batches on the partial indexes (ix_evidence_approved_expires_at;
ix_evidence_live_status_created_at for in_review).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from governance import context
from governance.models.enums import EvidenceStatus
from governance.models.evidence import Evidence
from governance.services import alerts, audit
from governance.services.notifications import NewNotification, notify_many

log = logging.getLogger(__name__)

BATCH = 500
EXPIRING_STATUSES = (EvidenceStatus.APPROVED, EvidenceStatus.IN_REVIEW)


class FreshnessSettings(Protocol):
    @property
    def evidence_expiry_notice_days(self) -> int: ...


@dataclass(frozen=True)
class SweepResult:
    expired: int
    expired_notified: int
    expiring_notified: int


def last_valid_day(expires_at: datetime) -> str:
    """The day the evidence is last valid on, as people entered it (expires_at is the end of it, UTC)."""
    return f"{(expires_at - timedelta(microseconds=1)):%Y-%m-%d}"


Expired = tuple[uuid.UUID, str, uuid.UUID | None, datetime]


def _expire_batch(session: Session, status: EvidenceStatus, now: datetime) -> list[Expired]:
    due = (
        select(Evidence.id)
        .where(Evidence.status == status, Evidence.deleted_at.is_(None), Evidence.expires_at.is_not(None),
               Evidence.expires_at <= now)
        .order_by(Evidence.expires_at, Evidence.id)
        .limit(BATCH)
        # A concurrent sweep skips what this one is expiring (and so audits nothing twice).
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(Evidence)
        .where(Evidence.id.in_(due))
        .values(status=EvidenceStatus.EXPIRED)
        .returning(Evidence.id, Evidence.name, Evidence.owner_id, Evidence.expires_at)
        .execution_options(synchronize_session=False)
    ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows if r[3] is not None]  # never None: see the WHERE


def _rerun_freshness_checks(session: Session, evidence_ids: list[uuid.UUID]) -> None:
    """Expired evidence no longer counts: queue the evidence_freshness probes of its controls, so
    their checks (and the scores) say so without waiting for their schedule."""
    if not evidence_ids:
        return
    from governance.models.evidence import EvidenceLink
    from governance.services import probe_runs

    control_ids = session.scalars(
        select(EvidenceLink.control_id).where(EvidenceLink.evidence_id.in_(evidence_ids),
                                              EvidenceLink.control_id.is_not(None)).distinct()
    ).all()
    probe_runs.request_runs_for_controls(session, [c for c in control_ids if c is not None],
                                         kind="evidence_freshness")


def mark_expired(session: Session, now: datetime) -> tuple[int, int]:
    """Expire approved and in-review evidence whose expires_at <= now: one set-based UPDATE per
    batch, one audit entry per evidence, a notice to its owner. Returns (expired, owners notified)."""
    expired = notified = 0
    for status in EXPIRING_STATUSES:
        while True:
            rows = _expire_batch(session, status, now)
            notices = []
            for evidence_id, name, owner_id, expires_at in rows:
                audit.record(session, "evidence.expire", object_type="evidence", object_id=evidence_id,
                             before={"status": status}, after={"status": EvidenceStatus.EXPIRED},
                             details={"name": name, "expires_at": expires_at, "swept_at": now})
                if owner_id is not None:
                    notices.append(NewNotification(
                        user_id=owner_id, kind="evidence_expired",
                        title=f"Evidence expired: {name}",
                        body=(f"“{name}” was valid until the end of {last_valid_day(expires_at)} (UTC) and is now "
                              "expired: it no longer counts as evidence. Upload a current revision and send it "
                              "for review."),
                        link=f"/evidence/{evidence_id}",
                        dedup_key=f"evidence-expired:{evidence_id}:{expires_at.date().isoformat()}",
                    ))
            notified += len(notify_many(session, notices))
            # Each expiry is an alert too (the owner was told above, in these words: not twice).
            alerts.raise_many(session, [alerts.Raise(
                rule=alerts.EVIDENCE_EXPIRED, subject_type="evidence", subject_id=evidence_id,
                title=f"Evidence expired: {name}", severity=alerts.RULES[alerts.EVIDENCE_EXPIRED].severity,
                owner_id=owner_id, notify_owner=False,
                message=f"Valid until the end of {last_valid_day(expires_at)} (UTC); upload a current revision.",
                details={"name": name, "expires_at": expires_at}) for evidence_id, name, owner_id, expires_at in rows])
            expired += len(rows)
            _rerun_freshness_checks(session, [r[0] for r in rows])
            if len(rows) < BATCH:
                break
    if expired:
        # The UPDATE bypassed the identity map: objects loaded earlier must not show the old status.
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Evidence):
                session.expire(obj, ["status"])
    return expired, notified


def notify_expiring(session: Session, now: datetime, days: int) -> int:
    """Tell owners of live approved evidence expiring within `days` (after now, up to now + days):
    one notice per evidence and expiry date. Returns how many notices are new."""
    horizon = now + timedelta(days=days)
    created = 0
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        stmt = (
            select(Evidence.id, Evidence.name, Evidence.owner_id, Evidence.expires_at)
            .where(Evidence.status == EvidenceStatus.APPROVED, Evidence.deleted_at.is_(None),
                   Evidence.expires_at.is_not(None), Evidence.expires_at > now, Evidence.expires_at <= horizon,
                   Evidence.owner_id.is_not(None))
            .order_by(Evidence.expires_at, Evidence.id)
            .limit(BATCH)
        )
        if after is not None:
            stmt = stmt.where((Evidence.expires_at > after[0])
                              | ((Evidence.expires_at == after[0]) & (Evidence.id > after[1])))
        rows = session.execute(stmt).all()
        notices = []
        for evidence_id, name, owner_id, expires_at in rows:
            if owner_id is None or expires_at is None:  # excluded by the WHERE; for the type checker
                continue
            left = max(0, (expires_at - now).days)
            notices.append(NewNotification(
                user_id=owner_id, kind="evidence_expiring",
                title=f"Evidence expires soon: {name}",
                body=(f"“{name}” is valid until the end of {last_valid_day(expires_at)} (UTC), "
                      f"{'less than a day' if left == 0 else f'{left} day(s)'} from now. Upload a current "
                      "revision before then so the control keeps its evidence."),
                link=f"/evidence/{evidence_id}",
                dedup_key=f"evidence-expiring:{evidence_id}:{expires_at.date().isoformat()}",
            ))
        created += len(notify_many(session, notices))
        if len(rows) < BATCH:
            return created
        last_expiry = rows[-1][3]
        assert last_expiry is not None
        after = (last_expiry, rows[-1][0])


def sweep(session: Session, settings: FreshnessSettings, now: datetime) -> SweepResult:
    """Both steps in the caller's transaction (flushed, not committed)."""
    expired, expired_notified = mark_expired(session, now)
    expiring = notify_expiring(session, now, settings.evidence_expiry_notice_days)
    return SweepResult(expired, expired_notified, expiring)


def run_freshness(session_factory: Callable[[], Session], settings: FreshnessSettings, *, now: datetime | None = None,
                  actor_name: str = "job:evidence_freshness") -> SweepResult:
    """The sweep in a session and transaction of its own (the job queue), audited as `actor_name`.
    (`flask evidence sweep` runs sweep() in the app's session, like the other commands.)"""
    ctx = context.ActionContext(actor_name=actor_name)
    with context.acting_as(ctx), session_factory() as session:
        moment = now or session.scalar(select(func.now()))
        assert moment is not None
        result = sweep(session, settings, moment)
        session.commit()
    if result.expired or result.expiring_notified:
        log.info("evidence freshness: %d expired (%d owner(s) told), %d expiry notice(s)",
                 result.expired, result.expired_notified, result.expiring_notified)
    return result
