"""Alembic environment for Flask-Migrate (`flask db …`).

Differences from Flask-Migrate's template: the engine is `db.engine` (not the deprecated
`db.get_engine()`), types are compared, and autogenerate / `flask db check` ignore objects that are
not ours to compare: monthly partitions of our partitioned tables (created at run time by
governance.services.partitions) and tables owned by other tools (procrastinate's queue).
"""

from __future__ import annotations

import logging
import re
from logging.config import fileConfig
from typing import Any

from alembic import context
from flask import current_app
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from governance.services.partitions import PARTITIONED_TABLES

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db

# <partitioned table>_pYYYY_MM and <partitioned table>_default
_PARENTS = "|".join(re.escape(name) for name in PARTITIONED_TABLES)
PARTITION_CHILD = re.compile(rf"^(?:{_PARENTS})_(?:p\d{{4}}_\d{{2}}|default)$")
# A migration's DDL is expected: the schema-change event trigger (migration 0011, docs/audit.md)
# audits it without raising an alert. Set for the migration connection's session, not its
# transaction: a migration's autocommit_block() (0005) commits and begins a new transaction, and
# every later migration's DDL would otherwise raise a "schema change outside a migration" alert.
# RESET when the migrations end (the connection may go back to the app's pool).
EXPECTED_DDL = "SET governance.expected_ddl = 'migration'"
EXPECTED_DDL_RESET = "RESET governance.expected_ddl"
# Deferred trigger events (the audit chain's head move, the read cache's bumps) pending on a table
# make PostgreSQL refuse a later ALTER / TRUNCATE of it in the same transaction; the schema-change
# trigger writes audit entries during the migration, so fire such events per statement here.
IMMEDIATE = "SET CONSTRAINTS ALL IMMEDIATE"


def _after_each_migration(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
    """SET CONSTRAINTS is transaction-local: again after each step (one may have begun a new one)."""
    ctx.connection.exec_driver_sql(IMMEDIATE)
# Tables (and their indexes) that other tools create and migrate themselves.
FOREIGN_TABLE_PREFIXES = ("procrastinate_",)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (
        type_ == "table"
        and name is not None
        and (PARTITION_CHILD.match(name) is not None or name.startswith(FOREIGN_TABLE_PREFIXES))
    )


def _admin_url() -> str | None:
    """DATABASE_ADMIN_URL when set: migrations run as the schema's owner, while the app's own
    engine may be the least-privilege service role (docs/database-security.md)."""
    settings = current_app.config.get("SETTINGS")
    return getattr(settings, "database_admin_url", None) or None


def get_engine_url() -> str:
    url = _admin_url() or target_db.engine.url.render_as_string(hide_password=False)
    return url.replace("%", "%%")


config.set_main_option("sqlalchemy.url", get_engine_url())


def get_metadata() -> Any:
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=get_metadata(),
        literal_binds=True,
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.execute(EXPECTED_DDL)
        context.execute(IMMEDIATE)
        context.run_migrations()


def run_migrations_online() -> None:
    # Do not write an empty revision when autogenerate finds nothing.
    def process_revision_directives(context: Any, revision: Any, directives: list[Any]) -> None:
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args["compare_type"] = True
    conf_args.setdefault("include_name", include_name)

    admin_url = _admin_url()
    engine = create_engine(admin_url, poolclass=NullPool) if admin_url else target_db.engine
    try:
        with engine.connect() as connection:
            conf_args.setdefault("on_version_apply", _after_each_migration)
            context.configure(connection=connection, target_metadata=get_metadata(), **conf_args)
            connection.exec_driver_sql(EXPECTED_DDL)
            connection.commit()
            try:
                with context.begin_transaction():
                    context.execute(IMMEDIATE)
                    context.run_migrations()
            finally:
                connection.rollback()
                connection.exec_driver_sql(EXPECTED_DDL_RESET)
                connection.commit()
    finally:
        if admin_url:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
