"""Default ORM queries hide soft-deleted rows.

Every SELECT issued through an ORM Session gets `deleted_at IS NULL` for each SoftDelete entity it
touches (including joins, relationship loads and aliases), unless the statement opts out with
`.execution_options(include_deleted=True)`.

Only ORM statements are filtered: Core `session.execute(text(...))` or `connection.execute(table...)`
see everything, which is what migrations, partition maintenance and reports over history need.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, scoped_session, sessionmaker, with_loader_criteria

from governance.models.base import SoftDelete

INCLUDE_DELETED = "include_deleted"


def _hide_deleted(state: ORMExecuteState) -> None:
    if (
        state.is_select
        and not state.is_column_load
        and not state.is_relationship_load
        and not state.execution_options.get(INCLUDE_DELETED, False)
    ):
        state.statement = state.statement.options(
            with_loader_criteria(
                SoftDelete,
                lambda cls: cls.deleted_at.is_(None),
                include_aliases=True,
            )
        )


def install_soft_delete_filter(
    target: type[Session] | Session | sessionmaker[Any] | scoped_session[Any],
) -> None:
    """Attach the filter to a Session class, a session, a sessionmaker or a scoped_session.

    Idempotent: installing twice on the same target does not add a second listener.
    Relationship and column (refresh) loads are not re-filtered here: criteria added to the top-level
    SELECT propagate to lazy loads of the objects it returned (propagate_to_loaders), and a refresh of
    an object already in the session must still work after it was soft-deleted.
    """
    if not event.contains(target, "do_orm_execute", _hide_deleted):
        event.listen(target, "do_orm_execute", _hide_deleted)


def uninstall_soft_delete_filter(
    target: type[Session] | Session | sessionmaker[Any] | scoped_session[Any],
) -> None:
    if event.contains(target, "do_orm_execute", _hide_deleted):
        event.remove(target, "do_orm_execute", _hide_deleted)
