"""The shared read cache: derived, re-computable results (rendered dashboard widgets, later report
queries) kept in PostgreSQL so every worker process and machine sees one copy.

An entry is current only while its scope's generation is the one it was computed under: triggers
on the source tables (migration 0009) bump the generation when a transaction that wrote them
commits, so any write, from the ORM, a job or raw SQL, invalidates. See governance.services.read_cache.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, Text, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from governance.models.base import Base, UUIDPk


class CacheGeneration(UUIDPk, Base):
    """One row per cache scope (the migration inserts them); generation only ever grows."""

    __tablename__ = "cache_generations"

    scope: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                 server_default=func.now())


class CacheEntry(UUIDPk, Base):
    """A cached value under (scope, key), valid for `generation` only. UNLOGGED: a cache needs no
    WAL, and after a crash PostgreSQL empties it, which only costs a recomputation."""

    __tablename__ = "cache_entries"
    __table_args__ = (UniqueConstraint("scope", "key"), {"prefixes": ["UNLOGGED"]})

    scope: Mapped[str] = mapped_column(String(64), nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
