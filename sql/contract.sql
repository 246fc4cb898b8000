-- Contracts: a published table's column list and row filter (contract.c).
CREATE SCHEMA ct;
SET search_path = ct, public;
CREATE TABLE ct.customer (id integer PRIMARY KEY, name text NOT NULL, credit integer,
						  secret text, status text NOT NULL DEFAULT 'ACTIVE');
CREATE TABLE ct.pair (a integer, b integer, note text, PRIMARY KEY (a, b));
CREATE FUNCTION ct.mutable_f(integer) RETURNS boolean LANGUAGE sql VOLATILE AS 'SELECT $1 > 0';
CREATE FUNCTION ct.stable_f(integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 > 0';
CREATE TABLE ct.other (id integer PRIMARY KEY);

-- refusals: column lists
SELECT evrep_publish('ct.customer', columns => '{name,credit}');
SELECT evrep_publish('ct.pair', columns => '{a,note}');
SELECT evrep_publish('ct.customer', columns => '{id,nope}');
SELECT evrep_publish('ct.customer', columns => '{id,name,name}');
SELECT evrep_publish('ct.customer', columns => '{id,xmin}');
SELECT evrep_publish('ct.customer', columns => '{id,NULL}');
SELECT evrep_publish('ct.customer', columns => '{}');
-- refusals: row filters
SELECT evrep_publish('ct.customer', row_filter => 'credit > ');
SELECT evrep_publish('ct.customer', row_filter => 'credit > 0; DROP TABLE ct.other');
SELECT evrep_publish('ct.customer', row_filter => 'credit > 0, true');
SELECT evrep_publish('ct.customer', row_filter => 'true FROM ct.other');
SELECT evrep_publish('ct.customer', row_filter => 'credit > 0 AS x');
SELECT evrep_publish('ct.customer', row_filter => 'credit');
SELECT evrep_publish('ct.customer', row_filter => 'nope > 0');
SELECT evrep_publish('ct.customer', row_filter => 'other.id > 0');
SELECT evrep_publish('ct.customer', row_filter => 'xmin::text <> ''''');
SELECT evrep_publish('ct.customer', row_filter => 'customer IS NOT NULL');
SELECT evrep_publish('ct.customer', row_filter => 'credit > random()');
SELECT evrep_publish('ct.customer', row_filter => 'ct.mutable_f(credit)');
SELECT evrep_publish('ct.customer', row_filter => 'now() > ''2000-01-01''');
SELECT evrep_publish('ct.customer', row_filter => 'id IN (SELECT id FROM ct.other)');
SELECT evrep_publish('ct.customer', row_filter => 'count(*) > 0');
SELECT evrep_publish('ct.customer', row_filter => 'generate_series(1, id) > 0');
SELECT evrep_publish('ct.customer', row_filter => 'sum(credit) OVER () > 0');
SELECT evrep_publish('ct.customer', row_filter => '$1 > 0');
SELECT count(*) AS publications FROM evrep.publication WHERE schema_name = 'ct';

-- a column list and a filter, shown as stored
SELECT evrep_publish('ct.customer', columns => '{status,credit,name,id}',
					 row_filter => 'status <> ''DRAFT'' AND ct.stable_f(coalesce(credit, 1))');
SELECT table_name, key_columns, column_list, row_filter FROM evrep.publication
WHERE schema_name = 'ct';
SELECT evrep_publish('ct.customer');

TRUNCATE evrep.outbox;
-- insert: in the filter or not
INSERT INTO ct.customer VALUES (1, 'Ann', 100, 's1', 'ACTIVE');
INSERT INTO ct.customer VALUES (2, 'Bob', 200, 's2', 'DRAFT');
-- update: only an unpublished column (nothing), a published one
UPDATE ct.customer SET secret = 's1b' WHERE id = 1;
UPDATE ct.customer SET credit = 101 WHERE id = 1;
-- update out of the filter (delete), into it (insert), neither (nothing)
UPDATE ct.customer SET status = 'DRAFT' WHERE id = 1;
UPDATE ct.customer SET status = 'ACTIVE' WHERE id = 2;
UPDATE ct.customer SET credit = 5 WHERE id = 1;
-- key change inside the filter: delete old key, insert new
UPDATE ct.customer SET id = 20 WHERE id = 2;
-- delete: sent if the old row passed
DELETE FROM ct.customer WHERE id = 1;
DELETE FROM ct.customer WHERE id = 20;
-- a row the filter does not pass
INSERT INTO ct.customer VALUES (3, 'Cy', -1, NULL, 'ACTIVE');
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord;

-- a writer's search_path does not change what the filter calls
CREATE SCHEMA evil;
CREATE FUNCTION evil.coalesce_(integer, integer) RETURNS integer LANGUAGE sql AS 'SELECT 1';
SET search_path = evil, ct, public;
INSERT INTO ct.customer VALUES (4, 'Dee', 7, NULL, 'ACTIVE');
SET search_path = ct, public;
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id DESC, o.ord DESC LIMIT 1;

-- changing the contract: rows that leave the filter are deleted, rows that
-- enter it inserted, and all rows sent again when columns are added
TRUNCATE evrep.outbox;
INSERT INTO ct.customer VALUES (5, 'Eve', 50, 'x', 'DRAFT'), (6, 'Fay', 60, 'y', 'ACTIVE');
TRUNCATE evrep.outbox;
SELECT evrep_alter_publication('ct.customer', columns => '{id,name,credit,status}',
							   row_filter => 'status = ''DRAFT'' OR credit > 55');
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord;
TRUNCATE evrep.outbox;
SELECT evrep_alter_publication('ct.customer', columns => '{id,name,secret}',
							   row_filter => 'status = ''DRAFT'' OR credit > 55');
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord;
TRUNCATE evrep.outbox;
-- the new contract is the capture's at once
UPDATE ct.customer SET credit = 0 WHERE id = 6;
UPDATE ct.customer SET name = 'Eve2' WHERE id = 5;
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord;
TRUNCATE evrep.outbox;
-- no contract: everything, as before
SELECT evrep_alter_publication('ct.customer');
SELECT column_list, row_filter FROM evrep.publication WHERE table_name = 'customer'
  AND schema_name = 'ct';
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord;
TRUNCATE evrep.outbox;
UPDATE ct.customer SET secret = 'z' WHERE id = 3;
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord;
SELECT evrep_alter_publication('ct.other');
SELECT evrep_alter_publication('ct.customer', columns => '{name}');

-- an ALTER TABLE that would break a contract is refused, like a dependency
SELECT evrep_publish('ct.pair', columns => '{a,b}', row_filter => 'note IS DISTINCT FROM ''x''');
ALTER TABLE ct.pair RENAME note TO remark;
ALTER TABLE ct.pair DROP COLUMN b;
ALTER TABLE ct.pair ALTER COLUMN note TYPE integer USING 0;
-- a role that owns the table but has no right on evrep gets the same answer
CREATE ROLE evrep_ct_owner;
ALTER TABLE ct.pair OWNER TO evrep_ct_owner;
GRANT USAGE ON SCHEMA ct TO evrep_ct_owner;
SET ROLE evrep_ct_owner;
ALTER TABLE ct.pair RENAME note TO remark;
ALTER TABLE ct.pair ADD COLUMN extra text;
RESET ROLE;
INSERT INTO ct.pair VALUES (1, 1, 'y');
-- changed in order: the contract first, then the table
SELECT evrep_alter_publication('ct.pair', columns => '{a,b}');
ALTER TABLE ct.pair RENAME note TO remark;
ALTER TABLE ct.pair DROP COLUMN extra;
INSERT INTO ct.pair VALUES (2, 2, 'y');
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord;

TRUNCATE evrep.outbox;
-- a toasted listed value an UPDATE leaves alone is no change of the contract
CREATE TABLE ct.doc (id int PRIMARY KEY, body text, n int);
SELECT evrep_publish('ct.doc', columns => '{id,body}');
INSERT INTO ct.doc SELECT 1, string_agg(md5(g::text), ''), 0 FROM generate_series(1, 4000) g;
SELECT pg_relation_size(reltoastrelid) > 0 AS toasted FROM pg_class WHERE oid = 'ct.doc'::regclass;
TRUNCATE evrep.outbox;
UPDATE ct.doc SET n = n + 1;
SELECT count(*) AS sent_for_n FROM evrep.outbox_pending;
UPDATE ct.doc SET body = body || 'x';
SELECT o.op, length(o.row_data->>'body') AS body_length, o.row_data::jsonb ? 'n' AS has_n
FROM evrep.outbox_pending o ORDER BY o.id, o.ord;
TRUNCATE evrep.outbox;
-- a filter that fails for a row fails that row's write, like a CHECK
CREATE TABLE ct.div (id int PRIMARY KEY, qty int);
SELECT evrep_publish('ct.div', row_filter => '100 / qty > 1');
INSERT INTO ct.div VALUES (1, 0);
INSERT INTO ct.div VALUES (2, 10), (3, 200);
SELECT o.op, o.row_data FROM evrep.outbox_pending o ORDER BY o.id, o.ord;
SELECT id FROM ct.div ORDER BY id;
SELECT evrep_unpublish('ct.doc');
SELECT evrep_unpublish('ct.div');
TRUNCATE evrep.outbox;
SELECT evrep_unpublish('ct.customer');
SELECT evrep_unpublish('ct.pair');
DROP SCHEMA ct, evil CASCADE;
DROP ROLE evrep_ct_owner;
RESET search_path;
