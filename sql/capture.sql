-- The capture trigger: one event per changed row, in the writer's
-- transaction; a statement's events of one table are one outbox row.
CREATE TABLE customer (id integer PRIMARY KEY, name text NOT NULL, credit integer);
SELECT evrep_publish('customer');

INSERT INTO customer VALUES (1, 'Ann', 100);
INSERT INTO customer VALUES (2, 'Bob', 200), (3, 'Cy', NULL);
UPDATE customer SET credit = credit + 1 WHERE id IN (1, 2);
-- a key change travels as delete + insert
UPDATE customer SET id = 30 WHERE id = 3;
DELETE FROM customer WHERE id = 2;
SELECT p.table_name, o.op, o.row_data, o.seq
FROM evrep.outbox_pending o JOIN evrep.publication p ON p.id = o.pub_id
ORDER BY o.id, o.ord;
-- one row per statement: a lone event as it is, several as op m
SELECT o.op, o.events FROM evrep.outbox o ORDER BY o.id;

-- rolled back work leaves no outbox rows
SELECT count(*) AS before FROM evrep.outbox_pending;
BEGIN;
INSERT INTO customer VALUES (4, 'Dee', 1);
ROLLBACK;
BEGIN;
INSERT INTO customer VALUES (5, 'Eve', 1);
SAVEPOINT s;
INSERT INTO customer VALUES (6, 'Fay', 1);
UPDATE customer SET name = 'Ann2' WHERE id = 1;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord OFFSET 7;

-- the apply session is not captured (no loops)
SET session_replication_role = replica;
INSERT INTO customer VALUES (7, 'Gus', 1);
RESET session_replication_role;
SELECT count(*) AS after FROM evrep.outbox_pending;

-- a writer with no rights on evrep's schema is still captured
CREATE ROLE evrep_writer;
GRANT INSERT ON customer TO evrep_writer;
SET ROLE evrep_writer;
INSERT INTO customer VALUES (8, 'Hal', 1);
SELECT count(*) FROM evrep.outbox_pending;
RESET ROLE;
SELECT o.row_data FROM evrep.outbox_pending o ORDER BY o.id DESC, o.ord DESC LIMIT 1;

-- refusals
CREATE TABLE nokey (a integer);
SELECT evrep_publish('nokey');
SELECT evrep_publish('no_such_table');
SELECT evrep_publish('customer');
CREATE VIEW customer_v AS SELECT * FROM customer;
SELECT evrep_publish('customer_v');
SELECT evrep_unpublish('nokey');
CREATE TABLE defkey (a integer PRIMARY KEY DEFERRABLE);
SELECT evrep_publish('defkey');
SELECT evrep_subscribe('defkey');
SELECT (SELECT count(*) FROM evrep.publication WHERE table_name = 'defkey') AS published,
       (SELECT count(*) FROM evrep.subscription WHERE table_name = 'defkey') AS subscribed;
DROP TABLE defkey;

-- unpublish stops capture; re-publish continues the same numbering
SELECT evrep_unpublish('customer');
INSERT INTO customer VALUES (9, 'Ivy', 1);
SELECT count(*) AS unchanged FROM evrep.outbox_pending;
SELECT evrep_publish('customer');
SELECT id, schema_name, table_name, key_columns, active FROM evrep.publication;

-- multi-column keys and other types go through PostgreSQL's own JSON
CREATE TABLE line (order_id integer, line_no smallint, sku text, qty numeric(10,2),
	at timestamptz, tags text[], extra jsonb, PRIMARY KEY (order_id, line_no));
SELECT evrep_publish('line');
INSERT INTO line VALUES (1, 1, 'a"b\c', 1.50, '2026-01-02 03:04:05+00', '{x,y}', '{"k": [1, null]}');
UPDATE line SET line_no = 2 WHERE order_id = 1;
SELECT o.op, o.row_data FROM evrep.outbox_pending o
JOIN evrep.publication p ON p.id = o.pub_id WHERE p.table_name = 'line' ORDER BY o.id, o.ord;
SELECT evrep_unpublish('line');
DROP TABLE line, nokey CASCADE;

-- Subtransactions: an event dies with the subtransaction that captured it,
-- and only with it, also when a statement's gathered events were written
-- inside a subtransaction that started after them (a trigger's exception
-- block writing to a published table between the statement's rows).
CREATE TABLE nest (id integer PRIMARY KEY, v text);
CREATE TABLE nest_log (id integer PRIMARY KEY, note text);
SELECT evrep_publish('nest');
SELECT evrep_publish('nest_log');
CREATE FUNCTION nest_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		-- another table's event, then the same table's, at a deeper level
		INSERT INTO nest_log VALUES (NEW.id, 'log of ' || NEW.id);
		IF NEW.id < 100 THEN
			INSERT INTO nest VALUES (NEW.id + 100, 'nested in ' || NEW.id);
		END IF;
		IF NEW.v = 'fail' THEN
			RAISE EXCEPTION 'undo the nested writes of %', NEW.id;
		END IF;
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	RETURN NULL;
END
$$;
-- fires after evrep's capture trigger for each row (triggers fire by name)
CREATE TRIGGER zz_nest_after AFTER INSERT ON nest FOR EACH ROW EXECUTE FUNCTION nest_after();
DELETE FROM evrep.outbox o USING evrep.publication p
WHERE p.id = o.pub_id AND p.table_name IN ('nest', 'nest_log');
INSERT INTO nest VALUES (1, 'kept'), (2, 'fail'), (3, 'kept');
BEGIN;
INSERT INTO nest VALUES (4, 'fail'), (5, 'kept');
SAVEPOINT s;
INSERT INTO nest VALUES (6, 'kept'), (7, 'fail');
ROLLBACK TO SAVEPOINT s;
INSERT INTO nest VALUES (8, 'fail'), (9, 'fail');
COMMIT;
-- in capture order: rows 2, 4, 8 and 9 without their nested writes; 6 and 7 not at all
SELECT p.table_name, o.op, o.row_data FROM evrep.outbox_pending o
JOIN evrep.publication p ON p.id = o.pub_id ORDER BY o.id, o.ord;
-- the events are exactly the committed changes of both tables
SELECT (SELECT array_agg(id ORDER BY id) FROM nest) AS nest,
	   (SELECT array_agg((o.row_data ->> 'id')::int ORDER BY (o.row_data ->> 'id')::int)
		FROM evrep.outbox_pending o JOIN evrep.publication p ON p.id = o.pub_id
		WHERE p.table_name = 'nest') AS nest_events,
	   (SELECT array_agg(id ORDER BY id) FROM nest_log) AS nest_log,
	   (SELECT array_agg((o.row_data ->> 'id')::int ORDER BY (o.row_data ->> 'id')::int)
		FROM evrep.outbox_pending o JOIN evrep.publication p ON p.id = o.pub_id
		WHERE p.table_name = 'nest_log') AS nest_log_events;
-- a PL/pgSQL loop of single-row inserts in one exception block that fails
-- half way: nothing of it, and what came before it stays
DELETE FROM evrep.outbox o USING evrep.publication p
WHERE p.id = o.pub_id AND p.table_name IN ('nest', 'nest_log');
DO $$
BEGIN
	INSERT INTO nest_log VALUES (1000, 'before');
	BEGIN
		FOR i IN 1001..1005 LOOP
			INSERT INTO nest_log VALUES (i, 'in the block');
		END LOOP;
		INSERT INTO nest_log VALUES (1000, 'duplicate key');
	EXCEPTION WHEN unique_violation THEN
		NULL;
	END;
	INSERT INTO nest_log SELECT g, 'after' FROM generate_series(1006, 1008) g;
END
$$;
SELECT o.op, o.row_data FROM evrep.outbox_pending o
JOIN evrep.publication p ON p.id = o.pub_id WHERE p.table_name = 'nest_log' ORDER BY o.id, o.ord;
-- COPY gathers its rows too
COPY nest_log FROM STDIN;
2001	copied
2002	copied
\.
SELECT o.op, o.events FROM evrep.outbox o ORDER BY o.id DESC LIMIT 1;
SELECT evrep_unpublish('nest');
SELECT evrep_unpublish('nest_log');
DROP TABLE nest, nest_log;
DROP FUNCTION nest_after();
DELETE FROM evrep.outbox o USING evrep.publication p
WHERE p.id = o.pub_id AND p.table_name IN ('nest', 'nest_log');

-- a statement's events over 2 kB are stored compressed (lz4), and read back
-- whole: the JSON of a bulk statement was written to the WAL a second time
CREATE TABLE bulk (id integer PRIMARY KEY, note text);
SELECT evrep_publish('bulk');
INSERT INTO bulk SELECT g, 'note number ' || g FROM generate_series(1, 500) g;
SELECT o.op, o.events, pg_column_compression(o.row_data) AS compression,
	   pg_column_size(o.row_data) * 4 < octet_length(o.row_data::text) AS smaller
FROM evrep.outbox o JOIN evrep.publication p ON p.id = o.pub_id WHERE p.table_name = 'bulk';
SELECT count(*), count(*) FILTER (WHERE (o.row_data->>'note') = 'note number ' || (o.row_data->>'id'))
FROM evrep.outbox_pending o JOIN evrep.publication p ON p.id = o.pub_id WHERE p.table_name = 'bulk';
SELECT evrep_unpublish('bulk');
DROP TABLE bulk;
DELETE FROM evrep.outbox o USING evrep.publication p
WHERE p.id = o.pub_id AND p.table_name = 'bulk';
