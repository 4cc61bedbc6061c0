"""A read cache shared by every worker process and machine, invalidated by the writes that change
what it holds (the seed's query optimisation: cached read-heavy dashboard and report queries).

How it stays correct: each scope (e.g. "dashboard") has a generation in cache_generations that
triggers on the scope's source tables (SOURCES; migration 0009) increase when a transaction that
wrote them commits, whatever wrote them (ORM, job, raw SQL). A reader fetches the generation and
the entries stored under it in one statement, computes what is missing *after* that read and
stores it under the generation it read. Under READ COMMITTED the computed value is therefore at
least as new as that generation; if a write commits meanwhile, the generation moves on and the
entry is never served. Entries also expire after `max_age` (for what depends on the clock: what
is overdue, what expires within 30 days).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from governance.models.cache import CacheEntry, CacheGeneration

DASHBOARD = "dashboard"
REPORTS = "reports"  # statements of applicability (governance.services.reports.soa; migration 0015)
CATALOG = "catalog"  # control counts per framework and the framework page's first tree level (migration 0016)

# scope -> the tables whose writes invalidate it (the migration installs a trigger on each).
SOURCES: dict[str, frozenset[str]] = {
    DASHBOARD: frozenset({"frameworks", "controls", "evidence", "users", "tasks", "alerts", "current_scores",
                          "metrics", "probes", "checks", "check_controls"}),
    REPORTS: frozenset({"frameworks", "controls", "evidence", "evidence_links", "users", "tasks", "alerts",
                        "probes", "checks", "check_controls", "ai_systems", "ai_system_controls"}),
    CATALOG: frozenset({"frameworks", "controls"}),
}

_entries = cast(Table, CacheEntry.__table__)


@dataclass(frozen=True)
class Cached:
    value: str
    computed_at: datetime
    hit: bool


def fetch(session: Session, scope: str, keys: Iterable[str]) -> tuple[int | None, dict[str, Cached]]:
    """One statement: the scope's generation and the entries of `keys` stored under it.
    (None, {}) when the scope has no generation row (then nothing can be cached)."""
    wanted = list(keys)
    rows = session.execute(
        select(CacheGeneration.generation, CacheEntry.key, CacheEntry.value, CacheEntry.computed_at)
        .outerjoin(CacheEntry, (CacheEntry.scope == CacheGeneration.scope)
                   & (CacheEntry.generation == CacheGeneration.generation) & CacheEntry.key.in_(wanted))
        .where(CacheGeneration.scope == scope)
    ).all()
    if not rows:
        return None, {}
    found = {r.key: Cached(r.value, r.computed_at, True) for r in rows if r.key is not None}
    return int(rows[0].generation), found


def store(session: Session, scope: str, generation: int, key: str, value: str, computed_at: datetime) -> None:
    """Upsert; an entry of a newer generation is never overwritten by an older one. The caller
    commits (a cache row is not domain data: nothing is audited)."""
    stmt = insert(_entries).values(scope=scope, key=key, generation=generation, value=value,
                                   computed_at=computed_at)
    session.execute(stmt.on_conflict_do_update(
        constraint="uq_cache_entries_scope_key",
        set_={"generation": stmt.excluded.generation, "value": stmt.excluded.value,
              "computed_at": stmt.excluded.computed_at},
        where=_entries.c.generation <= stmt.excluded.generation,
    ))


def get_or_compute(session: Session, scope: str, loaders: dict[str, Callable[[datetime], str]],
                   max_age: timedelta, now: datetime | None = None) -> dict[str, Cached]:
    """The value of each key: cached when current and younger than max_age, else loaders[key](now)
    (stored for the next reader). max_age of zero turns the cache off. Returns whether anything was
    stored, through `hit` on each value; the caller commits when something was."""
    now = now or datetime.now(UTC)
    if max_age <= timedelta(0):
        return {key: Cached(load(now), now, False) for key, load in loaders.items()}
    generation, found = fetch(session, scope, loaders)
    result: dict[str, Cached] = {}
    for key, load in loaders.items():
        entry = found.get(key)
        if entry is not None and now - entry.computed_at < max_age:
            result[key] = entry
            continue
        value = load(now)
        if generation is not None:
            store(session, scope, generation, key, value, now)
        result[key] = Cached(value, now, False)
    return result


def generation(session: Session, scope: str) -> int | None:
    return session.execute(select(CacheGeneration.generation).where(CacheGeneration.scope == scope)).scalar()
