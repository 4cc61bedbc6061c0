"""Sign-in throttling per account and per IP, counted in PostgreSQL so every worker agrees.

Rule: when `max_failures` failed attempts for an e-mail (or from an IP) fall within `window_minutes`
of each other, after the last successful sign-in for it, further attempts are refused until
`lockout_minutes` after the newest of those failures. Refused attempts are not recorded as
failures (they are audited): otherwise every try during a lockout would restart it, and "try
again in 3 minutes" would turn into 15 when the user did.
Unknown e-mails are counted like real ones, so a lockout says nothing about whether an account exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from governance.models.identity import LoginAttempt


@dataclass(frozen=True)
class Limits:
    max_failures: int = 5
    window_minutes: int = 15
    lockout_minutes: int = 15

    @classmethod
    def from_settings(cls, settings: object) -> Limits:
        return cls(
            max_failures=getattr(settings, "login_max_failures", 5),
            window_minutes=getattr(settings, "login_window_minutes", 15),
            lockout_minutes=getattr(settings, "login_lockout_minutes", 15),
        )


@dataclass(frozen=True)
class Lockout:
    until: datetime
    minutes_left: int
    scope: str  # "account" or "ip": for the audit log only, never shown (it would hint at accounts)

    @property
    def message(self) -> str:
        unit = "minute" if self.minutes_left == 1 else "minutes"
        return f"Too many failed sign-ins. Try again in {self.minutes_left} {unit}."


def normalise_email(email: str) -> str:
    return email.strip().lower()


def record(session: Session, email: str, ip: str | None, *, succeeded: bool) -> None:
    # clock_timestamp(), not now(): attempts inside one transaction must still be told apart in time.
    session.add(LoginAttempt(email=normalise_email(email)[:320], ip=ip, succeeded=succeeded,
                             created_at=func.clock_timestamp()))
    session.flush()


def _lockout_for(session: Session, key: ColumnElement[bool], limits: Limits, now: datetime,
                 scope: str) -> Lockout | None:
    last_success = (select(func.max(LoginAttempt.created_at))
                    .where(key, LoginAttempt.succeeded.is_(True)).scalar_subquery())
    horizon = now - timedelta(minutes=limits.window_minutes + limits.lockout_minutes)
    newest = session.scalars(
        select(LoginAttempt.created_at)
        .where(key, LoginAttempt.succeeded.is_(False), LoginAttempt.created_at > horizon,
               LoginAttempt.created_at > func.coalesce(last_success, horizon))
        .order_by(LoginAttempt.created_at.desc())
        .limit(limits.max_failures)
    ).all()
    if len(newest) < limits.max_failures or limits.max_failures <= 0:
        return None
    if newest[0] - newest[-1] > timedelta(minutes=limits.window_minutes):
        return None
    until = newest[0] + timedelta(minutes=limits.lockout_minutes)
    if now >= until:
        return None
    return Lockout(until=until, minutes_left=max(1, math.ceil((until - now).total_seconds() / 60)), scope=scope)


def lockout(session: Session, email: str, ip: str | None, limits: Limits) -> Lockout | None:
    """The lockout in force for this e-mail or this IP (the later-ending one), or None."""
    now = session.scalar(select(func.clock_timestamp()))
    assert now is not None
    found = [_lockout_for(session, LoginAttempt.email == normalise_email(email), limits, now, "account")]
    if ip:
        found.append(_lockout_for(session, LoginAttempt.ip == ip, limits, now, "ip"))
    active = [f for f in found if f is not None]
    return max(active, key=lambda f: f.until) if active else None
