-- A subscriber's own table name: evrep_subscribe(published, target => ...)
-- applies a published table into a local table of another schema and name.
-- (The error context would show each internal call: not needed here.)
\set SHOW_CONTEXT never
CREATE SCHEMA replica;
-- the subscriber's own public.patron: unrelated, never touched
CREATE TABLE public.patron (id int PRIMARY KEY, name text, local_only text);
INSERT INTO public.patron VALUES (1, 'mine', 'x'), (2, 'also mine', 'y');
CREATE TABLE replica.patron_copy (id int PRIMARY KEY, name text NOT NULL,
	tier text DEFAULT 'basic');

-- "into" is a reserved word: it cannot name a parameter
SELECT evrep_subscribe('patron', into => 'replica.patron_copy');

-- refusals: a target that does not exist, a table without the key, a NULL
-- target, a published name of three parts, an empty one
SELECT evrep_subscribe('patron', target => 'replica.nope');
CREATE TABLE replica.nokey (id int, name text);
SELECT evrep_subscribe('patron', target => 'replica.nokey');
CREATE TABLE replica.defkey (id int PRIMARY KEY DEFERRABLE, name text);
SELECT evrep_subscribe('patron', target => 'replica.defkey');
CREATE VIEW replica.v AS SELECT 1 AS id;
SELECT evrep_subscribe('patron', target => 'replica.v');
SELECT evrep_subscribe('patron', target => NULL);
SELECT evrep_subscribe('db.public.patron', target => 'replica.patron_copy');
SELECT evrep_subscribe('', target => 'replica.patron_copy');
SELECT count(*) AS nothing_subscribed FROM evrep.subscription WHERE target_schema = 'replica';

-- unqualified: the published table is public.patron
SELECT evrep_subscribe('patron', target => 'replica.patron_copy', copy_data => false);
SELECT schema_name, table_name, relid, target_schema, target_table, key_columns
FROM evrep.subscription WHERE target_schema = 'replica' ORDER BY 1, 2;

-- the same published table again, into the same or another table
SELECT evrep_subscribe('public.patron', target => 'replica.patron_copy');
CREATE TABLE replica.other (id int PRIMARY KEY, name text);
SELECT evrep_subscribe('patron', target => 'replica.other');
-- positional, two string literals match both forms: name target, or cast
SELECT evrep_subscribe('patron', 'replica.other');
SELECT evrep_subscribe('patron'::text, 'replica.other');
-- another published name into the same target
SELECT evrep_subscribe('sales.patron', target => 'replica.patron_copy');
-- the target under its own name (the regclass form)
SELECT evrep_subscribe('replica.patron_copy');
-- the local public.patron is not subscribed: it may be, under its own name
SELECT evrep_subscribe('patron');
-- quoted and mixed-case published names keep their case
SELECT evrep_subscribe('"Sales"."Patron"', target => 'replica.other', copy_data => false);
SELECT schema_name, table_name, relid, target_schema, target_table
FROM evrep.subscription WHERE target_schema = 'replica' ORDER BY 1, 2;
SELECT evrep_unsubscribe('public.patron');
SELECT evrep_unsubscribe('replica.other');
SELECT schema_name, table_name FROM evrep.sync WHERE table_name ILIKE 'patron' ORDER BY 1, 2;

-- events of public.patron go to replica.patron_copy; columns by name
CREATE FUNCTION cmsg(seq bigint, op text, r jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT jsonb_build_object('format', 'evrep.v1', 'origin', 'a', 'schema', 'public',
		'table', 'patron', 'key', jsonb_build_array('id'),
		'events', jsonb_build_array(jsonb_build_object('seq', seq, 'op', op, 'row', r)))::text
$$;
SELECT evrep_apply(cmsg(1, 'insert', '{"id": 1, "name": "Ada", "origin_only": 1}'));
SELECT evrep_apply(cmsg(2, 'insert', '{"id": 2, "name": "Bob"}'));
SELECT evrep_apply(cmsg(3, 'update', '{"id": 1, "name": "Ada L."}'));
SELECT evrep_apply(cmsg(4, 'insert', '{"id": 3, "name": "Cy"}'));
SELECT evrep_apply(cmsg(5, 'delete', '{"id": 2, "name": "Bob"}'));
SELECT * FROM replica.patron_copy ORDER BY id;
SELECT * FROM public.patron ORDER BY id;

-- a copy: chunks go into the target, evrep.sync keeps the published name
SELECT evrep_resync('replica.patron_copy');
SELECT evrep_resync('public.patron');
SELECT role, schema_name, table_name, phase FROM evrep.sync_status WHERE table_name = 'patron';
SELECT evrep_apply(jsonb_build_object('format', 'evrep.v1', 'origin', 'a', 'schema', 'public',
	'table', 'patron', 'events', jsonb_build_array(jsonb_build_object('seq', 6, 'op', 'copy',
	'copy', jsonb_build_object('for', 'regress',
		'request', (SELECT request_id FROM evrep.sync WHERE table_name = 'patron'),
		'estimate', 2, 'key', '[{"column": "id", "collation": null}]'::jsonb,
		'after', NULL, 'upto', NULL,
		'rows', '[{"id": 1, "name": "Ada L."}, {"id": 4, "name": "Di"}]'::jsonb))))::text);
SELECT * FROM replica.patron_copy ORDER BY id;
SELECT * FROM public.patron ORDER BY id;
SELECT role, schema_name, table_name, phase, rows_copied FROM evrep.sync_status
WHERE table_name = 'patron';

-- a truncate empties the target only
SELECT evrep_apply(cmsg(7, 'truncate', '{}'));
SELECT count(*) AS replica_rows FROM replica.patron_copy;
SELECT count(*) AS own_rows FROM public.patron;

-- an event the target refuses is parked with both names, and replayed
ALTER TABLE replica.patron_copy ADD CONSTRAINT short_name CHECK (length(name) < 10);
SELECT evrep_apply(cmsg(8, 'insert', '{"id": 5, "name": "a much longer name"}'));
SELECT origin, schema_name, table_name, target_schema, target_table, seq, error
FROM evrep.dead_letter WHERE table_name = 'patron' ORDER BY id;
SELECT role, origin, schema_name, table_name, target_schema, target_table, applied,
	dead_letters, last_error
FROM evrep.status WHERE role = 'apply' AND table_name = 'patron';
ALTER TABLE replica.patron_copy DROP CONSTRAINT short_name;
SELECT evrep_replay(id) FROM evrep.dead_letter WHERE table_name = 'patron' AND seq = 8;
SELECT * FROM replica.patron_copy ORDER BY id;

-- a rename of the target keeps the subscription (relid), and the names shown
ALTER TABLE replica.patron_copy RENAME TO patrons;
SELECT evrep_apply(cmsg(9, 'insert', '{"id": 6, "name": "Ed"}'));
SELECT * FROM replica.patrons ORDER BY id;
SELECT relid, target_schema, target_table FROM evrep.subscription WHERE table_name = 'patron';
SELECT schema_name, table_name, target_schema, target_table, applied
FROM evrep.status WHERE role = 'apply' AND table_name = 'patron';

-- unsubscribe by the local table; events then are parked as not subscribed
SELECT evrep_unsubscribe('replica.patrons');
SELECT count(*) AS subscriptions FROM evrep.subscription WHERE table_name = 'patron';
SELECT evrep_apply(cmsg(10, 'insert', '{"id": 7, "name": "Flo"}'));
SELECT schema_name, table_name, target_schema, target_table, error
FROM evrep.dead_letter WHERE table_name = 'patron' AND seq = 10;
SELECT count(*) AS own_rows_untouched FROM public.patron;

DELETE FROM evrep.dead_letter WHERE table_name = 'patron';
DELETE FROM evrep.progress WHERE table_name = 'patron';
DROP SCHEMA replica CASCADE;
DROP TABLE public.patron;
DROP FUNCTION cmsg(bigint, text, jsonb);
