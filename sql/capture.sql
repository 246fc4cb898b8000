-- The capture trigger: one outbox row per changed row, in the writer's
-- transaction.
CREATE TABLE customer (id integer PRIMARY KEY, name text NOT NULL, credit integer);
SELECT evrep_publish('customer');

INSERT INTO customer VALUES (1, 'Ann', 100);
INSERT INTO customer VALUES (2, 'Bob', 200), (3, 'Cy', NULL);
UPDATE customer SET credit = credit + 1 WHERE id IN (1, 2);
-- a key change travels as delete + insert
UPDATE customer SET id = 30 WHERE id = 3;
DELETE FROM customer WHERE id = 2;
SELECT p.table_name, o.op, o.row_data, o.seq
FROM evrep.outbox o JOIN evrep.publication p ON p.id = o.pub_id
ORDER BY o.id;

-- rolled back work leaves no outbox rows
SELECT count(*) AS before FROM evrep.outbox;
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
SELECT o.op, o.row_data FROM evrep.outbox o ORDER BY o.id OFFSET 7;

-- the apply session is not captured (no loops)
SET session_replication_role = replica;
INSERT INTO customer VALUES (7, 'Gus', 1);
RESET session_replication_role;
SELECT count(*) AS after FROM evrep.outbox;

-- a writer with no rights on evrep's schema is still captured
CREATE ROLE evrep_writer;
GRANT INSERT ON customer TO evrep_writer;
SET ROLE evrep_writer;
INSERT INTO customer VALUES (8, 'Hal', 1);
SELECT count(*) FROM evrep.outbox;
RESET ROLE;
SELECT o.row_data FROM evrep.outbox o ORDER BY o.id DESC LIMIT 1;

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
SELECT count(*) AS unchanged FROM evrep.outbox;
SELECT evrep_publish('customer');
SELECT id, schema_name, table_name, key_columns, active FROM evrep.publication;

-- multi-column keys and other types go through PostgreSQL's own JSON
CREATE TABLE line (order_id integer, line_no smallint, sku text, qty numeric(10,2),
	at timestamptz, tags text[], extra jsonb, PRIMARY KEY (order_id, line_no));
SELECT evrep_publish('line');
INSERT INTO line VALUES (1, 1, 'a"b\c', 1.50, '2026-01-02 03:04:05+00', '{x,y}', '{"k": [1, null]}');
UPDATE line SET line_no = 2 WHERE order_id = 1;
SELECT o.op, o.row_data FROM evrep.outbox o
JOIN evrep.publication p ON p.id = o.pub_id WHERE p.table_name = 'line' ORDER BY o.id;
SELECT evrep_unpublish('line');
DROP TABLE line, nokey CASCADE;
