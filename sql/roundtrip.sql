-- Every value arrives unchanged: what the capture trigger writes, apply
-- reads back to the same value, compared as text, on each apply path (a
-- set-based run, one event at a time, a copy) and whatever the writer's or
-- the applier's DateStyle, IntervalStyle and extra_float_digits.
CREATE TYPE rt_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN rt_posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN rt_doc AS jsonb;
CREATE TYPE rt_pair AS (x float8, label text, doc jsonb, at timestamptz);
CREATE SCHEMA rt_src;
CREATE SCHEMA rt_dst;
CREATE TABLE rt_src.v (id int PRIMARY KEY, n numeric, f8 float8, f4 real, i8 bigint,
	i2 smallint, t text, b bytea, ts timestamp, tstz timestamptz, d date, iv interval,
	tm time, ttz timetz, u uuid, ip inet, j json, jb jsonb, dj rt_doc, ai int[], a2 text[],
	af float8[], ajb jsonb[], aiv interval[], e rt_mood, dom rt_posint, c rt_pair,
	r numrange, tr tstzrange, bo boolean, ch char(3), bits varbit, pt point, big text);
CREATE TABLE rt_dst.v (LIKE rt_src.v INCLUDING ALL);
SELECT evrep_publish('rt_src.v');
SELECT evrep_subscribe('rt_dst.v', copy_data => false);

-- the rows of rt_src.v that rt_dst.v does not have exactly (as text)
CREATE FUNCTION rt_diff() RETURNS TABLE (id int, src text, dst text) LANGUAGE sql AS $$
	SELECT id, left(sr::text, 300), left(dr::text, 300)
	FROM rt_src.v sr FULL JOIN rt_dst.v dr USING (id)
	WHERE sr::text IS DISTINCT FROM dr::text ORDER BY id
$$;
-- applies what was captured for rt_src.v to rt_dst.v; the count of events
CREATE FUNCTION rt_ship(per_message int DEFAULT NULL) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	SELECT sum(evrep_apply(jsonb_set(message::jsonb, '{schema}', '"rt_dst"')::text)) INTO n
	FROM evrep_claim(100000, per_message) WHERE message LIKE '%"schema":"rt_src"%';
	-- as if every message was confirmed
	DELETE FROM evrep.outbox; DELETE FROM evrep.outbox_batch;
	RETURN n;
END
$$;

-- edge values, written with the default settings
INSERT INTO rt_src.v (id) VALUES (1);  -- NULL in every column
INSERT INTO rt_src.v VALUES
	(2, 'NaN', '-Infinity', 'NaN', 9223372036854775807, -32768,
	 E'quote '' double " back\\slash \\\\ tab\t newline\n emoji 😀 cjk 漢字 nul-free',
	 '\x00ff5c27', 'infinity', '-infinity', 'infinity', '-1 day +02:03:04.5', '24:00:00',
	 '23:59:59.999999+14:59', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '::ffff:10.0.0.1/120',
	 '{"a": 1,  "a" : 2, "b":[1, 2.50,  {"c" :null}]  }', 'null', 'null',
	 '{1,NULL,-2147483648}', '{{a,"b c"},{NULL,"x,y\"z"}}', '{-0,1.5,NaN,-Infinity,5e-324}',
	 '{"null",NULL,"{\"k\": [null]}"}', '{"-1 days +02:00:00","1 year 2 mons -3 days"}',
	 'happy', 5, ROW('-0', 'a "quoted", (label)', 'null', '-infinity'), '(,1.50]',
	 '["2026-11-30 10:00:00+00",infinity)', true, 'ab', B'1010110', '(1.5,-0)', NULL),
	(3, '1234567890123456789012345678901234567890.0123456789', 1.7976931348623157e308,
	 3.4028235e38, -9223372036854775808, 32767, '', '\x', '2000-01-01 00:00:00.000001',
	 '1999-12-31 23:59:59.999999-08', '0044-03-15 BC', '178000000 years', '00:00:00',
	 '00:00:00-15:59', '00000000-0000-0000-0000-000000000000', '0.0.0.0/0', 'null', '"str"',
	 '{"k": null, "z": [null, 1.50]}', '{}', '{{1,2},{3,4}}', '{}', '{NULL}', '{}', 'sad', 1,
	 ROW(5e-324, '', '{}', 'infinity'), 'empty', 'empty', false, '   ', B'', '(0,0)', NULL),
	(4, '-0.00000000000000000000000000000000000001', '-0', '-0', 0, 0, 'NULL', '\x4e554c4c',
	 '-infinity', 'infinity', '-infinity', '-178000000 years', '12:34:56.789', '12:00+00',
	 'ffffffff-ffff-ffff-ffff-ffffffffffff', '2001:db8::/32', '[]', '[null]', '"null"',
	 '{NULL,NULL}', '{"NULL",""}', '{NULL}', '{"\"s\""}', '{NULL}', 'ok', 2147483647,
	 ROW(NULL, NULL, NULL, NULL), '[-1e-30,)', '(,)', NULL, 'x', B'0', '(1e-300,-1e300)', NULL),
	(5, 0.1, 0.1, 0.1, 1, 1, repeat('é', 10), '\x', '2026-11-30 12:00', '2026-11-30 12:00+05:30',
	 '2026-11-30', '1 mon', '01:02', '01:02+01', NULL, '192.168.0.1', ' { } ', '{"a": "ü\u00e9"}',
	 '[1, "two", {"3": [4]}]', '{7}', '{{x}}', '{0.1}', NULL, NULL, 'ok', 3,
	 ROW(0.1, 'one', '[1, {"a": null}]', '2026-11-30 12:00+00'), '[0.1,0.2)', NULL, true,
	 'abc', B'1', '(0.1,0.2)', NULL);
-- a 1 MB value, stored out of line (TOASTed)
INSERT INTO rt_src.v (id, big, jb) SELECT 6, string_agg(md5(g::text), ''),
	jsonb_build_object('big', string_agg(md5(g::text), ''))
FROM generate_series(1, 31250) g;
SELECT pg_column_size(big) > 100000 AS toasted FROM rt_src.v WHERE id = 6;

-- one message of six distinct keys: the set-based run
SELECT rt_ship();
SELECT count(*) FROM rt_dst.v;
SELECT * FROM rt_diff();
-- a JSON null in a jsonb column is not SQL NULL; json keeps its text
SELECT id, jb IS NULL AS jb_null, jb, dj, j FROM rt_dst.v WHERE id IN (1, 2, 3) ORDER BY id;

-- written and applied under other settings, one event per message: the
-- upserts of existing rows and the deletes take the one-at-a-time path
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -15;
SET TimeZone = 'Asia/Kathmandu';
INSERT INTO rt_src.v SELECT id + 10, n, f8, f4, i8, i2, t, b, ts, tstz, d, iv, tm, ttz, u, ip,
	j, jb, dj, ai, a2, af, ajb, aiv, e, dom, c, r, tr, bo, ch, bits, pt, big
FROM rt_src.v WHERE id <= 6;
UPDATE rt_src.v SET f8 = 0.30000000000000004, iv = '-1 year -2 days +3:04', d = '2026-02-01',
	tstz = '2026-11-30 23:45:00.5+05:45', j = '{"b":1,"a":2}', jb = '"null"'
WHERE id IN (2, 12);
DELETE FROM rt_src.v WHERE id IN (4, 15);
SELECT rt_ship(1);
SELECT * FROM rt_diff();
RESET DateStyle;
RESET IntervalStyle;
RESET extra_float_digits;
SELECT * FROM rt_diff();
SELECT id, f8, iv, d, j, jb FROM rt_dst.v WHERE id IN (2, 12) ORDER BY id;
RESET TimeZone;

-- a copy: the chunk's rows are written by evrep._row_json and applied
-- set-based after the key range is emptied
DELETE FROM rt_dst.v;
SELECT evrep_resync('rt_dst.v');
SELECT evrep_apply(jsonb_build_object('format', 'evrep.v1', 'origin', 'regress',
	'schema', 'rt_dst', 'table', 'v', 'events', jsonb_build_array(jsonb_build_object(
	'seq', (SELECT last_seq + 1 FROM evrep.progress WHERE schema_name = 'rt_dst'), 'op', 'copy',
	'copy', jsonb_build_object('for', 'regress', 'request',
		(SELECT request_id FROM evrep.sync WHERE schema_name = 'rt_dst'), 'estimate', 11,
		'key', '[{"column": "id", "collation": null}]'::jsonb, 'after', NULL, 'upto', NULL,
		'rows', (SELECT json_agg(evrep._row_json(s) ORDER BY id) FROM rt_src.v s)::jsonb)))
	)::text);
SELECT count(*) FROM rt_dst.v;
SELECT * FROM rt_diff();

-- a copy of a table without array or composite columns: the chunk's rows
-- are read from the message's text (evrep._json_rows), not built as jsonb;
-- the message is text as a publisher writes it, not jsonb's output
CREATE TABLE rt_src.s AS SELECT id, n, f8, f4, i8, i2, t, b, ts, tstz, d, iv, tm, ttz, u, ip, j,
	jb, dj, e, dom, r, tr, bo, ch, bits, pt, big FROM rt_src.v;
ALTER TABLE rt_src.s ADD PRIMARY KEY (id);
CREATE TABLE rt_dst.s (LIKE rt_src.s INCLUDING ALL);
SELECT evrep_publish('rt_src.s');
SELECT evrep_subscribe('rt_dst.s', copy_data => false);
SELECT evrep_resync('rt_dst.s');
INSERT INTO rt_dst.s (id, t) VALUES (100, 'not at the origin: the copy removes it');
SELECT evrep_apply(format('{"format":"evrep.v1","origin":"regress","schema":"rt_dst","table":"s",'
	'"events":[{"seq":%s,"op":"copy","copy":{"for":"regress","request":%s,"estimate":11,'
	'"key":[{"column":"id","collation":null}],"after":null,"upto":null,"rows":[%s]}}]}',
	coalesce((SELECT last_seq FROM evrep.progress WHERE schema_name = 'rt_dst' AND table_name = 's'), 0) + 1,
	(SELECT request_id FROM evrep.sync WHERE schema_name = 'rt_dst' AND table_name = 's'),
	(SELECT string_agg(evrep._row_json(s)::text, ',' ORDER BY id) FROM rt_src.s s)));
SELECT count(*) FROM rt_dst.s;
SELECT id, left(sr::text, 300) AS src, left(dr::text, 300) AS dst
FROM rt_src.s sr FULL JOIN rt_dst.s dr USING (id)
WHERE sr::text IS DISTINCT FROM dr::text ORDER BY id;
SELECT id, jb IS NULL AS jb_null, jb, dj, j FROM rt_dst.s WHERE id IN (1, 2, 3) ORDER BY id;
-- its events, in the text the publisher wrote (not jsonb's): runs of
-- updates and of inserts read their rows from it (evrep._json_rows), and
-- the deletes go one at a time
CREATE FUNCTION rt_ship_s() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	SELECT sum(evrep_apply(replace(message, '"schema":"rt_src"', '"schema":"rt_dst"'))) INTO n
	FROM evrep_claim(100000) WHERE message LIKE '%"schema":"rt_src","table":"s"%';
	DELETE FROM evrep.outbox; DELETE FROM evrep.outbox_batch;
	RETURN n;
END
$$;
UPDATE rt_dst.s SET t = 'stale', n = -1;
DELETE FROM evrep.progress WHERE schema_name = 'rt_dst' AND table_name = 's'; -- the copy's seq 1
UPDATE rt_src.s SET i2 = i2;
CREATE TEMP TABLE rt_keep AS SELECT * FROM rt_src.s;
DELETE FROM rt_src.s WHERE id <> 6;
INSERT INTO rt_src.s SELECT * FROM rt_keep WHERE id <> 6;
SET track_functions = 'all';
BEGIN;
SELECT rt_ship_s();
SELECT calls AS json_rows_statements FROM pg_stat_xact_user_functions WHERE funcname = '_json_rows';
COMMIT;
RESET track_functions;
SELECT count(*) FROM rt_dst.s;
SELECT id, left(sr::text, 300) AS src, left(dr::text, 300) AS dst
FROM rt_src.s sr FULL JOIN rt_dst.s dr USING (id)
WHERE sr::text IS DISTINCT FROM dr::text ORDER BY id;
SELECT evrep_unpublish('rt_src.s');

-- json and jsonb keys: deletes find their rows
CREATE TABLE rt_src.k (k jsonb PRIMARY KEY, f float8);
CREATE TABLE rt_dst.k (LIKE rt_src.k INCLUDING ALL);
SELECT evrep_publish('rt_src.k');
SELECT evrep_subscribe('rt_dst.k', copy_data => false);
INSERT INTO rt_src.k VALUES ('null', '-0'), ('"null"', 1), ('{"a": [1, null]}', 2), ('1.50', 3);
DELETE FROM rt_src.k WHERE k IN ('null', '1.50');
UPDATE rt_src.k SET f = '-0' WHERE k = '"null"';
SELECT rt_ship(1);
SELECT k, f FROM rt_dst.k ORDER BY k;
SELECT (SELECT array_agg(s ORDER BY k)::text FROM rt_src.k s)
	 = (SELECT array_agg(d ORDER BY k)::text FROM rt_dst.k d) AS identical;

-- a copy of a table keyed by jsonb: a key object holds the key's text, as
-- a row does, so the range ends at the string "null" and not elsewhere
INSERT INTO rt_src.k VALUES ('null', 7);
INSERT INTO rt_dst.k VALUES ('null', 99), ('5', 5), ('"zzz"', 0);
SELECT evrep_resync('rt_dst.k');
CREATE FUNCTION rt_kchunk(after jsonb, upto jsonb, rows jsonb) RETURNS text
LANGUAGE sql AS $$
	SELECT jsonb_build_object('format', 'evrep.v1', 'origin', 'regress', 'schema', 'rt_dst',
		'table', 'k', 'events', jsonb_build_array(jsonb_build_object(
		'seq', (SELECT last_seq + 1 FROM evrep.progress WHERE schema_name = 'rt_dst' AND table_name = 'k'),
		'op', 'copy', 'copy', jsonb_build_object('for', 'regress', 'request',
			(SELECT request_id FROM evrep.sync WHERE schema_name = 'rt_dst' AND table_name = 'k'),
			'estimate', 3, 'key', '[{"column": "k", "collation": null}]'::jsonb,
			'after', after, 'upto', upto, 'rows', rows))))::text
$$;
SELECT evrep_apply(rt_kchunk(NULL, jsonb_build_object('k', '"null"'::jsonb::text),
	(SELECT jsonb_agg(evrep._row_json(s)::jsonb ORDER BY k) FROM rt_src.k s WHERE k <= '"null"')));
SELECT evrep_apply(rt_kchunk(jsonb_build_object('k', '"null"'::jsonb::text), NULL,
	(SELECT jsonb_agg(evrep._row_json(s)::jsonb ORDER BY k) FROM rt_src.k s WHERE k > '"null"')));
SELECT k, f FROM rt_dst.k ORDER BY k;

-- the encoding itself, for readers in other languages (docs/protocol.md)
SELECT evrep._row_json(s) FROM rt_src.v s WHERE id IN (1, 3, 14) ORDER BY id;

SELECT evrep_unpublish('rt_src.v');
SELECT evrep_unpublish('rt_src.k');
DELETE FROM evrep.outbox; DELETE FROM evrep.outbox_batch;
