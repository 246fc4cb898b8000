-- Least privilege: who may manage evrep, what the apply may write, and
-- where the broker password is visible.
CREATE ROLE evrep_nobody LOGIN;
CREATE ROLE evrep_manager LOGIN IN ROLE evrep_admin;
CREATE TABLE secret (id integer PRIMARY KEY, v text);
CREATE TABLE managed (id integer PRIMARY KEY, v text);
ALTER TABLE managed OWNER TO evrep_manager;
GRANT SELECT ON customer TO evrep_manager;

SET ROLE evrep_nobody;
SHOW evrep.broker_url;
SELECT count(*) FROM pg_settings WHERE name = 'evrep.broker_url';
SELECT count(*) FROM pg_settings WHERE setting LIKE '%s3cret%';
SELECT evrep_publish('secret');
SELECT evrep_subscribe('secret');
SELECT evrep_apply('{}');
SELECT count(*) FROM evrep.outbox;
RESET ROLE;

-- evrep_admin members manage tables they have rights on, and only those
SET ROLE evrep_manager;
SHOW evrep.broker_url;
SELECT evrep_publish('secret');
SELECT evrep_subscribe('secret');
SELECT evrep_subscribe('managed');
SELECT evrep_publish('managed');
INSERT INTO managed VALUES (1, 'captured');
RESET ROLE;
SELECT count(*) FROM evrep.outbox o JOIN evrep.publication p ON p.id = o.pub_id
WHERE p.table_name = 'managed';
SELECT evrep_unpublish('managed');
DELETE FROM evrep.outbox; DELETE FROM evrep.outbox_batch;

-- the apply runs as the subscription's owner: revoke its right, the event parks
SELECT owner::regrole FROM evrep.subscription WHERE table_name = 'managed';
REVOKE ALL ON managed FROM evrep_manager;
SELECT evrep_apply(msg('z', 1, 'insert', '{"id": 2, "v": "as owner"}', 'managed'));
SELECT error FROM evrep.dead_letter ORDER BY id DESC LIMIT 1;
GRANT ALL ON managed TO evrep_manager;
SELECT evrep_apply(msg('z', 2, 'insert', '{"id": 3, "v": "as owner"}', 'managed'));
SELECT * FROM managed ORDER BY id;
-- a copy reads its rows through evrep._json_rows, which needs USAGE on
-- schema evrep (evrep_admin's): an owner that left evrep_admin still gets
-- its copy, read through jsonb as before
REVOKE evrep_admin FROM evrep_manager;
SELECT evrep_resync('managed');
SELECT evrep_apply(format('{"format":"evrep.v1","origin":"y","schema":"public","table":"managed",'
	'"events":[{"seq":1,"op":"copy","copy":{"for":"regress","request":%s,"estimate":3,'
	'"key":[{"column":"id","collation":null}],"after":null,"upto":null,"rows":'
	'[{"id":1,"v":"captured"},{"id":3,"v":"as owner"},{"id":40,"v":"copied"}]}}]}',
	(SELECT request_id FROM evrep.sync WHERE table_name = 'managed')));
SELECT * FROM managed ORDER BY id;
SELECT error FROM evrep.dead_letter WHERE table_name = 'managed' AND origin = 'y';
-- and so does a run of events, read from its text by evrep._json_rows too
SELECT evrep_apply('{"format":"evrep.v1","origin":"y","schema":"public","table":"managed",
  "events":[{"seq":2,"op":"insert","row":{"id":41,"v":"run"}},
            {"seq":3,"op":"insert","row":{"id":42,"v":"run"}}]}');
SELECT * FROM managed WHERE id > 40 ORDER BY id;
SELECT error FROM evrep.dead_letter WHERE table_name = 'managed' AND origin = 'y';
GRANT evrep_admin TO evrep_manager;
DELETE FROM managed WHERE id >= 40;

-- identifiers with quotes, dots and SQL in them are inert
CREATE SCHEMA "we.ird";
CREATE TABLE "we.ird"."x""; DROP TABLE secret; --" ("id"")" integer PRIMARY KEY, "v.v" text);
SELECT evrep_publish('"we.ird"."x""; DROP TABLE secret; --"');
SELECT evrep_subscribe('"we.ird"."x""; DROP TABLE secret; --"');
INSERT INTO "we.ird"."x""; DROP TABLE secret; --" VALUES (1, 'a''b');
SELECT routing_key, events FROM evrep_claim(10);
-- replay what was captured into the same table after deleting it locally
CREATE TEMP TABLE m AS SELECT message FROM evrep_claim(10);
DELETE FROM "we.ird"."x""; DROP TABLE secret; --";
SELECT evrep_apply(jsonb_set(message::jsonb, '{origin}', '"elsewhere"')::text) FROM m;
SELECT * FROM "we.ird"."x""; DROP TABLE secret; --";
SELECT to_regclass('secret') IS NOT NULL AS secret_still_there;
-- a message naming a table by SQL text applies nothing
SELECT evrep_apply(msg('z', 1, 'insert', '{"id": 1}', 'secret; DROP TABLE secret'));
SELECT to_regclass('secret') IS NOT NULL AS secret_still_there;
DELETE FROM evrep.outbox; DELETE FROM evrep.outbox_batch;

-- Only an origin speaks for itself: a sender the broker vouched for must be
-- the origin's own broker user, or one evrep_allow_sender names for it.
SELECT count(*) AS before_dead FROM evrep.dead_letter \gset
SELECT evrep_apply(msg('shop', 1, 'insert', '{"id": 10, "v": "forged"}', 'managed'), 'mallory');
SELECT evrep_apply(msg('shop', 9223372036854775807, 'insert', '{"id": 11, "v": "forged"}', 'managed'), 'mallory');
SELECT count(*) AS forged_rows FROM managed WHERE v = 'forged';
SELECT count(*) AS forged_progress FROM evrep.progress WHERE origin = 'shop';
SELECT origin, seq, sqlstate, error, attempts FROM evrep.dead_letter
WHERE id > (SELECT max(id) - 2 FROM evrep.dead_letter) ORDER BY id;
-- once per origin and user a WARNING says what would fix it (above), each
-- dead letter keeps the hint, and evrep.status shows the stream, which has
-- no progress, with the fix in last_error
SELECT hint FROM evrep.dead_letter WHERE id > (SELECT max(id) - 2 FROM evrep.dead_letter) ORDER BY id;
SELECT role, origin, table_name, applied, dead_letters, last_error FROM evrep.status
WHERE origin = 'shop';
SELECT evrep_apply(msg('shop', 1, 'insert', '{"id": 12, "v": "own user"}', 'managed'), 'shop');
SELECT evrep_allow_sender('shop', 'shop-svc');
SELECT evrep_apply(msg('shop', 2, 'insert', '{"id": 13, "v": "allowed user"}', 'managed'), 'shop-svc');
-- once a user is named for the origin, only named users speak for it
SELECT evrep_apply(msg('shop', 3, 'insert', '{"id": 14, "v": "forged"}', 'managed'), 'shop');
SELECT evrep_disallow_sender('shop', 'shop-svc');
SELECT evrep_disallow_sender('shop', 'shop-svc');
SELECT * FROM managed WHERE id >= 10 ORDER BY id;
SELECT origin, last_seq, applied FROM evrep.progress WHERE origin = 'shop';

-- stream progress and stream numbers move only by applying and publishing
SET ROLE evrep_manager;
SELECT count(*) >= 0 AS can_read FROM evrep.progress;
UPDATE evrep.progress SET last_seq = 1000000;
INSERT INTO evrep.progress (origin, schema_name, table_name, last_seq, gaps)
VALUES ('x', 'public', 'managed', 99, '{}');
UPDATE evrep.publication SET last_seq = 0;
SELECT evrep_allow_sender('x', 'y');
RESET ROLE;
SELECT evrep_disallow_sender('x', 'y');
SET ROLE evrep_nobody;
SELECT evrep_allow_sender('x', 'z');
RESET ROLE;

-- objects a user puts first on the search_path are never called
CREATE SCHEMA trap;
CREATE FUNCTION trap.jsonb_populate_record(anyelement, jsonb) RETURNS anyelement
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trap called'; END $$;
CREATE FUNCTION trap.now() RETURNS timestamptz
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trap called'; END $$;
SET search_path = trap, public, pg_catalog;
SELECT evrep_apply(msg('z', 3, 'insert', '{"id": 4, "v": "not trapped"}', 'managed'));
SELECT * FROM public.managed WHERE id = 4;
RESET search_path;
DROP SCHEMA trap CASCADE;
