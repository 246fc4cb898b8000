/* evrep--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION evrep" to load this file. \quit

/*
 * Internal state lives in schema evrep; the user-facing functions live in
 * the schema the extension is created in (public by default), so that
 * "SELECT evrep_publish('customer')" works with the default search_path.
 */
CREATE SCHEMA evrep;
REVOKE ALL ON SCHEMA evrep FROM PUBLIC;

-- Members of evrep_admin may publish, subscribe and replay without being
-- superuser.  Roles are cluster-wide, so another database may have made it.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'evrep_admin') THEN
		CREATE ROLE evrep_admin NOLOGIN;
	END IF;
END
$$;
GRANT USAGE ON SCHEMA evrep TO evrep_admin;

/*
 * One row per table this node publishes.  Rows are deactivated, not deleted,
 * by evrep_unpublish: outbox rows still pending refer to them, and last_seq
 * must never go backwards for subscribers that keep progress per stream.
 */
CREATE TABLE evrep.publication (
	id			serial PRIMARY KEY,
	relid		oid NOT NULL,
	schema_name text NOT NULL,
	table_name	text NOT NULL,
	key_columns text[] NOT NULL,
	active		boolean NOT NULL DEFAULT true,
	last_seq	bigint NOT NULL DEFAULT 0,	-- last number given to an event
	published_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (schema_name, table_name)
);

/*
 * Captured changes waiting for the broker's confirm.  seq is NULL until the
 * publisher numbers the row (in its own committed transaction, before
 * sending), so that numbers follow commit order, not INSERT order, and a
 * re-send after a crash reuses them.  Rows are deleted once confirmed.
 *
 * A queue table that is all churn bloats faster than autovacuum (one run a
 * minute at most) can clean it.  So, as PgQ does, writers insert into one
 * of two partitions (the slot the publisher chose, in shared memory) while
 * the publisher drains the other and empties it with TRUNCATE; no vacuum
 * is needed to get the space back.
 */
CREATE TABLE evrep.outbox (
	id			bigserial,
	slot		smallint NOT NULL,	-- the partition the row went to
	pub_id		integer NOT NULL,
	op			"char" NOT NULL,	-- i(nsert), u(pdate), d(elete)
	row_data	json NOT NULL,		-- new row, or old row for deletes
	seq			bigint,
	commit_ts	timestamptz,
	PRIMARY KEY (id, slot)
) PARTITION BY LIST (slot);

-- Less than half full: the publisher's numbering UPDATE of every row then
-- finds room on the row's own page, so it is a HOT update whose WAL record
-- holds only the new seq and commit_ts (prefix/suffix compression), not a
-- copy of the row and an index entry: 89 instead of 282 bytes per event
-- for rows of ~200 bytes (fillfactor 70 before).
CREATE TABLE evrep.outbox_0 PARTITION OF evrep.outbox FOR VALUES IN (0)
	WITH (fillfactor = 45);
CREATE TABLE evrep.outbox_1 PARTITION OF evrep.outbox FOR VALUES IN (1)
	WITH (fillfactor = 45);
-- Rows live for milliseconds: compressing a large one (a chunk of a copy)
-- costs more than storing it as it is.
ALTER TABLE evrep.outbox ALTER COLUMN row_data SET STORAGE EXTERNAL;

/* One row per remote table this node applies. */
CREATE TABLE evrep.subscription (
	schema_name text NOT NULL,
	table_name	text NOT NULL,
	relid		oid NOT NULL,
	owner		oid NOT NULL,		-- the apply runs as this role
	key_columns text[] NOT NULL,
	subscribed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (schema_name, table_name)
);

/*
 * Apply progress per origin and stream, written in the transaction that
 * applies the events.  Events up to last_seq are done except those inside
 * gaps (flattened [lo, hi] pairs): numbers seen missing, still expected.
 */
CREATE TABLE evrep.progress (
	origin		text NOT NULL,
	schema_name text NOT NULL,
	table_name	text NOT NULL,
	last_seq	bigint NOT NULL,
	gaps		bigint[] NOT NULL DEFAULT '{}',
	applied		bigint NOT NULL DEFAULT 0,
	skipped		bigint NOT NULL DEFAULT 0,
	parked		bigint NOT NULL DEFAULT 0,
	unknown_column_events bigint NOT NULL DEFAULT 0,	-- rows with columns this node lacks
	last_commit_ts timestamptz,		-- origin commit time of the last event
	last_applied_at timestamptz,
	PRIMARY KEY (origin, schema_name, table_name)
);

/* Events that could not be applied, kept for an operator to fix and replay. */
CREATE TABLE evrep.dead_letter (
	id			bigserial PRIMARY KEY,
	received_at timestamptz NOT NULL DEFAULT now(),
	origin		text,
	schema_name text,
	table_name	text,
	seq			bigint,
	sqlstate	text NOT NULL,
	error		text NOT NULL,
	body		text NOT NULL,		-- one-event envelope, or the raw message
	attempts	integer NOT NULL DEFAULT 1,	-- tries before it was parked
	replay_count integer NOT NULL DEFAULT 0,
	replayed_at timestamptz
);

/*
 * Which broker users may speak for which origin.  RabbitMQ vouches for a
 * message's AMQP user_id (it refuses one that differs from the publishing
 * connection's user); an origin without rows here is spoken for only by
 * the broker user of its own name.  A message whose sender may not speak
 * for its origin is parked whole and touches no table and no progress.
 */
CREATE TABLE evrep.sender (
	origin		text NOT NULL,
	broker_user text NOT NULL,
	PRIMARY KEY (origin, broker_user)
);

/*
 * Copy of existing rows, subscriber side: one row per subscribed table.
 * evrep_subscribe and evrep_resync start a new request (request_id, from
 * the clock so that it only grows); the consumer sends it to the table's
 * origin once its queue is bound, again every 10 s until the first chunk
 * arrives.  Chunks are events of the origin's stream, so they are applied
 * in order with the live changes; the applying transaction moves phase
 * and counts here.
 */
CREATE TABLE evrep.sync (
	schema_name text NOT NULL,
	table_name	text NOT NULL,
	request_id	bigint NOT NULL,
	phase		text NOT NULL CHECK (phase IN ('requested', 'copying', 'done', 'skipped')),
	origin		text,				-- the node the chunks came from
	rows_copied bigint NOT NULL DEFAULT 0,
	rows_estimated bigint,			-- the origin's estimate (pg_class.reltuples)
	chunks		bigint NOT NULL DEFAULT 0,
	requested_at timestamptz NOT NULL DEFAULT now(),
	request_sent_at timestamptz,
	started_at	timestamptz,		-- first chunk applied
	finished_at timestamptz,		-- last chunk applied
	last_chunk_at timestamptz,
	PRIMARY KEY (schema_name, table_name)
);

/*
 * Copy of existing rows, origin side: one job per published table and
 * requesting node.  The publisher reads the table in primary key order
 * after last_key, one chunk per round, in the transaction (and snapshot)
 * that numbers the outbox: the chunk's outbox row and last_key commit
 * together, so a restart goes on where it stopped.
 */
CREATE TABLE evrep.copy_job (
	pub_id		integer NOT NULL,
	requester	text NOT NULL,
	request_id	bigint NOT NULL,
	last_key	jsonb,				-- key of the last row sent; NULL: from the start
	rows_sent	bigint NOT NULL DEFAULT 0,
	rows_estimated bigint,
	chunks		bigint NOT NULL DEFAULT 0,
	requested_at timestamptz NOT NULL DEFAULT now(),
	started_at	timestamptz,
	finished_at timestamptz,
	PRIMARY KEY (pub_id, requester)
);

/*
 * The capture trigger.  Arguments: publication id, then the attribute
 * numbers of the primary key (to notice key changes).
 */
CREATE FUNCTION evrep.capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'evrep_capture'
LANGUAGE C;

/*
 * The management functions run as the caller: publishing needs the
 * TRIGGER privilege on the table, subscribing needs the privileges the
 * apply will use, and evrep_admin is granted just enough on evrep's own
 * tables to record the result.
 */
CREATE FUNCTION evrep._check_admin()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
	   AND NOT pg_catalog.pg_has_role(current_user, 'evrep_admin', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to manage evrep'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Only superusers and members of evrep_admin may publish, subscribe or replay.';
	END IF;
END
$$;

CREATE FUNCTION evrep._key_columns(rel regclass)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT array_agg(a.attname::text ORDER BY k.ord)
	FROM pg_catalog.pg_index i
	CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
	JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
	WHERE i.indrelid = rel AND i.indisprimary
$$;

-- Checks shared by publish and subscribe; returns schema, name and key.
CREATE FUNCTION evrep._check_table(rel regclass, privileges text,
								   OUT nsp text, OUT tbl text, OUT keys text[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM evrep._check_admin();
	IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = rel) NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '"%" is not a table', rel
			USING ERRCODE = 'wrong_object_type';
	END IF;
	IF NOT pg_catalog.has_table_privilege(rel, privileges) THEN
		RAISE EXCEPTION 'permission denied for table %', rel
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('evrep needs %s on it.', privileges);
	END IF;
	keys := evrep._key_columns(rel);
	IF keys IS NULL THEN
		RAISE EXCEPTION 'table % has no primary key', rel
			USING ERRCODE = 'invalid_table_definition',
				  HINT = 'evrep identifies rows by primary key; add one first.';
	END IF;
	-- ON CONFLICT cannot use a deferrable key, and the relcache does not
	-- count one as the primary key: every event would be parked later
	IF EXISTS (SELECT FROM pg_catalog.pg_index
			   WHERE indrelid = rel AND indisprimary AND NOT indimmediate) THEN
		RAISE EXCEPTION 'the primary key of table % is deferrable', rel
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Subscribers apply changes with INSERT ... ON CONFLICT on the primary key, which needs a key checked at once: make it NOT DEFERRABLE.';
	END IF;
	SELECT n.nspname, c.relname INTO nsp, tbl
	FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE c.oid = rel;
END
$$;

/*
 * evrep_publish: capture every change of a table into the outbox.
 */
CREATE FUNCTION evrep_publish(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
	attnums text;
	pid integer;
BEGIN
	t := evrep._check_table(rel, 'TRIGGER');
	IF EXISTS (SELECT FROM evrep.publication p
			   WHERE p.schema_name = t.nsp AND p.table_name = t.tbl AND p.active) THEN
		RAISE EXCEPTION 'table % is already published', rel
			USING ERRCODE = 'duplicate_object';
	END IF;

	INSERT INTO evrep.publication AS p (relid, schema_name, table_name, key_columns)
	VALUES (rel, t.nsp, t.tbl, t.keys)
	ON CONFLICT (schema_name, table_name) DO UPDATE
		SET relid = EXCLUDED.relid, key_columns = EXCLUDED.key_columns,
			active = true, published_at = now()
	RETURNING p.id INTO pid;

	SELECT string_agg(quote_literal(k::text), ', ' ORDER BY ord) INTO attnums
	FROM pg_catalog.pg_index i
	CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS u(k, ord)
	WHERE i.indrelid = rel AND i.indisprimary;

	EXECUTE format('CREATE TRIGGER evrep_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
				   'FOR EACH ROW EXECUTE FUNCTION evrep.capture(%s, %s)',
				   rel, quote_literal(pid::text), attnums);
	-- the consumer binds the table's copy requests at once
	PERFORM evrep._subscriptions_changed();
END
$$;

COMMENT ON FUNCTION evrep_publish(regclass) IS
'capture INSERT, UPDATE and DELETE of a table into the evrep outbox';

CREATE FUNCTION evrep_unpublish(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM evrep._check_admin();
	IF NOT pg_catalog.has_table_privilege(rel, 'TRIGGER') THEN
		RAISE EXCEPTION 'permission denied for table %', rel
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	UPDATE evrep.publication SET active = false WHERE relid = rel AND active;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'table % is not published', rel
			USING ERRCODE = 'undefined_object';
	END IF;
	EXECUTE format('DROP TRIGGER evrep_capture ON %s', rel);
	PERFORM evrep._subscriptions_changed();
END
$$;

COMMENT ON FUNCTION evrep_unpublish(regclass) IS
'stop capturing a table; events already captured are still sent';

/*
 * evrep_subscribe: apply the events other nodes publish for a table.  The
 * name is resolved locally; the remote table must have the same schema,
 * name and primary key columns.  The apply runs as the subscriber.
 *
 * copy_data: ask the origin for the rows it already has (evrep.sync_status
 * shows the copy); the local table ends up equal to the origin's.  Without
 * it only later changes arrive; the consumer binds the queue before this
 * returns, so no later change is missed.
 */
CREATE FUNCTION evrep_subscribe(rel regclass, copy_data boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
BEGIN
	t := evrep._check_table(rel, 'SELECT, INSERT, UPDATE, DELETE');
	IF copy_data IS NULL THEN
		RAISE EXCEPTION 'copy_data must be true or false'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	BEGIN
		INSERT INTO evrep.subscription (schema_name, table_name, relid, owner, key_columns)
		VALUES (t.nsp, t.tbl, rel,
				(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user), t.keys);
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'table % is already subscribed', rel
			USING ERRCODE = 'duplicate_object';
	END;
	PERFORM evrep._start_sync(t.nsp, t.tbl, CASE WHEN copy_data THEN 'requested' ELSE 'skipped' END);
	PERFORM evrep._subscriptions_changed();
	IF NOT copy_data THEN
		-- until commit: an event delivered once the queue is bound waits
		-- for this lock instead of finding no subscription (apply.c)
		EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', rel);
		PERFORM evrep._bind_now(t.nsp, t.tbl);
	END IF;
END
$$;

COMMENT ON FUNCTION evrep_subscribe(regclass, boolean) IS
'apply events published by other nodes for this table, after a copy of its existing rows unless copy_data is false';

/* A new copy request (or none) for a subscribed table. */
CREATE FUNCTION evrep._start_sync(nsp text, tbl text, phase text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO evrep.sync AS s (schema_name, table_name, request_id, phase)
	VALUES (nsp, tbl, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, phase)
	ON CONFLICT (schema_name, table_name) DO UPDATE
		SET request_id = greatest(EXCLUDED.request_id, s.request_id + 1),
			phase = EXCLUDED.phase, origin = NULL, rows_copied = 0, rows_estimated = NULL,
			chunks = 0, requested_at = now(), request_sent_at = NULL, started_at = NULL,
			finished_at = NULL, last_chunk_at = NULL
$$;

/*
 * evrep_resync: copy the origin's rows again into a subscribed table, and
 * delete the local rows the origin does not have.  For repairs: after a
 * restore, rows changed by hand, or a new column to fill.
 */
CREATE FUNCTION evrep_resync(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
BEGIN
	t := evrep._check_table(rel, 'SELECT, INSERT, UPDATE, DELETE');
	IF NOT EXISTS (SELECT FROM evrep.subscription s
				   WHERE s.schema_name = t.nsp AND s.table_name = t.tbl) THEN
		RAISE EXCEPTION 'table % is not subscribed', rel
			USING ERRCODE = 'undefined_object',
				  HINT = 'Subscribe with evrep_subscribe(), which copies the rows too.';
	END IF;
	PERFORM evrep._start_sync(t.nsp, t.tbl, 'requested');
	PERFORM evrep._subscriptions_changed();
END
$$;

COMMENT ON FUNCTION evrep_resync(regclass) IS
'copy a subscribed table from its origin again, deleting local rows the origin does not have';

/*
 * Binds the consumer's queue for a table now and waits for it (up to
 * evrep.bind_timeout), so that no change published after evrep_subscribe
 * returns is dropped as unroutable.
 */
CREATE FUNCTION evrep._bind_now(nsp text, tbl text)
RETURNS void
AS 'MODULE_PATHNAME', 'evrep_bind_now'
LANGUAGE C STRICT;

CREATE FUNCTION evrep_unsubscribe(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM evrep._check_admin();
	DELETE FROM evrep.subscription s WHERE s.relid = rel;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'table % is not subscribed', rel
			USING ERRCODE = 'undefined_object';
	END IF;
	DELETE FROM evrep.sync s
	WHERE (s.schema_name, s.table_name) NOT IN (SELECT schema_name, table_name FROM evrep.subscription);
	PERFORM evrep._subscriptions_changed();
END
$$;

COMMENT ON FUNCTION evrep_unsubscribe(regclass) IS
'stop applying events for this table: its binding is removed, events already queued are parked';

CREATE FUNCTION evrep._subscriptions_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'evrep_subscriptions_changed_sql'
LANGUAGE C STRICT;

/*
 * evrep._row_json: a row as the capture trigger writes it into a message
 * (README, "Wire format", values), for the statements that read rows in
 * SQL, such as the chunks of a copy.
 */
CREATE FUNCTION evrep._row_json(record)
RETURNS json
AS 'MODULE_PATHNAME', 'evrep_row_json'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

/*
 * evrep_apply: apply one wire message (see README, "Wire format"), as the
 * consumer worker does.  sender is checked as the broker user that sent
 * it; NULL means the calling superuser vouches for the message.  Returns
 * the number of events applied.
 */
CREATE FUNCTION evrep_apply(message text, sender text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'evrep_apply'
LANGUAGE C CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION evrep_apply(text, text) IS
'apply one evrep wire message; duplicates are skipped, bad events parked';

/*
 * evrep_allow_sender / evrep_disallow_sender: let a broker user other than
 * the one named like the origin speak for it (for example one broker user
 * per service that runs several origins), and take that back.
 */
CREATE FUNCTION evrep_allow_sender(origin text, broker_user text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM evrep._check_admin();
	INSERT INTO evrep.sender AS s (origin, broker_user)
	VALUES (evrep_allow_sender.origin, evrep_allow_sender.broker_user)
	ON CONFLICT DO NOTHING;
END
$$;

COMMENT ON FUNCTION evrep_allow_sender(text, text) IS
'let a broker user speak for an origin (by default only the user named like the origin may)';

CREATE FUNCTION evrep_disallow_sender(origin text, broker_user text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM evrep._check_admin();
	DELETE FROM evrep.sender s
	WHERE s.origin = evrep_disallow_sender.origin
	  AND s.broker_user = evrep_disallow_sender.broker_user;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'broker user "%" was not allowed to speak for origin "%"',
			evrep_disallow_sender.broker_user, evrep_disallow_sender.origin
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

COMMENT ON FUNCTION evrep_disallow_sender(text, text) IS
'take back evrep_allow_sender';

/*
 * evrep_replay: retry one dead letter.  Succeeds at most once per dead
 * letter; a failure records the new error and leaves it parked.
 */
CREATE FUNCTION evrep_replay(dead_letter_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'evrep_replay'
LANGUAGE C STRICT
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION evrep_replay(bigint) IS
'retry one parked event; true when it was applied';

/*
 * evrep_claim: number and return the next batch of outbox events encoded
 * as wire messages, as the publisher does before sending.  For tests and
 * for inspecting the wire format; it does not send or delete anything.
 */
CREATE FUNCTION evrep_claim(max_events integer DEFAULT 1000,
							events_per_message integer DEFAULT NULL,
							OUT routing_key text, OUT events integer,
							OUT message text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'evrep_claim'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;

-- Workers' state from shared memory.
CREATE FUNCTION evrep.worker_state(OUT worker text, OUT pid integer,
								   OUT connected boolean, OUT events bigint,
								   OUT last_error text,
								   OUT last_error_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'evrep_worker_state'
LANGUAGE C STRICT;

/*
 * Monitoring: one row per published table (role 'publish') and one per
 * applied stream (role 'apply', per origin and table).
 */
CREATE VIEW evrep.status AS
SELECT 'publish'::text AS role,
	   current_setting('evrep.node_name') AS origin,
	   p.schema_name, p.table_name,
	   coalesce(o.depth, 0) AS outbox_depth,
	   now() - o.oldest_commit AS oldest_unsent_age,
	   p.last_seq,
	   NULL::bigint AS applied,
	   NULL::bigint AS skipped,
	   NULL::bigint AS dead_letters,
	   NULL::bigint AS unknown_column_events,
	   NULL::timestamptz AS last_applied_at,
	   NULL::interval AS lag,
	   CASE WHEN NOT w.connected THEN w.last_error END AS last_error
FROM evrep.publication p
LEFT JOIN LATERAL (
	SELECT count(*) AS depth,
		   min(coalesce(ob.commit_ts,
						 CASE WHEN current_setting('track_commit_timestamp')::boolean
							  THEN pg_xact_commit_timestamp(ob.xmin) END)) AS oldest_commit
	FROM evrep.outbox ob WHERE ob.pub_id = p.id) o ON true
LEFT JOIN evrep.worker_state() w ON w.worker = 'publisher'
WHERE p.active OR o.depth > 0
UNION ALL
SELECT 'apply', g.origin, g.schema_name, g.table_name,
	   NULL, NULL, g.last_seq, g.applied, g.skipped,
	   (SELECT count(*) FROM evrep.dead_letter d
		WHERE d.origin = g.origin AND d.schema_name = g.schema_name
		  AND d.table_name = g.table_name AND d.replayed_at IS NULL),
	   g.unknown_column_events,
	   g.last_applied_at,
	   g.last_applied_at - g.last_commit_ts,
	   coalesce((SELECT d.error FROM evrep.dead_letter d
				 WHERE d.origin = g.origin AND d.schema_name = g.schema_name
				   AND d.table_name = g.table_name AND d.replayed_at IS NULL
				 ORDER BY d.id DESC LIMIT 1),
			CASE WHEN NOT w.connected THEN w.last_error END)
FROM evrep.progress g
LEFT JOIN evrep.worker_state() w ON w.worker = 'consumer';

COMMENT ON VIEW evrep.status IS
'evrep queue depth, lag, counts and last error per published table and applied stream';

/*
 * Copies of existing rows, in the style of pg_stat_progress_*: 'receive'
 * rows on a subscriber (one per subscribed table), 'send' rows on an
 * origin (one per table and requesting node).
 */
CREATE VIEW evrep.sync_status AS
SELECT 'receive'::text AS role, s.origin AS node, s.schema_name, s.table_name,
	   s.request_id, s.phase, s.rows_copied, s.rows_estimated, s.chunks,
	   s.requested_at, s.started_at, s.finished_at,
	   round(s.rows_copied / nullif(extract(epoch FROM coalesce(s.finished_at, s.last_chunk_at)
											 - s.started_at), 0)) AS rows_per_second
FROM evrep.sync s
UNION ALL
SELECT 'send', j.requester, p.schema_name, p.table_name,
	   j.request_id, CASE WHEN j.finished_at IS NULL THEN 'sending' ELSE 'done' END,
	   j.rows_sent, j.rows_estimated, j.chunks,
	   j.requested_at, j.started_at, j.finished_at,
	   round(j.rows_sent / nullif(extract(epoch FROM coalesce(j.finished_at, now())
											 - j.started_at), 0))
FROM evrep.copy_job j JOIN evrep.publication p ON p.id = j.pub_id;

COMMENT ON VIEW evrep.sync_status IS
'progress of copies of existing rows: received per subscribed table, sent per table and node';

GRANT SELECT ON evrep.status, evrep.dead_letter, evrep.sender, evrep.sync_status TO evrep_admin, pg_monitor;
GRANT USAGE ON SCHEMA evrep TO pg_monitor;

REVOKE ALL ON FUNCTION evrep_publish(regclass), evrep_unpublish(regclass),
	evrep_subscribe(regclass, boolean), evrep_unsubscribe(regclass), evrep_resync(regclass),
	evrep_allow_sender(text, text), evrep_disallow_sender(text, text),
	evrep._subscriptions_changed(), evrep._start_sync(text, text, text),
	evrep._bind_now(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evrep_publish(regclass), evrep_unpublish(regclass),
	evrep_subscribe(regclass, boolean), evrep_unsubscribe(regclass), evrep_resync(regclass),
	evrep_allow_sender(text, text), evrep_disallow_sender(text, text),
	evrep._subscriptions_changed(), evrep._start_sync(text, text, text),
	evrep._bind_now(text, text) TO evrep_admin;
-- Stream numbers (publication.last_seq) and apply progress move only by
-- publishing and by applying authentic events: evrep_admin reads them.
GRANT SELECT ON evrep.publication TO evrep_admin;
GRANT INSERT (relid, schema_name, table_name, key_columns),
	UPDATE (relid, key_columns, active, published_at) ON evrep.publication TO evrep_admin;
GRANT INSERT, DELETE ON evrep.sender TO evrep_admin;
GRANT USAGE ON SEQUENCE evrep.publication_id_seq TO evrep_admin;
GRANT SELECT, INSERT, DELETE ON evrep.subscription TO evrep_admin;
-- a copy request; its progress moves only by applying the origin's chunks
GRANT SELECT, DELETE, INSERT (schema_name, table_name, request_id, phase),
	UPDATE (request_id, phase, origin, rows_copied, rows_estimated, chunks, requested_at,
			request_sent_at, started_at, finished_at, last_chunk_at) ON evrep.sync TO evrep_admin;
GRANT SELECT ON evrep.copy_job TO evrep_admin;
REVOKE ALL ON FUNCTION evrep_apply(text, text), evrep_replay(bigint),
	evrep_claim(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evrep_replay(bigint) TO evrep_admin;
GRANT SELECT, UPDATE ON evrep.dead_letter TO evrep_admin;
GRANT SELECT ON evrep.progress TO evrep_admin;
