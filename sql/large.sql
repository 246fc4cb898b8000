-- Large events: values that travel in parts before their event
-- (docs/protocol.md), as a third-party sender would write them.
CREATE TABLE doc (id integer PRIMARY KEY, body text, data bytea, tags int[], note text DEFAULT 'local');
SELECT evrep_subscribe('doc');

CREATE FUNCTION part(seq bigint, val int, off bigint, bytes text) RETURNS text LANGUAGE sql AS $$
	SELECT '{"format":"evrep.v1","origin":"o","schema":"public","table":"doc","revision":2,'
		|| '"part":{"seq":' || seq || ',"value":' || val || ',"offset":' || off
		|| ',"bytes":' || octet_length(bytes) || '}}' || E'\n' || bytes
$$;
CREATE FUNCTION large(seq bigint, of text, r jsonb, vals jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT jsonb_build_object('format', 'evrep.v1', 'origin', 'o', 'schema', 'public',
		'table', 'doc', 'key', jsonb_build_array('id'),
		'events', jsonb_build_array(jsonb_build_object('seq', seq, 'op', 'large',
			'large', jsonb_build_object('of', of, 'row', r, 'values', vals))))::text
$$;

-- two parts of a text, one of a bytea (its bytes, here printable), one of
-- an int[] in its text form; a part sent twice is kept once
SELECT evrep_apply(part(1, 0, 0, 'hello, '));
SELECT evrep_apply(part(1, 0, 7, 'wörld'));
SELECT evrep_apply(part(1, 0, 7, 'wörld'));
SELECT evrep_apply(part(1, 1, 0, 'raw'));
SELECT evrep_apply(part(1, 2, 0, '{1,2,3}'));
SELECT ord, off, length(data) FROM evrep.inbox_part ORDER BY ord, off;
SELECT evrep_apply(large(1, 'insert', '{"id": 1}',
	'[{"column": "body", "form": "text", "bytes": 13},
	  {"column": "data", "form": "bytea", "bytes": 3},
	  {"column": "tags", "form": "text", "bytes": 7}]'));
SELECT id, body, data, tags, note FROM doc;
SELECT count(*) AS parts_left FROM evrep.inbox_part;

-- an update; a value for a column the table lacks is ignored
SELECT evrep_apply(part(2, 0, 0, 'x'));
SELECT evrep_apply(part(2, 1, 0, 'second'));
SELECT evrep_apply(large(2, 'update', '{"id": 1, "note": "n"}',
	'[{"column": "gone", "form": "text", "bytes": 1},
	  {"column": "body", "form": "text", "bytes": 6}]'));
SELECT id, body, data, tags, note FROM doc;

-- an update that left large values as they were names them: the row keeps
-- them; without the row it is parked (inserted, the row would lack them)
SELECT evrep_apply('{"format":"evrep.v1","origin":"o","schema":"public","table":"doc",
  "events":[{"seq":10,"op":"update","row":{"id":1,"note":"kept"},"unchanged":["body","data"]}]}');
SELECT id, body, data, tags, note FROM doc;
SELECT evrep_apply('{"format":"evrep.v1","origin":"o","schema":"public","table":"doc",
  "events":[{"seq":11,"op":"update","row":{"id":2,"note":"no row"},"unchanged":["body"]}]}');
SELECT evrep_apply('{"format":"evrep.v1","origin":"o","schema":"public","table":"doc",
  "events":[{"seq":12,"op":"update","row":{"id":1},"unchanged":[]}]}');
SELECT seq, sqlstate, error FROM evrep.dead_letter ORDER BY id;
DELETE FROM evrep.dead_letter;

-- a send of an event starts over with its first part: what an earlier send
-- of the same number left (a history that went back without a trace) is
-- not put together with it
SELECT evrep_apply(part(20, 0, 0, 'old-'));
SELECT evrep_apply(part(20, 0, 4, 'stale'));
SELECT evrep_apply(part(20, 0, 0, 'new-value'));
SELECT evrep_apply(large(20, 'insert', '{"id": 20}', '[{"column": "body", "form": "text", "bytes": 9}]'));
SELECT id, body FROM doc WHERE id = 20;

-- a part missing: the event is parked, naming what is missing; its parts
-- stay for the replay
SELECT evrep_apply(part(3, 0, 0, 'abc'));
SELECT evrep_apply(large(3, 'insert', '{"id": 3}', '[{"column": "body", "form": "text", "bytes": 6}]'));
SELECT seq, sqlstate, error FROM evrep.dead_letter ORDER BY id;
SELECT evrep_apply(part(3, 0, 3, 'def'));
SELECT evrep_replay(id) FROM evrep.dead_letter WHERE seq = 3;
SELECT id, body FROM doc ORDER BY id;
SELECT count(*) AS parts_left FROM evrep.inbox_part;

-- what is not a valid large event or part is parked, with the reason
SELECT evrep_apply(large(4, 'delete', '{"id": 4}', '[{"column": "body", "form": "text", "bytes": 1}]'));
SELECT evrep_apply(large(5, 'insert', '{"id": 5}', '[{"column": "body", "form": "base64", "bytes": 1}]'));
SELECT evrep_apply(large(6, 'insert', '{"id": 6}', '[]'));
SELECT evrep_apply(replace(part(7, 0, 0, 'abc'), '"bytes":3', '"bytes":4'));
SELECT evrep_apply(replace(part(8, 0, 0, 'abc'), '"seq":8', '"seq":0'));
-- a text form goes through the column type's input function
SELECT evrep_apply(part(9, 0, 0, 'a' || chr(1) || 'b'));
SELECT evrep_apply(large(9, 'insert', '{"id": 9}', '[{"column": "tags", "form": "text", "bytes": 3}]'));
SELECT seq, sqlstate, error FROM evrep.dead_letter WHERE replayed_at IS NULL ORDER BY id;

SELECT evrep_unsubscribe('doc');
DROP TABLE doc;
DELETE FROM evrep.dead_letter;
DELETE FROM evrep.progress;
DELETE FROM evrep.inbox_part;
DROP FUNCTION part(bigint, int, bigint, text);
DROP FUNCTION large(bigint, text, jsonb, jsonb);
