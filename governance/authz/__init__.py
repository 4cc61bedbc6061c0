"""Casbin enforcement: who (a role name) may do what (action) to which area (resource).

Subjects are role names: users → roles is many-to-one and there are no per-user rules, so the
request subject is the user's role. Rules live in the `permissions` table (owned by migration
0004_rbac_policy) and are read through casbin-sqlalchemy-adapter with `Permission` as its db_class.

FastEnforcer with cache_key_order (0, 1) looks only at the rules whose (role, resource) equal the
request's, so a check costs the same with ten rules or ten thousand. The price: wildcards in those
two positions would never match, so "admin may do everything" is written out rule by rule in the
migration. The effect is allow-unless-denied, so a `deny` rule (nobody updates or deletes
audit_log entries) wins over any allow added later.

Decisions are memoised per (role, resource, action) for the policy they were made under (casbin
compiles its matcher on every enforce: ten nav checks a page cost more than the page's own work);
the memo is dropped whenever the rules are reloaded or changed.

Freshness across workers: every worker compares a fingerprint of the table (one aggregate
statement) at the start of each checked request and reloads the rules when it changed, so a rule
changed through one worker is seen by all workers on their next request.
"""

from __future__ import annotations

import threading
from typing import Any

import casbin
from casbin.model import FastModel
from casbin_sqlalchemy_adapter import Adapter
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from governance.models.identity import Permission

MODEL_CONF = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = r.sub == p.sub && r.obj == p.obj && r.act == p.act
"""

# (role, resource) index: FastEnforcer filters candidate rules by these request positions.
CACHE_KEY_ORDER = (0, 1)

# One aggregate over (id, updated_at) of every rule: an insert or delete adds or removes a term, an
# update moves updated_at (the set_updated_at trigger) and so changes its term, even when a slower
# transaction commits an older timestamp after a newer one (where max(updated_at) would miss it).
# The sum of bigints is numeric in PostgreSQL: exact, no overflow.
FINGERPRINT_SQL = text(
    "SELECT coalesce(sum(hashtextextended(id::text || '@' || updated_at::text, 0)), 0) FROM permissions"
)


def build_enforcer(engine: Engine) -> casbin.FastEnforcer:
    """A FastEnforcer loaded from the permissions table. The adapter never creates tables: the
    migrations own the schema (create_all_models=False)."""
    adapter = Adapter(engine, db_class=Permission, create_all_models=False)
    model = FastModel(CACHE_KEY_ORDER)
    model.load_model_from_text(MODEL_CONF)
    return casbin.FastEnforcer(model, adapter, cache_key_order=CACHE_KEY_ORDER)


def fingerprint(session: Session | Any) -> tuple[Any, ...]:
    return tuple(session.execute(FINGERPRINT_SQL).one())


class Authorizer:
    """One per app (per worker process): the enforcer, the fingerprint it was loaded at, and a lock
    (FastEnforcer's filter mutates the policy during a check, so checks must not overlap)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._enforcer: casbin.FastEnforcer | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._decisions: dict[tuple[str, str, str], bool] = {}

    @property
    def enforcer(self) -> casbin.FastEnforcer:
        with self._lock:
            if self._enforcer is None:
                self._enforcer = build_enforcer(self._engine)
            return self._enforcer

    def refresh(self, session: Session | Any) -> bool:
        """Reload the rules if the table changed since they were loaded; True when it reloaded.

        The fingerprint is read before the rules, so a change committed in between only causes one
        more reload on the next request, never a stale policy."""
        current = fingerprint(session)
        if current == self._fingerprint and self._enforcer is not None:
            return False
        fresh = build_enforcer(self._engine)
        with self._lock:
            self._enforcer = fresh
            self._fingerprint = current
            self._decisions = {}
        return True

    def can(self, role_name: str | None, resource: str, action: str) -> bool:
        if not role_name:
            return False
        key = (role_name, resource, action)
        decided = self._decisions.get(key)
        if decided is not None:
            return decided
        enforcer = self.enforcer
        with self._lock:
            decided = bool(enforcer.enforce(role_name, resource, action))
            if enforcer is self._enforcer:  # not reloaded meanwhile
                self._decisions[key] = decided
            return decided

    def add_rule(self, role_name: str, resource: str, action: str, effect: str = "allow") -> bool:
        """Persist one rule through the adapter (commits) and apply it to this worker's policy."""
        enforcer = self.enforcer
        with self._lock:
            self._decisions = {}
            return bool(enforcer.add_policy(role_name, resource, action, effect))

    def remove_rule(self, role_name: str, resource: str, action: str, effect: str = "allow") -> bool:
        enforcer = self.enforcer
        with self._lock:
            self._decisions = {}
            return bool(enforcer.remove_policy(role_name, resource, action, effect))


def install(app: Any) -> Authorizer:
    """Give the app its Authorizer (app.extensions["authz"]); no database access until first use."""
    from extensions import db

    with app.app_context():
        found = Authorizer(db.engine)
    app.extensions["authz"] = found
    return found


def authorizer(app: Any) -> Authorizer:
    found = app.extensions.get("authz")
    return found if found is not None else install(app)


def can(role_name: str | None, resource: str, action: str) -> bool:
    """Whether `role_name` may perform `action` on `resource`, per the current app's rules."""
    from flask import current_app

    return authorizer(current_app).can(role_name, resource, action)
