-- Copies of existing rows, subscriber side: a chunk is applied only by the
-- node and request it is for, makes its key range equal to its rows, and
-- moves evrep.sync on; it never counts as an applied change.
CREATE SCHEMA "Odd Sch";
CREATE TABLE "Odd Sch"."Line Item" ("Order Id" int, "line#" int, "Note" text,
	qty int DEFAULT 7, PRIMARY KEY ("Order Id", "line#"));

SELECT evrep_subscribe('"Odd Sch"."Line Item"', copy_data => NULL);
SELECT evrep_resync('"Odd Sch"."Line Item"');
-- without a running consumer (evrep.database is empty) nothing is waited for
SELECT evrep_subscribe('"Odd Sch"."Line Item"', copy_data => false);
SELECT role, node, phase, rows_copied, chunks FROM evrep.sync_status WHERE table_name = 'Line Item';
SELECT evrep_resync('"Odd Sch"."Line Item"');
SELECT role, node, phase, rows_copied, chunks, finished_at IS NULL AS unfinished
FROM evrep.sync_status WHERE table_name = 'Line Item';

-- rows the subscriber had before, some the origin does not have
INSERT INTO "Odd Sch"."Line Item" VALUES (1, 1, 'old', 1), (1, 2, 'gone', 1), (2, 1, 'old', 1),
	(5, 1, 'old', 1), (9, 9, 'gone', 1);

CREATE FUNCTION cmsg(seq bigint, target text, request bigint, after jsonb, upto jsonb,
					 rows jsonb, key jsonb DEFAULT '[{"column": "Order Id", "collation": null},
												   {"column": "line#", "collation": null}]')
RETURNS text LANGUAGE sql AS $$
	SELECT jsonb_build_object('format', 'evrep.v1', 'origin', 'a', 'schema', 'Odd Sch',
		'table', 'Line Item', 'events', jsonb_build_array(jsonb_build_object('seq', seq,
		'op', 'copy', 'copy', jsonb_build_object('for', target, 'request', request,
		'estimate', 4, 'key', key, 'after', after, 'upto', upto, 'rows', rows))))::text
$$;
CREATE FUNCTION req() RETURNS bigint LANGUAGE sql AS
	$$ SELECT request_id FROM evrep.sync WHERE table_name = 'Line Item' $$;

-- an event numbered before the copy, still missing: the copy makes it moot
SELECT evrep_apply(jsonb_build_object('format', 'evrep.v1', 'origin', 'a', 'schema', 'Odd Sch',
	'table', 'Line Item', 'events', jsonb_build_array(jsonb_build_object('seq', 3, 'op', 'insert',
	'row', '{"Order Id": 3, "line#": 0, "Note": "live"}'::jsonb)))::text);
SELECT origin, last_seq, gaps, applied FROM evrep.progress WHERE table_name = 'Line Item';

-- the first chunk, (start, (2,1)]: (1,2) is deleted, rows beyond are kept
SELECT evrep_apply(cmsg(5, 'regress', req(), NULL, '{"Order Id": 2, "line#": 1}',
	'[{"Order Id": 1, "line#": 1, "Note": "a", "qty": 1},
	  {"Order Id": 2, "line#": 1, "Note": "b", "qty": 2}]'));
SELECT * FROM "Odd Sch"."Line Item" ORDER BY 1, 2;
SELECT origin, last_seq, gaps, applied, skipped FROM evrep.progress WHERE table_name = 'Line Item';
SELECT phase, node, rows_copied, rows_estimated, chunks FROM evrep.sync_status WHERE table_name = 'Line Item';

-- a chunk for another node, or for an older request: only the number is taken
SELECT evrep_apply(cmsg(6, 'other', req(), NULL, NULL, '[{"Order Id": 1, "line#": 1, "Note": "X"}]'));
SELECT evrep_apply(cmsg(7, 'regress', req() - 1, NULL, NULL,
	'[{"Order Id": 1, "line#": 1, "Note": "X"}]'));
-- a change after the first chunk is applied as usual
SELECT evrep_apply(jsonb_build_object('format', 'evrep.v1', 'origin', 'a', 'schema', 'Odd Sch',
	'table', 'Line Item', 'events', jsonb_build_array(jsonb_build_object('seq', 8, 'op', 'update',
	'row', '{"Order Id": 1, "line#": 1, "Note": "a2", "qty": 1}'::jsonb)))::text);
SELECT * FROM "Odd Sch"."Line Item" ORDER BY 1, 2;

-- a chunk that cannot be applied is parked whole; the copy does not move
SELECT evrep_apply(cmsg(9, 'regress', req(), '{"Order Id": 2, "line#": 1}', '{"Order Id": 4, "line#": 0}',
	'[{"Order Id": 3, "line#": 1, "Note": "c", "qty": "many"}]'));
SELECT seq, sqlstate, error FROM evrep.dead_letter WHERE table_name = 'Line Item' ORDER BY id;
SELECT phase, rows_copied, chunks FROM evrep.sync_status WHERE table_name = 'Line Item';

-- the last chunk, ((2,1), end): (9,9) goes; rows without qty keep the local value
-- (the rows of a chunk come from one SELECT: the first row's columns count)
SELECT evrep_apply(cmsg(10, 'regress', req(), '{"Order Id": 2, "line#": 1}', NULL,
	'[{"Order Id": 3, "line#": 0, "Note": "copied"}, {"Order Id": 5, "line#": 1, "Note": "e"}]'));
SELECT * FROM "Odd Sch"."Line Item" ORDER BY 1, 2;
SELECT phase, node, rows_copied, chunks, finished_at IS NOT NULL AS finished
FROM evrep.sync_status WHERE table_name = 'Line Item';
SELECT origin, last_seq, gaps, applied, skipped, parked FROM evrep.progress WHERE table_name = 'Line Item';

-- a key the origin sorts differently cuts other ranges here: nothing is
-- deleted (one WARNING), the rows are still copied
SELECT evrep_resync('"Odd Sch"."Line Item"');
SELECT evrep_apply(cmsg(11, 'regress', req(), NULL, '{"Order Id": 1, "line#": 1}', '[{"Order Id": 1, "line#": 1, "Note": "k"}]',
	'[{"column": "line#", "collation": null}, {"column": "Note", "collation": "C"}]'));
SELECT evrep_apply(cmsg(12, 'regress', req(), NULL, '{"Order Id": 1, "line#": 1}', '[{"Order Id": 1, "line#": 1, "Note": "k"}]',
	'[{"column": "Order Id", "collation": "C"}, {"column": "line#", "collation": null}]'));
SELECT * FROM "Odd Sch"."Line Item" ORDER BY 1, 2;
-- the origin's key order, not the local column order, cuts the range:
-- (line#, Order Id) <= (1, 3) holds for (3,0), (1,1) and (2,1) but not (5,1)
SELECT evrep_apply(cmsg(13, 'regress', req(), NULL, '{"Order Id": 3, "line#": 1}',
	'[{"Order Id": 3, "line#": 0, "Note": "copied"}]',
	'[{"column": "line#", "collation": null}, {"column": "Order Id", "collation": null}]'));
SELECT * FROM "Odd Sch"."Line Item" ORDER BY 1, 2;
SELECT evrep_apply(cmsg(14, 'regress', req(), '{"Order Id": 3, "line#": 1}', NULL,
	'[{"Order Id": 1, "line#": 1, "Note": "a2", "qty": 1}, {"Order Id": 5, "line#": 1, "Note": "e", "qty": 5}]',
	'[{"column": "line#", "collation": null}, {"column": "Order Id", "collation": null}]'));
SELECT * FROM "Odd Sch"."Line Item" ORDER BY 1, 2;

-- once done, a chunk of the same request changes nothing
SELECT evrep_apply(cmsg(15, 'regress', req(), NULL, NULL, '[]'));
SELECT count(*) FROM "Odd Sch"."Line Item";

-- malformed chunks are parked with a precise error
SELECT max(id) AS last_dl FROM evrep.dead_letter \gset
SELECT evrep_apply(cmsg(16, 'regress', req(), NULL, NULL, '{"not": "an array"}'));
SELECT evrep_apply(replace(cmsg(17, 'regress', req(), NULL, NULL, '[]'), '"for": "regress", ', ''));
SELECT evrep_apply(cmsg(18, 'regress', req(), NULL, NULL, '[]', '[]'));
SELECT seq, sqlstate, error FROM evrep.dead_letter WHERE id > :last_dl ORDER BY id;

-- a resync is a new request, larger than the last
SELECT req() AS before \gset
SELECT evrep_resync('"Odd Sch"."Line Item"');
SELECT req() > :before AS newer, phase, rows_copied, chunks FROM evrep.sync
WHERE table_name = 'Line Item';

-- a chunk as a publisher writes it (text, not jsonb's output): its rows are
-- read from the text itself, and strings that look like JSON structure, or
-- spacing around the members, do not mislead the scan that finds them
SELECT format('{"format":"evrep.v1","origin":"a","schema":"Odd Sch","table":"Line Item",'
	'"events":[{"seq":%s,"op":"copy","copy":{"for":"regress","request":%s,"estimate":3,'
	'"key":[{"column":"Order Id","collation":null},{"column":"line#","collation":null}],'
	'"after":%s,"upto":%s,%s}}]}', 19, req(), 'null', '{"Order Id":2,"line#":1}',
	E'"rows" :\n [ {"Order Id":1,"line#":1,"Note":"]}\\" \\\\ \\"rows\\":[{","qty":1} ,'
	' {"line#":1,"Note":"a,b","Order Id":2,"qty":2}]') AS chunk19 \gset
SELECT regexp_replace(:'chunk19', '"request":[0-9]+', '"request":N') AS chunk19;
SELECT evrep_apply(:'chunk19');
SELECT * FROM "Odd Sch"."Line Item" ORDER BY 1, 2;
-- a row the JSON lexer rejects, after a good first row: parked whole, with
-- the text it came with
SELECT evrep_apply(replace(replace(replace(replace(:'chunk19', '"seq":19', '"seq":20'),
	'"after":null', '"after":{"Order Id":2,"line#":1}'),
	'"upto":{"Order Id":2,"line#":1}', '"upto":{"Order Id":3,"line#":9}'),
	' {"line#":1,"Note":"a,b","Order Id":2,"qty":2}]', ' {"Order Id":3,,}]'));
SELECT seq, sqlstate, error, position('"Note":"]}\" \\ \"rows\":[{"' in body) > 0 AS text_kept
FROM evrep.dead_letter WHERE seq = 20;
-- an escaped member name: the body is parsed whole, the rows still arrive
SELECT evrep_apply(regexp_replace(replace(replace(replace(:'chunk19', '"seq":19', '"seq":21'),
	'"after":null', '"after":{"Order Id":2,"line#":1}'),
	'"upto":{"Order Id":2,"line#":1}', '"upto":null'),
	'"rows" :.*\]}}]}$', '"ro\u0077s":[{"Order Id":4,"line#":1,"Note":"d","qty":4}]}}]}'));
SELECT * FROM "Odd Sch"."Line Item" ORDER BY 1, 2;
SELECT phase, rows_copied, chunks FROM evrep.sync_status WHERE table_name = 'Line Item';
SELECT seq, sqlstate, error FROM evrep.dead_letter WHERE seq > 20 ORDER BY id;

SELECT evrep_unsubscribe('"Odd Sch"."Line Item"');
SELECT count(*) FROM evrep.sync WHERE table_name = 'Line Item';
DROP TABLE "Odd Sch"."Line Item";
DROP SCHEMA "Odd Sch";
DELETE FROM evrep.progress WHERE table_name = 'Line Item';
DELETE FROM evrep.dead_letter;
DROP FUNCTION cmsg, req;
