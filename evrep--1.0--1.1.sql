/* evrep--1.0--1.1.sql: histories (incarnations), TRUNCATE, logical backups */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION evrep UPDATE TO '1.1'" to load this file. \quit

/*
 * The update runs while writers and workers do.  It takes every lock it
 * needs up front, in the order they take theirs (a writer: its table, then
 * the outbox; the publisher: the outbox, then publication; the consumer:
 * subscription, then progress), so that it waits for them instead of
 * deadlocking with them.
 */
DO $$
DECLARE
	p record;
BEGIN
	FOR p IN SELECT relid FROM evrep.publication WHERE active ORDER BY relid LOOP
		EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', p.relid::regclass);
	END LOOP;
END
$$;
LOCK TABLE evrep.outbox, evrep.publication, evrep.subscription, evrep.progress
	IN ACCESS EXCLUSIVE MODE;

/*
 * One row per history of this database.  A history ends when the database
 * goes back or changes identity: restored from a base backup (a new
 * backup_label), promoted or recovered to a point in time (a new timeline),
 * reloaded from pg_dump into another cluster (a new system identifier).
 * The current history is the row with the highest id; both workers check
 * at start (incarnation.c).  A stream number is unique only within one
 * history, so every message names its history, and where the new one
 * forked from the old (publication.since).
 */
CREATE TABLE evrep.incarnation (
	id			bigint PRIMARY KEY,	-- microseconds since 2000 at its start; grows
	started_at	timestamptz NOT NULL DEFAULT now(),
	reason		text NOT NULL,
	system_identifier numeric NOT NULL,
	database_oid oid NOT NULL,
	timeline	integer NOT NULL,
	backup_label text,				-- backup_label.old of the data directory, if any
	start_lsn	pg_lsn NOT NULL,
	-- started because rows of another cluster or database were found here:
	-- a dump's rows may be restored after a worker recorded its first start
	reloaded	boolean NOT NULL DEFAULT false
);

COMMENT ON TABLE evrep.incarnation IS
'histories of this database: a restore, promotion, point-in-time recovery or reload starts a new one';

-- The first number of each stream in the current history: numbers below it
-- are shared with the history before.
ALTER TABLE evrep.publication ADD COLUMN since bigint NOT NULL DEFAULT 1;
UPDATE evrep.publication SET since = last_seq + 1;

-- WAL insert position when a row was numbered: it only grows with the
-- numbers of one history, so a subscriber sees an origin that went back
-- without a trace (a file-system snapshot restored).
ALTER TABLE evrep.outbox ADD COLUMN lsn pg_lsn;

/*
 * Events are written once.  Capture records the writer's top-level
 * transaction (xid), and nothing updates or deletes a captured row after
 * its INSERT: the publisher numbers rows by batches, one row of
 * evrep.outbox_batch each, and gets the space back by TRUNCATE of a
 * partition whose rows are all confirmed (outbox.c).
 *
 * A batch is a window and an id range: the rows of the transactions
 * visible in the snapshot hi but not in lo (those that committed between
 * the two snapshots, however early they took their ids), with ids in
 * (after_id, upto_id].  Within a publication, the batch's k-th row in id
 * order (from 0) has the number first_seqs[i] + k, so a resend after a
 * crash derives every number again, the same, from the immutable rows.  A
 * long window is cut into several batches; the next window's lo is this
 * one's hi.
 *
 * Rows the publisher writes itself (the chunks of a copy) and rows evrep
 * 1.0 captured carry their number in seq instead, and are deleted once
 * confirmed.
 *
 * One row may hold several events of a publication (op m, events of them:
 * a statement's or a transaction's, gathered by capture_buffer.c), as a
 * JSON array of [op, row] pairs: one outbox row per changed row cost a bulk
 * INSERT as much as the INSERT itself.
 */
ALTER TABLE evrep.outbox ADD COLUMN xid xid8;
ALTER TABLE evrep.outbox ADD COLUMN events integer;	-- op m: how many; else NULL (one)
-- rows are no longer updated: the room kept for HOT updates is not needed
ALTER TABLE evrep.outbox_0 SET (fillfactor = 100);
ALTER TABLE evrep.outbox_1 SET (fillfactor = 100);

-- 1.0 stored row_data uncompressed (pglz cost as much time as it saved).
-- Now a statement's events are one row of up to 256 kB (op m), as a chunk
-- of a copy is, and that JSON written to the WAL a second time was what a
-- bulk INSERT paid most for capture: lz4 shrinks it about seven times for
-- far less than it saves (a 100k-row INSERT: WAL 1.78x -> 1.12x of the
-- INSERT's without capture, time 1.96x -> 1.51x).  Rows under 2 kB (a
-- single-row transaction's) are never compressed.  A server built without
-- lz4 keeps them uncompressed.
DO $$
BEGIN
	ALTER TABLE evrep.outbox ALTER COLUMN row_data SET STORAGE EXTENDED,
		ALTER COLUMN row_data SET COMPRESSION lz4;
	-- a partitioned table's compression is not its partitions'
	ALTER TABLE evrep.outbox_0 ALTER COLUMN row_data SET COMPRESSION lz4;
	ALTER TABLE evrep.outbox_1 ALTER COLUMN row_data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
	NULL;
END
$$;

-- What evrep 1.0 captured and had not numbered yet is numbered now, in id
-- order as its publisher would have (the outbox is locked: every writer has
-- finished), so that every row without an xid has its number.
WITH n AS (
	SELECT o.id, o.slot,
		   p.last_seq + row_number() OVER (PARTITION BY o.pub_id ORDER BY o.id) AS seq
	FROM evrep.outbox o JOIN evrep.publication p ON p.id = o.pub_id
	WHERE o.seq IS NULL)
UPDATE evrep.outbox o
SET seq = n.seq,
	commit_ts = CASE WHEN current_setting('track_commit_timestamp')::boolean
					 THEN pg_xact_commit_timestamp(o.xmin) END
FROM n WHERE o.id = n.id AND o.slot = n.slot;
UPDATE evrep.publication p SET last_seq = m.seq
FROM (SELECT pub_id, max(seq) AS seq FROM evrep.outbox GROUP BY pub_id) m
WHERE p.id = m.pub_id AND m.seq > p.last_seq;

-- numbered rows are few (chunks in flight): found without a scan
CREATE INDEX outbox_numbered ON evrep.outbox (pub_id, seq) WHERE seq IS NOT NULL;

CREATE TABLE evrep.outbox_batch (
	id			bigint PRIMARY KEY,
	lo			pg_snapshot,		-- NULL: the first window
	hi			pg_snapshot NOT NULL,
	after_id	bigint NOT NULL,
	upto_id		bigint NOT NULL,
	window_low	bigint NOT NULL,	-- no row of this window has a lower or equal id
	next_low	bigint NOT NULL,	-- no row of a later window has a lower or equal id
	last_in_window boolean NOT NULL,
	pub_ids		integer[] NOT NULL,
	first_seqs	bigint[] NOT NULL,
	counts		bigint[] NOT NULL,	-- rows per publication, to notice rows removed by hand
	lsn			pg_lsn NOT NULL,	-- the WAL position the batch was numbered at
	confirmed	boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE evrep.outbox_batch IS
'numbering of the outbox: each row numbers the events of one batch; kept until the broker confirmed it';

/*
 * Outbox rows the broker has not confirmed yet.  Confirmed are the rows of
 * the windows before the last confirmed batch's (visible in its lo) and
 * the rows of its window up to its upto_id; numbered rows are deleted once
 * confirmed.  evrep.status counts their events from here, without taking
 * op m rows apart.
 */
CREATE VIEW evrep.outbox_unconfirmed AS
SELECT o.id, o.pub_id, o.op, o.row_data, coalesce(o.events, 1) AS events, o.seq, o.xid,
	   coalesce(o.commit_ts,
				CASE WHEN current_setting('track_commit_timestamp')::boolean
					 THEN pg_xact_commit_timestamp(o.xmin) END) AS commit_ts
FROM evrep.outbox o
LEFT JOIN (SELECT lo, hi, upto_id FROM evrep.outbox_batch WHERE confirmed
		   ORDER BY id DESC LIMIT 1) c ON true
WHERE o.xid IS NULL OR c.hi IS NULL
   OR NOT (coalesce(pg_visible_in_snapshot(o.xid, c.lo), false)
		   OR (pg_visible_in_snapshot(o.xid, c.hi) AND o.id <= c.upto_id));

/* The same, one row per event (the events of an op m row numbered by ord). */
CREATE VIEW evrep.outbox_pending AS
SELECT u.id, e.ord, u.pub_id, e.op, e.row_data, u.seq, u.xid, u.commit_ts
FROM evrep.outbox_unconfirmed u
CROSS JOIN LATERAL (
	SELECT u.op, u.row_data, 1::bigint WHERE u.op <> 'm'
	UNION ALL
	SELECT (x.e ->> 0)::"char", x.e -> 1, x.ord
	FROM json_array_elements(CASE WHEN u.op = 'm' THEN u.row_data END) WITH ORDINALITY x(e, ord)
) e(op, row_data, ord);
COMMENT ON VIEW evrep.outbox_unconfirmed IS
'outbox rows the broker has not confirmed yet';
COMMENT ON VIEW evrep.outbox_pending IS
'outbox events the broker has not confirmed yet, one row each';
GRANT SELECT ON evrep.outbox_batch, evrep.outbox_unconfirmed, evrep.outbox_pending TO evrep_admin;

ALTER TABLE evrep.progress
	ADD COLUMN incarnation bigint,			-- the origin's history of last_seq
	ADD COLUMN last_lsn pg_lsn,				-- the origin's WAL position at last_seq
	ADD COLUMN prev_incarnation bigint,		-- the history before, and how far it went:
	ADD COLUMN prev_last_seq bigint,		-- its late duplicates are skipped
	ADD COLUMN history_changed_at timestamptz,
	ADD COLUMN history_reason text,
	ADD COLUMN repair text,					-- what was done about a divergence
	ADD COLUMN repair_request bigint,		-- the resync (evrep.sync.request_id) it asked for
	ADD COLUMN base_seq bigint,				-- the first number this node expected of the stream
	ADD COLUMN gaps_since timestamptz;		-- gaps open since (a hole nobody fills, see docs/backups-failover-upgrades.md)

-- Why an event was parked and what would fix it: the error's hint, shown
-- with the error in evrep.status.last_error.
ALTER TABLE evrep.dead_letter ADD COLUMN hint text;

-- The apply's role by name: an oid means nothing in the cluster a dump is
-- restored into.
ALTER TABLE evrep.subscription ADD COLUMN owner_name name;
UPDATE evrep.subscription s SET owner_name = r.rolname
FROM pg_catalog.pg_roles r WHERE r.oid = s.owner;

/*
 * pg_dump carries the configuration, so that a dump restores into a
 * working node; not the outbox, progress, dead letters or copy jobs,
 * which belong to the old server's history (the restored node starts a new
 * one and its subscriptions are copied again).
 */
SELECT pg_catalog.pg_extension_config_dump('evrep.publication', '');
SELECT pg_catalog.pg_extension_config_dump('evrep.publication_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('evrep.subscription', '');
SELECT pg_catalog.pg_extension_config_dump('evrep.sender', '');
SELECT pg_catalog.pg_extension_config_dump('evrep.sync', '');
SELECT pg_catalog.pg_extension_config_dump('evrep.incarnation', '');

/* TRUNCATE is captured once per statement, with the publication's id. */
CREATE FUNCTION evrep._create_truncate_trigger(rel regclass, pid integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	EXECUTE format('CREATE TRIGGER evrep_capture_truncate AFTER TRUNCATE ON %s '
				   'FOR EACH STATEMENT EXECUTE FUNCTION evrep.capture(%s)',
				   rel, quote_literal(pid::text));
END
$$;

/* The capture of a table: its rows' changes, and TRUNCATE. */
CREATE FUNCTION evrep._create_capture_triggers(rel regclass, pid integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	attnums text;
BEGIN
	SELECT string_agg(quote_literal(k::text), ', ' ORDER BY ord) INTO attnums
	FROM pg_catalog.pg_index i
	CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS u(k, ord)
	WHERE i.indrelid = rel AND i.indisprimary;

	EXECUTE format('CREATE TRIGGER evrep_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
				   'FOR EACH ROW EXECUTE FUNCTION evrep.capture(%s, %s)',
				   rel, quote_literal(pid::text), attnums);
	PERFORM evrep._create_truncate_trigger(rel, pid);
END
$$;

-- tables published under 1.0 capture TRUNCATE from now on
SELECT evrep._create_truncate_trigger(relid::regclass, id) FROM evrep.publication WHERE active;

CREATE OR REPLACE FUNCTION evrep_unpublish(rel regclass)
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
	EXECUTE format('DROP TRIGGER IF EXISTS evrep_capture_truncate ON %s', rel);
	PERFORM evrep._subscriptions_changed();
END
$$;

GRANT INSERT (owner_name) ON evrep.subscription TO evrep_admin;

/*
 * The current history, read by the workers and by evrep.status; NULL
 * before a worker first started.
 */
CREATE FUNCTION evrep.current_incarnation()
RETURNS evrep.incarnation
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT i FROM evrep.incarnation i ORDER BY id DESC LIMIT 1
$$;

REVOKE ALL ON FUNCTION evrep._create_truncate_trigger(regclass, integer),
	evrep._create_capture_triggers(regclass, integer), evrep.current_incarnation() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evrep._create_truncate_trigger(regclass, integer),
	evrep._create_capture_triggers(regclass, integer) TO evrep_admin;
GRANT SELECT ON evrep.incarnation TO evrep_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION evrep.current_incarnation() TO evrep_admin, pg_monitor;

-- evrep--1.0.sql is released and frozen: its column comments on the outbox
-- name only the ops of 1.0 (i, u, d). 1.1 writes two more: 'c', a chunk of a
-- copy (copy_send.c), and 't', a TRUNCATE (capture.c).
COMMENT ON COLUMN evrep.outbox.op IS
'i(nsert), u(pdate), d(elete), c(hunk of a copy), t(runcate), s(kip: a row too large to send), L(arge: an insert or update with values in evrep.outbox_value), v (an update that leaves large values unchanged), m(any: several events of one publication)';
COMMENT ON COLUMN evrep.outbox.row_data IS
'i, u: the new row; d: the old row (its key alone if the row is over evrep.max_message_bytes); c: the chunk of a copy (its request, key range and rows); t: the TRUNCATE options; s: what was skipped, {"op", "key", "reason"}; L: {"of", "row", "values"}, the row without its values in evrep.outbox_value; v: {"row", "unchanged"}; m: [[op, row], ...], its events in order';

-- a subscriber's own table name
/*
 * A subscription applies the events of a published table (schema_name,
 * table_name: the origin's name, on the wire and in routing keys) into a
 * local table of any name, its target.  relid is the target; as a regclass
 * it is dumped by name and restored as the new table's oid, so a rename of
 * the target and a dump/reload both keep it.  target_schema and
 * target_table are its names when subscribed, for a relid found dangling.
 */
ALTER TABLE evrep.subscription ALTER COLUMN relid TYPE regclass,
	ADD COLUMN target_schema text, ADD COLUMN target_table text;
UPDATE evrep.subscription SET target_schema = schema_name, target_table = table_name;
ALTER TABLE evrep.subscription ALTER COLUMN target_schema SET NOT NULL,
	ALTER COLUMN target_table SET NOT NULL;
-- a table applies one published table
CREATE UNIQUE INDEX subscription_relid_key ON evrep.subscription (relid);

COMMENT ON COLUMN evrep.subscription.schema_name IS 'the published table''s schema on its origin';
COMMENT ON COLUMN evrep.subscription.table_name IS 'the published table''s name on its origin';
COMMENT ON COLUMN evrep.subscription.relid IS 'the local table the events are applied to (the target)';

-- the local table a parked event was meant for, when it was parked
ALTER TABLE evrep.dead_letter ADD COLUMN target_schema text, ADD COLUMN target_table text;

/*
 * evrep_subscribe(copy_data => false) holds this lock until commit; an event
 * that finds no subscription for its published name waits for it (apply.c,
 * wait_for_subscriber: the same keys) and looks again.  The target's name
 * may differ from the published one, so the table lock alone cannot say it.
 */
CREATE FUNCTION evrep._subscribe_lock(nsp text, tbl text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.pg_advisory_xact_lock(1702261360, pg_catalog.hashtext(nsp || chr(1) || tbl))
$$;

/*
 * Subscribe published table nsp.tbl into the local table target; nsp and
 * tbl NULL: the target's own name.
 */
CREATE FUNCTION evrep._subscribe(nsp text, tbl text, target regclass, copy_data boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
	s record;
	same_name boolean;
BEGIN
	t := evrep._check_table(target, 'SELECT, INSERT, UPDATE, DELETE');
	IF copy_data IS NULL THEN
		RAISE EXCEPTION 'copy_data must be true or false'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	nsp := coalesce(nsp, t.nsp);
	tbl := coalesce(tbl, t.tbl);
	same_name := (nsp, tbl) = (t.nsp, t.tbl);
	SELECT * INTO s FROM evrep.subscription x WHERE x.schema_name = nsp AND x.table_name = tbl;
	IF FOUND AND same_name AND s.relid = target THEN
		RAISE EXCEPTION 'table % is already subscribed', target
			USING ERRCODE = 'duplicate_object';
	ELSIF FOUND THEN
		RAISE EXCEPTION 'published table %.% is already subscribed, into table %',
			quote_ident(nsp), quote_ident(tbl), s.relid
			USING ERRCODE = 'duplicate_object',
				  HINT = 'A published table is applied into one local table; evrep_unsubscribe() that one first.';
	END IF;
	SELECT * INTO s FROM evrep.subscription x
	WHERE x.relid = target OR (x.target_schema, x.target_table) = (t.nsp, t.tbl);
	IF FOUND THEN
		RAISE EXCEPTION 'table % already receives published table %.%',
			target, quote_ident(s.schema_name), quote_ident(s.table_name)
			USING ERRCODE = 'duplicate_object',
				  HINT = 'A local table receives one published table; evrep_unsubscribe() it first.';
	END IF;
	INSERT INTO evrep.subscription (schema_name, table_name, relid, owner, owner_name,
									key_columns, target_schema, target_table)
	VALUES (nsp, tbl, target,
			(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user),
			current_user, t.keys, t.nsp, t.tbl);
	PERFORM evrep._start_sync(nsp, tbl, CASE WHEN copy_data THEN 'requested' ELSE 'skipped' END);
	PERFORM evrep._subscriptions_changed();
	IF NOT copy_data THEN
		-- until commit: an event delivered once the queue is bound waits
		-- for these locks instead of finding no subscription (apply.c)
		PERFORM evrep._subscribe_lock(nsp, tbl);
		EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', target);
		PERFORM evrep._bind_now(nsp, tbl);
	END IF;
END
$$;

-- the table's own name is the published one
CREATE OR REPLACE FUNCTION evrep_subscribe(rel regclass, copy_data boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM evrep._subscribe(NULL, NULL, rel, copy_data);
END
$$;

/*
 * evrep_subscribe(published, target): apply the events of a table that
 * another node publishes as published ('schema.table'; without a schema,
 * public) into the local table target, of any schema and name.  The
 * published table need not exist here.  Columns match by name, as ever.
 * (The parameter is not called "into": INTO is a reserved word, and
 * "into => ..." a syntax error.)
 */
CREATE FUNCTION evrep_subscribe(published text, target regclass, copy_data boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	parts text[] := pg_catalog.parse_ident(coalesce(published, ''));
BEGIN
	IF pg_catalog.array_length(parts, 1) > 2 THEN
		RAISE EXCEPTION 'published table name "%" has too many parts', published
			USING ERRCODE = 'invalid_name',
				  HINT = 'Name it as schema.table, or table for a table of schema public.';
	END IF;
	IF target IS NULL THEN
		RAISE EXCEPTION 'target must name a local table'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM evrep._subscribe(CASE WHEN pg_catalog.array_length(parts, 1) = 2 THEN parts[1]
								  ELSE 'public' END,
							 parts[pg_catalog.array_length(parts, 1)], target, copy_data);
END
$$;

COMMENT ON FUNCTION evrep_subscribe(text, regclass, boolean) IS
'apply events published by another node for table published (schema.table, public if unqualified) into the local table target';

/* The subscription whose target is rel: by relid, or by its names. */
CREATE FUNCTION evrep._subscription_of(rel regclass)
RETURNS evrep.subscription
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s FROM evrep.subscription s
	LEFT JOIN pg_catalog.pg_class c ON c.oid = rel
	LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE s.relid = rel OR (s.target_schema, s.target_table) = (n.nspname, c.relname)
	ORDER BY s.relid = rel DESC LIMIT 1
$$;

CREATE OR REPLACE FUNCTION evrep_resync(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s evrep.subscription;
BEGIN
	PERFORM evrep._check_table(rel, 'SELECT, INSERT, UPDATE, DELETE');
	s := evrep._subscription_of(rel);
	IF s.relid IS NULL THEN
		RAISE EXCEPTION 'table % is not subscribed', rel
			USING ERRCODE = 'undefined_object',
				  HINT = 'Subscribe with evrep_subscribe(), which copies the rows too.';
	END IF;
	PERFORM evrep._start_sync(s.schema_name, s.table_name, 'requested');
	PERFORM evrep._subscriptions_changed();
END
$$;

COMMENT ON FUNCTION evrep_resync(regclass) IS
'copy a subscribed table (the local one) from its origin again, deleting local rows the origin does not have';

CREATE OR REPLACE FUNCTION evrep_unsubscribe(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s evrep.subscription;
BEGIN
	PERFORM evrep._check_admin();
	s := evrep._subscription_of(rel);
	IF s.relid IS NULL THEN
		RAISE EXCEPTION 'table % is not subscribed', rel
			USING ERRCODE = 'undefined_object';
	END IF;
	DELETE FROM evrep.subscription x
	WHERE x.schema_name = s.schema_name AND x.table_name = s.table_name;
	DELETE FROM evrep.sync x
	WHERE (x.schema_name, x.table_name) NOT IN (SELECT schema_name, table_name FROM evrep.subscription);
	PERFORM evrep._subscriptions_changed();
END
$$;

COMMENT ON FUNCTION evrep_unsubscribe(regclass) IS
'stop applying events into this local table: its binding is removed, events already queued are parked';

REVOKE ALL ON FUNCTION evrep._subscribe_lock(text, text),
	evrep._subscribe(text, text, regclass, boolean),
	evrep_subscribe(text, regclass, boolean), evrep._subscription_of(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evrep._subscribe_lock(text, text),
	evrep._subscribe(text, text, regclass, boolean),
	evrep_subscribe(text, regclass, boolean), evrep._subscription_of(regclass) TO evrep_admin;
GRANT INSERT (target_schema, target_table) ON evrep.subscription TO evrep_admin;

/*
 * evrep.status, 1.1: the history of each stream (per published table, this
 * node's; per applied stream, the origin's as last seen), when and why it
 * last changed, and what was done about rows applied from the lost part;
 * and both tables of an applied stream: schema_name and table_name are the
 * published table's (the origin's), target_schema and target_table the
 * local one the events go to (its name now).
 */
-- rows too large to send
/*
 * An insert or update whose row's JSON is over evrep.max_message_bytes is
 * not sent (oversize.c): its number goes out as a skip event, which
 * subscribers park, naming the key, and the origin keeps a row here,
 * written by the capture in the writer's transaction (or by the publisher
 * for a row captured before the limit was lowered).
 */
CREATE TABLE evrep.skipped (
	skipped_at	timestamptz NOT NULL,
	schema_name	text NOT NULL,
	table_name	text NOT NULL,
	op			text NOT NULL,		-- insert or update
	key			json NOT NULL,		-- the row's primary key
	reason		text NOT NULL
);
COMMENT ON TABLE evrep.skipped IS
'rows a writer changed that were too large to send (over evrep.max_message_bytes); subscribers parked a skip event for each';
GRANT SELECT, DELETE ON evrep.skipped TO evrep_admin;
GRANT SELECT ON evrep.skipped TO pg_monitor;

CREATE OR REPLACE VIEW evrep.status AS
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
	   CASE WHEN NOT w.connected THEN w.last_error END AS last_error,
	   (evrep.current_incarnation()).id AS incarnation,
	   p.since AS incarnation_since,
	   (evrep.current_incarnation()).reason AS history_reason,
	   (evrep.current_incarnation()).started_at AS history_changed_at,
	   NULL::text AS repair,
	   NULL::text AS target_schema,
	   NULL::text AS target_table,
	   (SELECT count(*) FROM evrep.skipped k
		WHERE k.schema_name = p.schema_name AND k.table_name = p.table_name) AS not_sent
FROM evrep.publication p
LEFT JOIN LATERAL (
	SELECT sum(ob.events) AS depth, min(ob.commit_ts) AS oldest_commit
	FROM evrep.outbox_unconfirmed ob WHERE ob.pub_id = p.id) o ON true
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
	   coalesce((SELECT d.error || coalesce(' HINT: ' || d.hint, '') FROM evrep.dead_letter d
				 WHERE d.origin = g.origin AND d.schema_name = g.schema_name
				   AND d.table_name = g.table_name AND d.replayed_at IS NULL
				 ORDER BY d.id DESC LIMIT 1),
			CASE WHEN NOT w.connected THEN w.last_error END),
	   g.incarnation,
	   NULL::bigint,
	   g.history_reason,
	   g.history_changed_at,
	   CASE WHEN g.repair_request IS NOT NULL AND s.request_id = g.repair_request
			THEN g.repair || ': copy ' || s.phase
			WHEN g.repair_request IS NOT NULL AND s.request_id > g.repair_request
			THEN g.repair || ': superseded by a later copy'
			ELSE g.repair END,
	   t.target_schema, t.target_table, NULL::bigint
FROM evrep.progress g
LEFT JOIN evrep.sync s ON s.schema_name = g.schema_name AND s.table_name = g.table_name
LEFT JOIN LATERAL (
	SELECT coalesce(tn.nspname::text, sub.target_schema) AS target_schema,
		   coalesce(tc.relname::text, sub.target_table) AS target_table
	FROM evrep.subscription sub
	LEFT JOIN pg_catalog.pg_class tc ON tc.oid = sub.relid
	LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
	WHERE sub.schema_name = g.schema_name AND sub.table_name = g.table_name) t ON true
LEFT JOIN evrep.worker_state() w ON w.worker = 'consumer'
UNION ALL
-- streams of which every event was parked (a refused sender, say) have no
-- progress, and would not show at all
SELECT 'apply', d.origin, d.schema_name, d.table_name,
	   NULL, NULL, NULL, 0, 0, count(*), 0, NULL, NULL,
	   (pg_catalog.array_agg(d.error || coalesce(' HINT: ' || d.hint, '') ORDER BY d.id DESC))[1],
	   NULL, NULL, NULL, NULL, NULL,
	   (pg_catalog.array_agg(d.target_schema ORDER BY d.id DESC))[1],
	   (pg_catalog.array_agg(d.target_table ORDER BY d.id DESC))[1], NULL
FROM evrep.dead_letter d
WHERE d.replayed_at IS NULL AND d.origin IS NOT NULL AND d.table_name IS NOT NULL
  AND NOT EXISTS (SELECT FROM evrep.progress g
				  WHERE g.origin = d.origin AND g.schema_name = d.schema_name
					AND g.table_name = d.table_name)
GROUP BY d.origin, d.schema_name, d.table_name;

COMMENT ON VIEW evrep.status IS
'evrep queue depth, lag, counts, last error and history per published table and applied stream, with the local table each stream is applied to, and the rows a published table did not send (too large; evrep.skipped)';

-- contracts: column lists and row filters
/*
 * What a published table sends (docs/design.md, "Contracts"): the columns
 * of column_list (NULL: all; the key is always in it) and the rows that
 * row_filter passes (NULL: all).  The filter is stored as the text
 * contract.c deparsed from the checked expression (as pg_get_expr shows
 * pg_publication_rel.prqual), not as a node tree: pg_dump carries this
 * table, and a node tree can neither be read back by COPY nor survive the
 * new attribute numbers of a reloaded table.  Both are by column name.
 */
ALTER TABLE evrep.publication
	ADD COLUMN column_list text[],
	ADD COLUMN row_filter text;

COMMENT ON COLUMN evrep.publication.column_list IS
'the columns sent (NULL: all), in the table''s order; evrep_alter_publication changes it';
COMMENT ON COLUMN evrep.publication.row_filter IS
'the rows sent: a boolean expression over the table''s columns (NULL: all rows)';

-- checked column list, in the table's order (contract.c)
CREATE FUNCTION evrep._contract_columns(rel regclass, columns text[])
RETURNS text[]
AS 'MODULE_PATHNAME', 'evrep_contract_columns'
LANGUAGE C STABLE;

-- checked row filter, deparsed (contract.c)
CREATE FUNCTION evrep._contract_filter(rel regclass, row_filter text)
RETURNS text
AS 'MODULE_PATHNAME', 'evrep_contract_filter'
LANGUAGE C STABLE;

-- the events that move subscribers to a new contract (contract.c)
CREATE FUNCTION evrep._contract_change(rel regclass, columns text[], row_filter text)
RETURNS text
AS 'MODULE_PATHNAME', 'evrep_contract_change'
LANGUAGE C VOLATILE;

-- 1.0's evrep_publish(regclass) would make every call of the new one ambiguous
DROP FUNCTION evrep_publish(regclass);

CREATE FUNCTION evrep_publish(rel regclass, columns text[] DEFAULT NULL,
							  row_filter text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
	pid integer;
	cols text[];
	filt text;
BEGIN
	t := evrep._check_table(rel, 'TRIGGER');
	IF EXISTS (SELECT FROM evrep.publication p
			   WHERE p.schema_name = t.nsp AND p.table_name = t.tbl AND p.active) THEN
		RAISE EXCEPTION 'table % is already published', rel
			USING ERRCODE = 'duplicate_object',
				  HINT = 'evrep_alter_publication() changes its column list and row filter.';
	END IF;
	cols := evrep._contract_columns(rel, columns);
	filt := evrep._contract_filter(rel, row_filter);

	-- a table published again continues its stream: last_seq never goes back
	INSERT INTO evrep.publication AS p (relid, schema_name, table_name, key_columns,
										column_list, row_filter)
	VALUES (rel, t.nsp, t.tbl, t.keys, cols, filt)
	ON CONFLICT (schema_name, table_name) DO UPDATE
		SET relid = EXCLUDED.relid, key_columns = EXCLUDED.key_columns,
			column_list = EXCLUDED.column_list, row_filter = EXCLUDED.row_filter,
			active = true, published_at = now()
	RETURNING p.id INTO pid;

	PERFORM evrep._create_capture_triggers(rel, pid);
	-- the consumer binds the table's copy requests at once
	PERFORM evrep._subscriptions_changed();
END
$$;

COMMENT ON FUNCTION evrep_publish(regclass, text[], text) IS
'capture INSERT, UPDATE, DELETE and TRUNCATE of a table into the evrep outbox: the listed columns (default all) of the rows the filter passes (default all)';

/*
 * A new contract for a published table, in stream order: the table is
 * locked against writers (SHARE ROW EXCLUSIVE, as CREATE TRIGGER) until
 * commit, and the events that bring every subscriber to the new contract
 * (rows that leave the filter deleted, rows that enter it inserted, every
 * row sent again when columns are added) are written to the outbox in
 * this transaction, before the catalog row changes (the publisher updates
 * that row as it numbers: it waits only from here to the commit).
 */
CREATE FUNCTION evrep_alter_publication(rel regclass, columns text[] DEFAULT NULL,
										row_filter text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t record;
	cols text[];
	filt text;
	sent text;
BEGIN
	t := evrep._check_table(rel, 'TRIGGER');
	EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', rel);
	IF NOT EXISTS (SELECT FROM evrep.publication p WHERE p.relid = rel AND p.active) THEN
		RAISE EXCEPTION 'table % is not published', rel
			USING ERRCODE = 'undefined_object';
	END IF;
	cols := evrep._contract_columns(rel, columns);
	filt := evrep._contract_filter(rel, row_filter);
	sent := evrep._contract_change(rel, cols, filt);
	UPDATE evrep.publication p SET column_list = cols, row_filter = filt
	WHERE p.relid = rel AND p.active;
	RAISE NOTICE 'new contract of table %: %', rel, sent;
END
$$;

COMMENT ON FUNCTION evrep_alter_publication(regclass, text[], text) IS
'change the columns (NULL: all) and the row filter (NULL: none) a published table sends, converging its subscribers in stream order';

REVOKE ALL ON FUNCTION evrep_publish(regclass, text[], text),
	evrep_alter_publication(regclass, text[], text), evrep._contract_columns(regclass, text[]),
	evrep._contract_filter(regclass, text), evrep._contract_change(regclass, text[], text)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evrep_publish(regclass, text[], text),
	evrep_alter_publication(regclass, text[], text), evrep._contract_columns(regclass, text[]),
	evrep._contract_filter(regclass, text), evrep._contract_change(regclass, text[], text)
	TO evrep_admin;
GRANT INSERT (column_list, row_filter), UPDATE (column_list, row_filter)
	ON evrep.publication TO evrep_admin;

/*
 * A contract names columns, and subscribers read them by name: an ALTER
 * TABLE that renames, drops or retypes a column a contract lists or filters
 * on, or the key, would break it (and every write's capture, which compiles
 * the contract).  Refused like a dependency, with the way round: change the
 * contract first.  SECURITY DEFINER: the owner of a table alters it without
 * any right on evrep's catalog.
 */
CREATE FUNCTION evrep._keep_contracts()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
	msg text;
BEGIN
	-- the publication by the id its capture trigger carries, as the capture
	-- finds it (contract.c): relid may still name the old oid after a restore
	FOR p IN SELECT DISTINCT t.tgrelid::regclass AS rel, pub.column_list, pub.row_filter
			 FROM pg_catalog.pg_event_trigger_ddl_commands() c
			 JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.objid AND t.tgname = 'evrep_capture'
			 JOIN evrep.publication pub
			   ON pub.id = pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 1)::integer
			 WHERE pub.active AND (pub.column_list IS NOT NULL OR pub.row_filter IS NOT NULL)
	LOOP
		BEGIN
			PERFORM evrep._contract_columns(p.rel, p.column_list);
			PERFORM evrep._contract_filter(p.rel, p.row_filter);
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			RAISE EXCEPTION 'cannot alter table %: its evrep contract would break', p.rel
				USING ERRCODE = 'dependent_objects_still_exist',
					  DETAIL = msg,
					  HINT = 'Change the contract first with evrep_alter_publication(); '
							 'to rename a column, publish the new one alongside the old.';
		END;
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION evrep._keep_contracts() FROM PUBLIC;

CREATE EVENT TRIGGER evrep_keep_contracts ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION evrep._keep_contracts();

/*
 * Rows too large for one message travel with their largest values apart,
 * in parts (docs/protocol.md, "Large events").  The origin keeps each such
 * value beside its outbox row until the broker has confirmed the event;
 * uncompressed, so that a part is read by substring without reading the
 * value before it.  Nothing here is dumped: it belongs to the outbox.
 */
CREATE TABLE evrep.outbox_value (
	outbox_id bigint NOT NULL,	-- evrep.outbox.id of the event (op L)
	ord integer NOT NULL,		-- its place in the event's "values"
	value bytea NOT NULL		-- a bytea's bytes, or the text form of any other type
);
ALTER TABLE evrep.outbox_value ALTER COLUMN value SET STORAGE EXTERNAL;
COMMENT ON TABLE evrep.outbox_value IS
'values of large events, sent in parts before the event itself; removed once it is confirmed';

/*
 * A subscriber keeps the parts it received until their event is applied
 * (in the same transaction) or, parked, replayed or discarded.
 */
CREATE TABLE evrep.inbox_part (
	origin text NOT NULL,
	schema_name text NOT NULL,	-- the published table, as on the wire
	table_name text NOT NULL,
	incarnation bigint NOT NULL,	-- the origin's history (0: it named none)
	seq bigint NOT NULL,		-- the event the part belongs to
	ord integer NOT NULL,		-- which of its values
	off bigint NOT NULL,		-- where the part's bytes go in the value
	data bytea NOT NULL,
	received_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (origin, schema_name, table_name, incarnation, seq, ord, off)
);
ALTER TABLE evrep.inbox_part ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE evrep.inbox_part IS
'parts of large values received, until their event is applied';
GRANT SELECT, DELETE ON evrep.inbox_part TO evrep_admin;
GRANT SELECT ON evrep.outbox_value TO evrep_admin;

/*
 * The rows of a chunk of a copy as records of a table, read from the
 * message's JSON text (json_rows.c): the consumer no longer builds a
 * chunk's thousand rows as jsonb first.  Harmless to anyone (it reads its
 * argument only), like json_populate_recordset.
 */
CREATE FUNCTION evrep._json_rows(row_type anyelement, rows text)
RETURNS SETOF anyelement
LANGUAGE C STABLE PARALLEL SAFE ROWS 1000
AS 'MODULE_PATHNAME', 'evrep_json_rows';
COMMENT ON FUNCTION evrep._json_rows(anyelement, text) IS
'the rows of a JSON array of row objects as records of row_type''s table, as the copy''s apply reads them';
