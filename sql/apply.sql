-- The apply path: one wire message at a time, once in effect.
CREATE TABLE orders (id integer PRIMARY KEY, amount integer NOT NULL CHECK (amount >= 0),
	status text NOT NULL DEFAULT 'new', note text DEFAULT 'local');
SELECT evrep_subscribe('orders');
SELECT evrep_subscribe('orders');
SELECT evrep_subscribe('no_such_table');
SELECT schema_name, table_name, relid::regclass, key_columns FROM evrep.subscription;

CREATE FUNCTION msg(origin text, seq bigint, op text, r jsonb, tbl text DEFAULT 'orders')
RETURNS text LANGUAGE sql AS $$
	SELECT jsonb_build_object('format', 'evrep.v1', 'origin', origin, 'schema', 'public',
		'table', tbl, 'key', jsonb_build_array('id'),
		'events', jsonb_build_array(jsonb_build_object('seq', seq, 'op', op, 'row', r)))::text
$$;

SELECT evrep_apply(msg('a', 1, 'insert', '{"id": 1, "amount": 10, "status": "new", "note": "n"}'));
SELECT evrep_apply(msg('a', 2, 'update', '{"id": 1, "amount": 11, "status": "paid", "note": "n"}'));
SELECT * FROM orders ORDER BY id;
-- a redelivery is skipped
SELECT evrep_apply(msg('a', 2, 'update', '{"id": 1, "amount": 99, "status": "dup", "note": "n"}'));
SELECT * FROM orders ORDER BY id;
-- the same number from another origin is another stream
SELECT evrep_apply(msg('b', 2, 'insert', '{"id": 2, "amount": 20, "status": "new", "note": "n"}'));
SELECT evrep_apply(msg('a', 3, 'delete', '{"id": 1, "amount": 11, "status": "paid", "note": "n"}'));
SELECT * FROM orders ORDER BY id;

-- a number that arrives late fills its gap and is applied, exactly once
SELECT evrep_apply(msg('a', 6, 'insert', '{"id": 6, "amount": 6, "status": "s", "note": "n"}'));
SELECT origin, last_seq, gaps FROM evrep.progress ORDER BY origin;
SELECT evrep_apply(msg('a', 4, 'insert', '{"id": 4, "amount": 4, "status": "s", "note": "n"}'));
SELECT evrep_apply(msg('a', 4, 'insert', '{"id": 4, "amount": 44, "status": "dup", "note": "n"}'));
SELECT evrep_apply(msg('a', 5, 'insert', '{"id": 5, "amount": 5, "status": "s", "note": "n"}'));
SELECT evrep_apply(msg('a', 2, 'insert', '{"id": 2, "amount": 0, "status": "old", "note": "n"}'));
SELECT * FROM orders ORDER BY id;
SELECT origin, last_seq, gaps, applied, skipped, parked FROM evrep.progress ORDER BY origin;

-- several events in one message, in order; columns matched by name:
-- an unknown column is ignored, a missing one keeps its local value
SELECT evrep_apply('{"format":"evrep.v1","origin":"a","schema":"public","table":"orders",
  "events":[{"seq":7,"op":"insert","row":{"id":7,"amount":1,"status":"x","remote_only":true}},
            {"seq":8,"op":"update","row":{"id":7,"amount":2,"status":"y"}},
            {"seq":9,"op":"update","row":{"id":7,"amount":3,"status":"z"}}]}');
SELECT * FROM orders WHERE id = 7;

-- what capture produces, apply accepts: capture src.item, apply as dst.item
CREATE SCHEMA src;
CREATE SCHEMA dst;
CREATE TABLE src.item (id bigint PRIMARY KEY, name text, price numeric, tags text[],
	at timestamptz, doc jsonb);
CREATE TABLE dst.item (LIKE src.item INCLUDING ALL);
SELECT evrep_publish('src.item');
SELECT evrep_subscribe('dst.item');
INSERT INTO src.item SELECT g, 'n' || g, g / 3.0, ARRAY['t' || g, NULL],
	'2026-11-26 10:00:00+00'::timestamptz + g * interval '1 minute', jsonb_build_object('g', g)
FROM generate_series(1, 50) g;
UPDATE src.item SET name = 'renamed "quoted"' WHERE id % 10 = 0;
DELETE FROM src.item WHERE id % 7 = 0;
SELECT sum(evrep_apply(jsonb_set(message::jsonb, '{schema}', '"dst"')::text))
FROM evrep_claim(1000) WHERE message LIKE '%"schema":"src"%';
SELECT count(*) FROM dst.item;
SELECT (SELECT array_agg(s ORDER BY id)::text FROM src.item s)
     = (SELECT array_agg(d ORDER BY id)::text FROM dst.item d) AS identical;
DELETE FROM evrep.outbox; DELETE FROM evrep.outbox_batch;
SELECT evrep_unpublish('src.item');

-- schema drift, a tolerant reader: columns the origin has and this node
-- lacks are ignored (one WARNING per table, above) and counted; columns the
-- origin lacks keep their local values; a type mismatch is parked
SELECT evrep_apply('{"format":"evrep.v1","origin":"drift","schema":"public","table":"orders",
  "events":[{"seq":1,"op":"insert","row":{"id":70,"amount":1,"status":"x","remote_only":1,"v2":2}},
            {"seq":2,"op":"update","row":{"id":70,"amount":2,"status":"y","remote_only":3}},
            {"seq":3,"op":"update","row":{"id":70,"amount":3}}]}');
SELECT * FROM orders WHERE id = 70;
SELECT evrep_apply('{"format":"evrep.v1","origin":"drift","schema":"public","table":"orders",
  "events":[{"seq":4,"op":"update","row":{"id":70,"amount":"four","status":"z"}}]}');
SELECT origin, applied, dead_letters, unknown_column_events FROM evrep.status
WHERE role = 'apply' AND origin = 'drift';
DELETE FROM evrep.progress WHERE origin = 'drift';
DELETE FROM evrep.dead_letter WHERE origin = 'drift';
DELETE FROM orders WHERE id = 70;
-- a run of upserts of distinct keys is one statement; a key written as the
-- number 80 and as the string "80" looks distinct to it but is one row: the
-- statement fails and the events are applied one by one, in order, as always
SELECT evrep_apply('{"format":"evrep.v1","origin":"runs","schema":"public","table":"orders",
  "events":[{"seq":1,"op":"insert","row":{"id":80,"amount":1,"status":"a","note":"n"}},
            {"seq":2,"op":"insert","row":{"id":81,"amount":1,"status":"a","note":"n"}},
            {"seq":3,"op":"update","row":{"id":"80","amount":2,"status":"b","note":"n"}},
            {"seq":4,"op":"delete","row":{"id":81}},
            {"seq":5,"op":"insert","row":{"id":82,"amount":5,"status":"c","note":"n"}},
            {"seq":6,"op":"insert","row":{"id":83,"amount":6,"status":"d"}},
            {"seq":7,"op":"insert","row":{"id":84,"amount":7,"status":"e","note":"n"}}]}');
SELECT * FROM orders WHERE id BETWEEN 80 AND 89 ORDER BY id;
SELECT applied, skipped, dead_letters FROM evrep.status WHERE role = 'apply' AND origin = 'runs';
DELETE FROM evrep.progress WHERE origin = 'runs';
DELETE FROM orders WHERE id BETWEEN 80 AND 89;
-- a run may lack local columns, if all its events lack the same ones: they
-- keep their values or take their defaults; a run ends where the columns
-- change; an ALWAYS trigger counts the statements
CREATE TABLE apply_statements (n integer);
CREATE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN INSERT INTO public.apply_statements VALUES (1); RETURN NULL; END$$;
CREATE TRIGGER count_statement AFTER INSERT ON orders
	FOR EACH STATEMENT EXECUTE FUNCTION count_statement();
ALTER TABLE orders ENABLE ALWAYS TRIGGER count_statement;
INSERT INTO orders VALUES (90, 0, 'old', 'mine');
TRUNCATE apply_statements;
SELECT evrep_apply('{"format":"evrep.v1","origin":"runs","schema":"public","table":"orders",
  "events":[{"seq":1,"op":"update","row":{"id":90,"amount":1,"status":"a"}},
            {"seq":2,"op":"insert","row":{"id":91,"amount":2,"status":"b","remote_only":1}},
            {"seq":3,"op":"insert","row":{"id":92,"amount":3,"status":"c"}},
            {"seq":4,"op":"insert","row":{"id":93,"amount":4,"status":"d","note":"remote"}},
            {"seq":5,"op":"insert","row":{"id":94,"amount":5,"status":"e","note":null}}]}');
SELECT * FROM orders WHERE id BETWEEN 90 AND 99 ORDER BY id;
SELECT count(*) AS insert_statements FROM apply_statements;
SELECT applied, skipped, dead_letters, unknown_column_events FROM evrep.status
WHERE role = 'apply' AND origin = 'runs';
-- a run of inserts is a plain INSERT; a key the table has already fails it,
-- and the events are applied one by one, as upserts (two statements)
INSERT INTO orders VALUES (95, 0, 'old', 'mine');
TRUNCATE apply_statements;
SELECT evrep_apply('{"format":"evrep.v1","origin":"runs","schema":"public","table":"orders",
  "events":[{"seq":6,"op":"insert","row":{"id":95,"amount":6,"status":"f"}},
            {"seq":7,"op":"insert","row":{"id":96,"amount":7,"status":"g"}}]}');
SELECT * FROM orders WHERE id BETWEEN 95 AND 99 ORDER BY id;
SELECT count(*) AS insert_statements FROM apply_statements;
SELECT applied, skipped, dead_letters FROM evrep.status WHERE role = 'apply' AND origin = 'runs';
DROP TRIGGER count_statement ON orders;
DROP FUNCTION count_statement();
DROP TABLE apply_statements;
DELETE FROM evrep.progress WHERE origin = 'runs';
DELETE FROM orders WHERE id BETWEEN 90 AND 99;
-- a message's events and rows are read from its text, not built as jsonb:
-- members in any order, spacing, an escaped name, a member this node does
-- not know; evrep._json_rows reads the runs (counted per transaction)
SET track_functions = 'all';
BEGIN;
SELECT evrep_apply('{"format":"evrep.v1","origin":"text","schema":"public","table":"orders",
  "events": [ {"op":"insert", "seq":1, "row": {"status":"a", "id":100, "amount":1, "note":"x,}]\""}},
   {"row":{"id":101,"amount":2,"status":"b","note":null},"seq":2,"op":"insert","commit_ts":"2026-12-08T01:00:00+00:00"},
   {"seq":3,"op":"insert","commit_ts":"2026-12-08T01:00:00+00:00","row":{"id":102,"amount":3,"st\u0061tus":"c"}},
   {"seq":4,"op":"insert","row":{"id":103,"amount":4,"status":"d"},"from_a_newer_origin":[1]},
   {"seq":5,"op":"update","row":{"id":100,"amount":5,"status":"\u00e9","note":"y"}},
   {"seq":6,"op":"update","row":{"id":101,"amount":6,"status":"f","note":"z"}} ] }');
SELECT calls AS json_rows_statements FROM pg_stat_xact_user_functions WHERE funcname = '_json_rows';
COMMIT;
SELECT * FROM orders WHERE id BETWEEN 100 AND 109 ORDER BY id;
SELECT applied, last_commit_ts FROM evrep.progress WHERE origin = 'text';
-- a row read from text is still checked with its message: one that is not
-- JSON (or a number numeric_in refuses) parks the message whole, as a
-- message that is not JSON; its events are applied by none
SELECT evrep_apply('{"format":"evrep.v1","origin":"text","schema":"public","table":"orders",
  "events":[{"seq":7,"op":"insert","row":{"id":104,"amount":7,"status":"g"}},
            {"seq":8,"op":"insert","row":{"id":105,"amount":1e999999,"status":"h"}}]}');
SELECT evrep_apply('{"format":"evrep.v1","origin":"text","schema":"public","table":"orders",
  "events":[{"seq":7,"op":"insert","row":{"id":104,"amount":7,"status":"\u0000"}}]}');
SELECT evrep_apply('{"format":"evrep.v1","origin":"text","schema":"public","table":"orders",
  "events":[{"seq":7,"op":"insert","row":{"id":104,"amount":7,"status":"g"}},
            {"seq":8,"op":"insert","row":{"id":105,"amount":tru,"status":"h"}},
            {"seq":9,"op":"update","row":{"id":104,"amount":9,"status":"i"}},
            {"seq":10,"op":"insert","row":{"id":106,"amount":10,"status":"j"}}]}');
SELECT * FROM orders WHERE id BETWEEN 104 AND 109 ORDER BY id;
SELECT origin, seq, sqlstate, error FROM evrep.dead_letter
WHERE body LIKE '{"format":"evrep.v1","origin":"text"%' ORDER BY id;
SELECT applied, dead_letters FROM evrep.status WHERE role = 'apply' AND origin = 'text';
-- a key written two ways (an escape) looks like two keys to the run: its
-- statement fails, and the events are applied one by one, in order
SELECT evrep_apply('{"format":"evrep.v1","origin":"text","schema":"public","table":"orders",
  "events":[{"seq":11,"op":"insert","row":{"id":107,"amount":1,"status":"k"}},
            {"seq":12,"op":"update","row":{"id":"1\u00307","amount":12,"status":"l"}}]}');
-- a member repeated in an event, or a seq jsonb reads as a whole number,
-- is read as before: the message parsed whole (jsonb keeps the last row)
SELECT evrep_apply('{"format":"evrep.v1","origin":"text","schema":"public","table":"orders",
  "events":[{"seq":13,"op":"insert","row":{"id":108,"amount":0,"status":"first"},
             "row":{"id":108,"amount":13,"status":"last"}},
            {"seq":1.4e1,"op":"insert","row":{"id":109,"amount":14,"status":"n"}}]}');
SELECT * FROM orders WHERE id BETWEEN 107 AND 109 ORDER BY id;
SELECT applied, dead_letters FROM evrep.status WHERE role = 'apply' AND origin = 'text';
RESET track_functions;
DELETE FROM evrep.progress WHERE origin = 'text';
DELETE FROM evrep.dead_letter WHERE body LIKE '{"format":"evrep.v1","origin":"text"%';
DELETE FROM orders WHERE id BETWEEN 100 AND 109;
-- a key made deferrable after subscribing cannot serve ON CONFLICT: the
-- event is parked, and the dead letter says so
CREATE TABLE defk (id integer PRIMARY KEY, v text);
SELECT evrep_subscribe('defk');
ALTER TABLE defk DROP CONSTRAINT defk_pkey, ADD PRIMARY KEY (id) DEFERRABLE;
SELECT evrep_apply(msg('dk', 1, 'insert', '{"id": 1, "v": "x"}', 'defk'));
SELECT sqlstate, error FROM evrep.dead_letter WHERE origin = 'dk';
SELECT count(*) AS applied_rows FROM defk;
SELECT evrep_unsubscribe('defk');
DROP TABLE defk;
DELETE FROM evrep.dead_letter WHERE origin = 'dk';
DELETE FROM evrep.progress WHERE origin = 'dk';
-- deadletter.sql counts its dead letters from id 1
SELECT setval('evrep.dead_letter_id_seq', 1, false);
