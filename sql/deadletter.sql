-- Events that cannot be applied are parked with their error and body; the
-- stream goes on.
SELECT evrep_apply('this is not json');
SELECT evrep_apply('{"format":"evrep.v2","origin":"a","schema":"public","table":"orders","events":[]}');
SELECT evrep_apply('{"format":"evrep.v1","schema":"public","table":"orders","events":[{"seq":1}]}');
SELECT evrep_apply('{"format":"evrep.v1","origin":"a","schema":"public","table":"orders","events":[{"seq":"x","op":"insert","row":{}}]}');
SELECT evrep_apply('{"format":"evrep.v1","origin":"a","schema":"public","table":"orders","events":[{"seq":1,"op":"merge","row":{}}]}');
-- type mismatch, constraint violation, missing key, unknown table: each
-- parked, the good events around them applied
SELECT evrep_apply('{"format":"evrep.v1","origin":"c","schema":"public","table":"orders",
  "events":[{"seq":1,"op":"insert","row":{"id":100,"amount":1,"status":"ok"}},
            {"seq":2,"op":"insert","row":{"id":101,"amount":"lots","status":"bad type"}},
            {"seq":3,"op":"insert","row":{"id":102,"amount":-5,"status":"bad check"}},
            {"seq":4,"op":"insert","row":{"amount":5,"status":"no key"}},
            {"seq":5,"op":"insert","row":{"id":103,"amount":3,"status":null}},
            {"seq":6,"op":"insert","row":{"id":104,"amount":4,"status":"ok"}}]}');
SELECT id, amount, status FROM orders WHERE id >= 100 ORDER BY id;
CREATE TABLE unsubscribed (id integer PRIMARY KEY, v text);
SELECT evrep_apply(msg('c', 1, 'insert', '{"id": 1, "v": "must not land"}', 'unsubscribed'));
SELECT evrep_apply(msg('c', 1, 'insert', '{"id": 1}', 'nowhere'));
SELECT count(*) AS never_written FROM unsubscribed;

SELECT id, origin, table_name, seq, sqlstate, error FROM evrep.dead_letter ORDER BY id;
SELECT body FROM evrep.dead_letter WHERE seq = 2 AND origin = 'c';
-- a redelivery of the same message parks nothing twice and applies nothing
SELECT count(*) AS dead_before FROM evrep.dead_letter;
SELECT evrep_apply('{"format":"evrep.v1","origin":"c","schema":"public","table":"orders",
  "events":[{"seq":2,"op":"insert","row":{"id":101,"amount":"lots","status":"bad type"}}]}');
SELECT count(*) AS dead_after FROM evrep.dead_letter;
SELECT origin, last_seq, applied, skipped, parked FROM evrep.progress WHERE origin = 'c';

-- replay: still failing keeps it parked; once fixed it applies, once
SELECT id AS bad_check FROM evrep.dead_letter WHERE error LIKE '%check constraint%' \gset
SELECT evrep_replay(:bad_check);
SELECT replay_count, replayed_at IS NULL AS still_parked FROM evrep.dead_letter WHERE id = :bad_check;
ALTER TABLE orders DROP CONSTRAINT orders_amount_check;
SELECT evrep_replay(:bad_check);
SELECT evrep_replay(:bad_check);
SELECT id, amount, status FROM orders WHERE id = 102;
SELECT evrep_replay(-1);
-- a message for a table subscribed later is applied by replay
SELECT id AS unsub FROM evrep.dead_letter WHERE table_name = 'unsubscribed' \gset
SELECT evrep_subscribe('unsubscribed');
SELECT evrep_replay(:unsub);
SELECT * FROM unsubscribed;

-- the server log names origin, table and seq of what was parked
SET client_min_messages = log;
\set SHOW_CONTEXT always
SELECT evrep_apply(msg('d', 7, 'insert', '{"id": 7, "amount": "seven"}'));
SELECT evrep_apply('{"format":"evrep.v1"');
RESET client_min_messages;
\set SHOW_CONTEXT errors

SELECT role, origin, schema_name, table_name, last_seq, applied, skipped, dead_letters,
       last_error IS NOT NULL AS has_error
FROM evrep.status ORDER BY role, origin, table_name;

-- a message however deep or odd is parked, never raised: evrep_apply is
-- the last attempt (the consumer retries resource errors first)
SELECT evrep_apply(repeat('[', 200000));
SELECT evrep_apply('{"format":"evrep.v1","origin":"d","schema":"public","table":"orders","events":[{"seq":1e400,"op":"insert","row":{}}]}');
SELECT evrep_apply(NULL);
SELECT sqlstate, left(error, 40) AS error, attempts, length(body) FROM evrep.dead_letter
ORDER BY id DESC LIMIT 2;
-- a seq that is not a whole number is refused, not rounded
SELECT evrep_apply('{"format":"evrep.v1","origin":"d","schema":"public","table":"orders","events":[{"seq":2.5,"op":"insert","row":{"id":250,"amount":1}}]}');
-- whatever fails outside the per-event isolation (here the stream's
-- progress row, too large for its index) parks the whole message
SELECT evrep_apply(msg('d', 1, 'insert', '{"id": 1}', string_agg(md5(i::text), '')))
FROM generate_series(1, 200) i;
SELECT seq, sqlstate, left(error, 45) AS error, length(body) > 6400 AS whole_body
FROM evrep.dead_letter ORDER BY id DESC LIMIT 2;
