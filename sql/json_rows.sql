-- evrep._json_rows reads a copy's rows from their JSON text as
-- jsonb_populate_recordset reads them from jsonb: the same records.
CREATE DOMAIN jr_pos AS integer CHECK (VALUE > 0);
CREATE TYPE jr_mood AS ENUM ('sad', 'ok');
CREATE TABLE jr (id int PRIMARY KEY, t text, n numeric(10, 2), f float8, b bool, j json,
	jb jsonb, ts timestamptz, v varchar(3), e jr_mood, d jr_pos, dropped int, by bytea);
ALTER TABLE jr DROP COLUMN dropped;

-- the same records as jsonb_populate_recordset, for rows as row_json.c writes
-- them and for what other senders may write: members in any order, missing,
-- unknown, repeated (the last counts), escapes, spacing
CREATE FUNCTION jr_same(rows text) RETURNS TABLE (same boolean, n bigint) LANGUAGE sql AS $$
	SELECT (SELECT array_agg(r::text ORDER BY ord) FROM evrep._json_rows(NULL::jr, rows)
			WITH ORDINALITY AS r(id, t, n, f, b, j, jb, ts, v, e, d, by, ord))
		IS NOT DISTINCT FROM
		   (SELECT array_agg(r::text ORDER BY ord) FROM jsonb_populate_recordset(NULL::jr, rows::jsonb)
			WITH ORDINALITY AS r(id, t, n, f, b, j, jb, ts, v, e, d, by, ord)),
		   (SELECT count(*) FROM evrep._json_rows(NULL::jr, rows))
$$;
SELECT * FROM jr_same('[]');
SELECT * FROM jr_same('[{"id":1,"t":"a \"q\" \\ \n \u00e9 \ud83d\ude00","n":12.5,"f":-1.5e-300,"b":true,"ts":"2026-12-07T10:00:00+01:00","v":"abc","e":"ok","d":3,"by":"\\x00ff"},
	{"by":null,"d":1,"e":"sad","v":null,"ts":null,"b":false,"f":"NaN","n":"0.125","t":"","id":2},
	{"id":3},
	{"id":4,"unknown":{"x":[1,2]},"t":"first","t":"last"},
	{ "id" : 5 , "f" : "-Infinity" , "t" : "NULL" , "n" : 1e3 },
	{"id":6,"b":"t"}]');
-- an object or array where a column's text is expected is read as its JSON
-- text as sent (jsonb_populate_recordset gives jsonb's spacing): row_json.c
-- writes one only for array and composite columns, whose copies are read
-- through jsonb_populate_recordset
SELECT id, t FROM evrep._json_rows(NULL::jr, '[{"id":6,"t":{"an":[1,"b"]}},{"id":7,"t":[ 1 ]}]');
-- json and jsonb columns: a string holds the value's text (row_json.c), as
-- the consumer reads them with ->> and a cast; a null is SQL NULL
SELECT id, j, jb, jb IS NULL AS jb_null FROM evrep._json_rows(NULL::jr,
	'[{"id":1,"j":"{\"b\":1,  \"b\":2}","jb":"null"},{"id":2,"j":null,"jb":"\"s\""},
	  {"id":3,"j":"[1, 2.50]","jb":"{\"k\": [null]}"}]') ORDER BY id;

-- every value through its type's input function, with the column's typmod
SELECT * FROM evrep._json_rows(NULL::jr, '[{"id":1,"v":"abcd"}]');
SELECT * FROM evrep._json_rows(NULL::jr, '[{"id":1,"n":"123456789.555"}]');
SELECT * FROM evrep._json_rows(NULL::jr, '[{"id":1,"d":0}]');
SELECT * FROM evrep._json_rows(NULL::jr, '[{"id":1,"e":"happy"}]');
-- not rows
SELECT * FROM evrep._json_rows(NULL::jr, '{"id":1}');
SELECT * FROM evrep._json_rows(NULL::jr, '[{"id":1},2]');
SELECT * FROM evrep._json_rows(NULL::jr, '[[{"id":1}]]');
SELECT * FROM evrep._json_rows(NULL::jr, '[{"id":1}');
SELECT * FROM evrep._json_rows(NULL::jr, '[{"id":1,"t":"\ud800"}]');
SELECT * FROM evrep._json_rows(1, '[]');
SELECT count(*) FROM evrep._json_rows(NULL::jr, NULL);

DROP FUNCTION jr_same(text);
DROP TABLE jr;
DROP TYPE jr_mood;
DROP DOMAIN jr_pos;
