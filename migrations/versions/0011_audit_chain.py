"""audit_logs append-only and hash-chained; schema changes audited (docs/audit.md).

- Triggers refuse UPDATE and DELETE (per row, on the partitioned table, so every partition present
  and future) and TRUNCATE (per statement, on audit_logs and on each partition: statement triggers
  are not inherited; governance.services.partitions adds it to new partitions) to every role but
  governance_break_glass. A TRUNCATE that finds the table already empty destroys nothing and is let
  through, so a TRUNCATE ... CASCADE of users (which audit_logs references) still works once the
  break-glass role has emptied the log.
- The role governance_break_glass (NOLOGIN) is created if missing and granted SELECT, UPDATE,
  DELETE, TRUNCATE on audit_logs and its partitions. Roles belong to the cluster, not the database:
  downgrade revokes its privileges here but does not drop it (other databases may use it).
- seq, prev_hash, hash and audit_chain_heads: a BEFORE INSERT trigger (SECURITY DEFINER, so the app
  role needs no privilege on audit_chain_heads) links each entry to the head row it locks (or to the
  transaction's own last entry); a deferred constraint trigger moves the head at commit. Existing
  rows are chained in (created_at, id) order.
- Event triggers (ddl_command_end, sql_drop) record every schema change as an audit entry
  "schema.change" and raise a deduplicated "schema.change" alert unless the transaction set
  governance.expected_ddl (migrations, partition maintenance). Event triggers need a superuser: when
  the migrating role is not one, a NOTICE says so and docs/audit.md says how to add them later.

The canonical bytes here must stay identical to governance.services.audit_chain.canonical_bytes.

Revision ID: 0011_audit_chain
Revises: 0010_alerts_tasks
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_audit_chain"
down_revision = "0010_alerts_tasks"
branch_labels = None
depends_on = None

BREAK_GLASS = "governance_break_glass"

# NULL -> 0x00; a value -> 0x01, its UTF-8 length as 4 bytes big-endian, its UTF-8 bytes.
FIELD_FUNCTION = r"""
CREATE FUNCTION audit_field(value text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN value IS NULL THEN '\x00'::bytea
              ELSE '\x01'::bytea || int4send(octet_length(convert_to(value, 'UTF8'))) || convert_to(value, 'UTF8')
         END
$$
"""

# "gov.audit.v1" 0x00, then the fields in this order; created_at as integer microseconds since the
# Unix epoch (UTC), details as jsonb's text output: nothing depends on the session's TimeZone,
# DateStyle or client encoding.
CANONICAL_FUNCTION = r"""
CREATE FUNCTION audit_log_canonical(
  p_id uuid, p_seq bigint, p_created_at timestamptz, p_actor_id uuid, p_actor_name text,
  p_action text, p_object_type text, p_object_id text, p_outcome text, p_ip inet,
  p_user_agent text, p_request_id text, p_details jsonb) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT convert_to('gov.audit.v1', 'UTF8') || '\x00'::bytea
      || audit_field(p_id::text)
      || audit_field(p_seq::text)
      || audit_field((extract(epoch FROM p_created_at) * 1000000)::bigint::text)
      || audit_field(p_actor_id::text)
      || audit_field(p_actor_name)
      || audit_field(p_action)
      || audit_field(p_object_type)
      || audit_field(p_object_id)
      || audit_field(p_outcome)
      || audit_field(p_ip::text)
      || audit_field(p_user_agent)
      || audit_field(p_request_id)
      || audit_field(p_details::text)
$$
"""

# The head row is locked for every entry (writers queue on it: one chain) but moved only once per
# transaction, at commit (audit_logs_chain_head below): updating one row for every entry of a big
# transaction would leave a chain of dead row versions that each later lookup walks (quadratic).
# So within the transaction, entries past the head are this transaction's own: the last one by seq
# is the link.
CHAIN_FUNCTION = r"""
CREATE FUNCTION audit_logs_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  head record;
  last record;
BEGIN
  -- The lock queues concurrent writers until the holder commits or rolls back.
  SELECT seq, hash INTO head FROM audit_chain_heads WHERE chain = 'audit_logs' FOR UPDATE;
  IF NOT FOUND THEN
    -- An emptied log (break-glass TRUNCATE of both tables) starts again from the genesis head.
    INSERT INTO audit_chain_heads (chain, seq, hash)
    VALUES ('audit_logs', 0, decode(repeat('00', 32), 'hex')) ON CONFLICT (chain) DO NOTHING;
    SELECT seq, hash INTO head FROM audit_chain_heads WHERE chain = 'audit_logs' FOR UPDATE;
  END IF;
  SELECT seq, hash INTO last FROM audit_logs ORDER BY seq DESC LIMIT 1;
  IF FOUND AND last.seq > head.seq THEN
    head := last;
  END IF;
  NEW.seq := head.seq + 1;
  NEW.prev_hash := head.hash;
  NEW.hash := sha256(head.hash || audit_log_canonical(
    NEW.id, NEW.seq, NEW.created_at, NEW.actor_id, NEW.actor_name, NEW.action, NEW.object_type,
    NEW.object_id, NEW.outcome::text, NEW.ip, NEW.user_agent, NEW.request_id, NEW.details));
  RETURN NEW;
END
$$
"""

# Deferred to commit, once per entry: the first firing moves the head to the transaction's last
# entry and notes its seq (transaction-local), the later ones see that note and return at once.
# (With SET CONSTRAINTS ... IMMEDIATE they fire after each statement; each statement's first moves
# the head on.) A forged note only leaves the head behind: the next writer links to the last
# entry anyway, and `flask audit verify` reports the stale head.
HEAD_FUNCTION = r"""
CREATE FUNCTION audit_logs_chain_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  moved text := current_setting('governance.audit_head_moved', true);
  top record;
BEGIN
  IF moved ~ '^[0-9]{1,18}$' AND NEW.seq <= moved::bigint THEN
    RETURN NULL;
  END IF;
  SELECT seq, hash INTO top FROM audit_logs ORDER BY seq DESC LIMIT 1;
  UPDATE audit_chain_heads SET seq = top.seq, hash = top.hash
   WHERE chain = 'audit_logs' AND seq < top.seq;
  PERFORM set_config('governance.audit_head_moved', top.seq::text, true);
  RETURN NULL;
END
$$
"""

REFUSE_FUNCTION = r"""
CREATE FUNCTION audit_logs_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  has_rows boolean;
BEGIN
  IF current_user = 'governance_break_glass' THEN
    IF TG_LEVEL = 'ROW' AND TG_OP = 'DELETE' THEN
      RETURN OLD;
    END IF;
    RETURN NEW;
  END IF;
  IF TG_OP = 'TRUNCATE' THEN
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM ' || quote_ident(TG_TABLE_SCHEMA) || '.'
            || quote_ident(TG_TABLE_NAME) || ')' INTO has_rows;
    IF NOT has_rows THEN
      RETURN NULL;
    END IF;
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = 'insufficient_privilege',
    MESSAGE = 'audit_logs is append-only: ' || TG_OP || ' on ' || TG_TABLE_NAME
              || ' refused for role ' || current_user,
    HINT = 'A correction is a new entry. Emergency changes: SET ROLE governance_break_glass (docs/audit.md).';
END
$$
"""

# One audit entry per DDL command (its objects listed in details), one alert per command's main
# object. SECURITY DEFINER: whoever runs DDL may lack INSERT on audit_logs and alerts.
RECORD_FUNCTION = r"""
CREATE FUNCTION audit_record_schema_change(
  p_tag text, p_object_type text, p_identity text, p_objects jsonb, p_session_user text,
  p_current_user text, p_alert boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  expected text := nullif(current_setting('governance.expected_ddl', true), '');
  subject text := coalesce(p_identity, p_tag || ' ' || coalesce(p_object_type, ''));
  actor text := p_session_user
    || CASE WHEN p_current_user IS DISTINCT FROM p_session_user THEN ' as ' || p_current_user ELSE '' END;
  info jsonb;
BEGIN
  -- DROP TABLE audit_logs / alerts itself: nothing left to write into.
  IF to_regclass('public.audit_logs') IS NULL THEN
    RETURN;
  END IF;
  info := jsonb_build_object(
    'command_tag', p_tag, 'object_type', p_object_type, 'object_identity', p_identity,
    'objects', p_objects, 'expected', expected IS NOT NULL, 'expected_reason', expected,
    'session_user', p_session_user, 'current_user', p_current_user);
  INSERT INTO audit_logs (actor_name, action, object_type, object_id, outcome, details)
  VALUES (left('db:' || actor, 255), 'schema.change', 'schema', left(subject, 255), 'success', info);
  IF expected IS NULL AND p_alert AND to_regclass('public.alerts') IS NOT NULL THEN
    INSERT INTO alerts (rule, severity, title, details, source_type, source_id, dedup_key)
    VALUES ('schema.change', 'high', left('Schema change outside a migration: ' || p_tag || ' ' || subject, 500),
            info, 'schema', left(subject, 255), left('schema.change:' || subject, 255))
    ON CONFLICT (dedup_key) WHERE status <> 'resolved' AND dedup_key IS NOT NULL
    DO UPDATE SET occurrences = alerts.occurrences + 1, last_seen_at = now();
  END IF;
END
$$
"""

DDL_END_FUNCTION = r"""
CREATE FUNCTION audit_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  objects jsonb;
  main record;
BEGIN
  SELECT jsonb_agg(jsonb_build_object('command_tag', c.command_tag, 'object_type', c.object_type,
                                      'object_identity', c.object_identity) ORDER BY c.ordinality)
    INTO objects
    FROM pg_event_trigger_ddl_commands() WITH ORDINALITY AS c
   WHERE NOT c.in_extension AND left(coalesce(c.schema_name, ''), 7) <> 'pg_temp';
  IF objects IS NULL THEN
    RETURN;  -- temporary objects only, or a command that reports none (DROP: see audit_sql_drop)
  END IF;
  SELECT c.command_tag, c.object_type, c.object_identity INTO main
    FROM pg_event_trigger_ddl_commands() WITH ORDINALITY AS c
   WHERE NOT c.in_extension AND left(coalesce(c.schema_name, ''), 7) <> 'pg_temp'
   ORDER BY (c.command_tag = tg_tag) DESC, c.ordinality LIMIT 1;
  PERFORM audit_record_schema_change(tg_tag, main.object_type, main.object_identity, objects,
                                     session_user::text, current_user::text, true);
END
$$
"""

SQL_DROP_FUNCTION = r"""
CREATE FUNCTION audit_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  objects jsonb;
  main record;
BEGIN
  SELECT jsonb_agg(jsonb_build_object('object_type', d.object_type, 'object_identity', d.object_identity)
                   ORDER BY d.ordinality)
    INTO objects
    FROM pg_event_trigger_dropped_objects() WITH ORDINALITY AS d
   WHERE d.original AND NOT d.is_temporary;
  IF objects IS NULL THEN
    RETURN;
  END IF;
  SELECT d.object_type, d.object_identity INTO main
    FROM pg_event_trigger_dropped_objects() WITH ORDINALITY AS d
   WHERE d.original AND NOT d.is_temporary ORDER BY d.ordinality LIMIT 1;
  -- ALTER TABLE ... DROP COLUMN also lands here: its ALTER TABLE entry (ddl_command_end) alerts.
  PERFORM audit_record_schema_change(tg_tag, main.object_type, main.object_identity, objects,
                                     session_user::text, current_user::text, left(tg_tag, 4) = 'DROP');
END
$$
"""

CREATE_ROLE = f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{BREAK_GLASS}') THEN
    CREATE ROLE {BREAK_GLASS} NOLOGIN;
  END IF;
EXCEPTION
  WHEN duplicate_object OR unique_violation THEN NULL;  -- created meanwhile by another database's migration
  WHEN insufficient_privilege THEN
    RAISE EXCEPTION USING MESSAGE = 'the role {BREAK_GLASS} is missing and this role may not create it',
      HINT = 'As a superuser: CREATE ROLE {BREAK_GLASS} NOLOGIN; then migrate again.';
END
$$
"""

# Partition maintenance moves rows stranded in the DEFAULT partition (a DELETE only the break-glass
# role may run); a non-superuser owner needs to be able to SET ROLE to it for that.
GRANT_ROLE_TO_OWNER = f"""
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'GRANT {BREAK_GLASS} TO ' || quote_ident(current_user);
  END IF;
EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
  RAISE NOTICE 'could not grant {BREAK_GLASS} to the migrating role: partition maintenance cannot move '
               'audit rows out of the default partition (docs/audit.md)';
END
$$
"""

CREATE_EVENT_TRIGGERS = """
DO $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    CREATE EVENT TRIGGER audit_ddl_command_end ON ddl_command_end EXECUTE FUNCTION audit_ddl_command_end();
    CREATE EVENT TRIGGER audit_sql_drop ON sql_drop EXECUTE FUNCTION audit_sql_drop();
  ELSE
    RAISE NOTICE 'schema changes are not audited: event triggers need a superuser. As one, run: '
                 'CREATE EVENT TRIGGER audit_ddl_command_end ON ddl_command_end EXECUTE FUNCTION audit_ddl_command_end(); '
                 'CREATE EVENT TRIGGER audit_sql_drop ON sql_drop EXECUTE FUNCTION audit_sql_drop(); (docs/audit.md)';
  END IF;
END
$$
"""

BACKFILL = r"""
DO $$
DECLARE
  r record;
  n bigint := 0;
  prev bytea := decode(repeat('00', 32), 'hex');
  h bytea;
BEGIN
  FOR r IN SELECT * FROM audit_logs ORDER BY created_at, id LOOP
    n := n + 1;
    h := sha256(prev || audit_log_canonical(
      r.id, n, r.created_at, r.actor_id, r.actor_name, r.action, r.object_type, r.object_id,
      r.outcome::text, r.ip, r.user_agent, r.request_id, r.details));
    UPDATE audit_logs SET seq = n, prev_hash = prev, hash = h WHERE id = r.id AND created_at = r.created_at;
    prev := h;
  END LOOP;
  INSERT INTO audit_chain_heads (chain, seq, hash) VALUES ('audit_logs', n, prev);
END
$$
"""


def _audit_partitions() -> list[str]:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'audit_logs'::regclass ORDER BY c.relname"
        )
    )
    return [str(name) for name in rows.scalars()]


def upgrade() -> None:
    op.create_table(
        "audit_chain_heads",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_heads")),
        sa.UniqueConstraint("chain", name=op.f("uq_audit_chain_heads_chain")),
    )
    op.execute(
        "CREATE TRIGGER audit_chain_heads_set_updated_at BEFORE UPDATE ON audit_chain_heads "
        "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
    )

    op.add_column("audit_logs", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("audit_logs", sa.Column("prev_hash", sa.LargeBinary(), nullable=True))
    op.add_column("audit_logs", sa.Column("hash", sa.LargeBinary(), nullable=True))
    op.execute(FIELD_FUNCTION)
    op.execute(CANONICAL_FUNCTION)
    op.execute(BACKFILL)
    for column in ("seq", "prev_hash", "hash"):
        op.alter_column("audit_logs", column, nullable=False)
    op.create_index("ix_audit_logs_seq", "audit_logs", ["seq"], unique=False)

    op.execute(CHAIN_FUNCTION)
    op.execute(
        "CREATE TRIGGER audit_logs_chain BEFORE INSERT ON audit_logs "
        "FOR EACH ROW EXECUTE FUNCTION audit_logs_chain()"
    )
    op.execute(HEAD_FUNCTION)
    op.execute(
        "CREATE CONSTRAINT TRIGGER audit_logs_chain_head AFTER INSERT ON audit_logs "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_logs_chain_head()"
    )
    op.execute(REFUSE_FUNCTION)
    op.execute(
        "CREATE TRIGGER audit_logs_refuse_change BEFORE UPDATE OR DELETE ON audit_logs "
        "FOR EACH ROW EXECUTE FUNCTION audit_logs_refuse_change()"
    )
    op.execute(CREATE_ROLE)
    op.execute(GRANT_ROLE_TO_OWNER)
    for table in ["audit_logs", *_audit_partitions()]:
        op.execute(
            f"CREATE TRIGGER audit_logs_refuse_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_refuse_change()"
        )
        op.execute(f"GRANT SELECT, UPDATE, DELETE, TRUNCATE ON {table} TO {BREAK_GLASS}")

    op.execute(RECORD_FUNCTION)
    op.execute(DDL_END_FUNCTION)
    op.execute(SQL_DROP_FUNCTION)
    # Last: from here on every DDL is audited (later migrations as expected, via migrations/env.py).
    op.execute(CREATE_EVENT_TRIGGERS)


def downgrade() -> None:
    op.execute("DROP EVENT TRIGGER IF EXISTS audit_sql_drop")
    op.execute("DROP EVENT TRIGGER IF EXISTS audit_ddl_command_end")
    op.execute("DROP FUNCTION audit_sql_drop()")
    op.execute("DROP FUNCTION audit_ddl_command_end()")
    op.execute("DROP FUNCTION audit_record_schema_change(text, text, text, jsonb, text, text, boolean)")
    for table in ["audit_logs", *_audit_partitions()]:
        op.execute(f"DROP TRIGGER IF EXISTS audit_logs_refuse_truncate ON {table}")
        # The role stays (it belongs to the cluster); its privileges here go.
        op.execute(f"REVOKE ALL ON {table} FROM {BREAK_GLASS}")
    op.execute("DROP TRIGGER audit_logs_refuse_change ON audit_logs")
    op.execute("DROP FUNCTION audit_logs_refuse_change()")
    op.execute("DROP TRIGGER audit_logs_chain_head ON audit_logs")
    op.execute("DROP FUNCTION audit_logs_chain_head()")
    op.execute("DROP TRIGGER audit_logs_chain ON audit_logs")
    op.execute("DROP FUNCTION audit_logs_chain()")
    op.drop_index("ix_audit_logs_seq", table_name="audit_logs")
    for column in ("hash", "prev_hash", "seq"):
        op.drop_column("audit_logs", column)
    op.execute(
        "DROP FUNCTION audit_log_canonical(uuid, bigint, timestamptz, uuid, text, text, text, text, text, "
        "inet, text, text, jsonb)"
    )
    op.execute("DROP FUNCTION audit_field(text)")
    op.drop_table("audit_chain_heads")
