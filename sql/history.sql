-- Histories (1.1): a subscriber follows an origin's newer history, copies the
-- table again when it applied numbers of the lost part, skips late duplicates
-- of the history before, parks messages of an older history that still
-- speaks, and sees an origin that went back without a trace by its WAL
-- position.
CREATE TABLE hist (id integer PRIMARY KEY, v text);
SELECT evrep_subscribe('hist', copy_data => false);

CREATE FUNCTION hmsg(inc bigint, since bigint, lsn text, seqs int[], reason text DEFAULT 'r')
RETURNS text LANGUAGE sql AS $$
	SELECT jsonb_build_object('format', 'evrep.v1', 'revision', 2, 'origin', 'o',
		'schema', 'public', 'table', 'hist', 'key', jsonb_build_array('id'),
		'incarnation', jsonb_build_object('id', inc, 'since', since, 'reason', reason),
		'lsn', lsn,
		'events', (SELECT jsonb_agg(jsonb_build_object('seq', s, 'op', 'insert',
					'row', jsonb_build_object('id', s, 'v', 'h' || inc)) ORDER BY s)
				   FROM unnest(seqs) s))::text
$$;
CREATE VIEW hstate AS
SELECT g.last_seq, g.gaps, g.applied, g.skipped, g.incarnation, g.prev_incarnation,
	   g.prev_last_seq, g.last_lsn, g.history_reason, g.history_changed_at IS NOT NULL AS changed,
	   g.repair, s.phase, g.repair_request = s.request_id AS repair_is_current
FROM evrep.progress g LEFT JOIN evrep.sync s USING (schema_name, table_name)
WHERE g.origin = 'o';

-- the first history a stream hears of is taken as it is
SELECT evrep_apply(hmsg(10, 1, '0/100', '{1,2,3}'));
SELECT * FROM hstate;
-- numbers and WAL positions grow together: nothing to say
SELECT evrep_apply(hmsg(10, 1, '0/200', '{4,5}'));
-- a redelivery at its own position is a duplicate
SELECT evrep_apply(hmsg(10, 1, '0/100', '{2,3}'));
SELECT last_seq, applied, skipped, last_lsn, repair FROM hstate;

-- a newer history that forked after everything applied here: followed, no copy
SELECT evrep_apply(hmsg(20, 6, '0/50', '{6}', 'new timeline 2'));
SELECT * FROM hstate;
-- a late duplicate of the history before is skipped
SELECT evrep_apply(hmsg(10, 1, '0/200', '{5}'));
SELECT last_seq, applied, skipped FROM hstate;

-- a newer history that forked below what was applied here: numbers 7.. of
-- history 20 reached this node but the origin lost them; history 30 forked
-- at 7, so 7 and 8 are expected again and the table is copied again
SELECT evrep_apply(hmsg(20, 6, '0/60', '{7,8}', 'new timeline 2'));
SELECT evrep_apply(hmsg(30, 7, '0/40', '{7}', 'restored from a base backup'));
SELECT * FROM hstate;
SELECT id, v FROM hist WHERE id >= 6 ORDER BY id;
SELECT phase FROM evrep.sync WHERE table_name = 'hist';

-- history 20 speaking again, beyond what it had sent: two servers; parked,
-- never merged
SELECT evrep_apply(hmsg(20, 6, '0/70', '{9}', 'new timeline 2'));
SELECT last_seq, incarnation FROM hstate;
SELECT sqlstate, error FROM evrep.dead_letter WHERE origin = 'o' ORDER BY id;
SELECT count(*) FROM hist WHERE id = 9;

-- the same history, but its WAL position went back while its numbers went
-- on: restored from a file-system snapshot (no trace the origin can see)
SELECT evrep_apply(hmsg(30, 7, '0/90', '{8,9}'));
SELECT last_seq, last_lsn, repair FROM hstate;
SELECT evrep_apply(hmsg(30, 7, '0/80', '{10}'));
SELECT last_seq, last_lsn, history_reason, changed, repair, repair_is_current FROM hstate;
-- ... or an old number arrives from a newer position
SELECT evrep_apply(hmsg(30, 7, '0/85', '{11}'));
SELECT evrep_apply(hmsg(30, 7, '0/95', '{9}'));
SELECT last_seq, skipped, last_lsn, repair FROM hstate;

-- evrep.repair = warn: a WARNING and a flag instead of a copy
SET evrep.repair = warn;
UPDATE evrep.sync SET phase = 'done' WHERE table_name = 'hist';
SELECT evrep_apply(hmsg(40, 3, '0/10', '{12}', 'new cluster'));
SELECT last_seq, incarnation, repair, phase FROM hstate;
RESET evrep.repair;

-- a message without a history (a 1.0 sender) is applied as 1.0 did
SELECT evrep_apply('{"format":"evrep.v1","origin":"o","schema":"public","table":"hist",
  "events":[{"seq":13,"op":"insert","row":{"id":13,"v":"old"}}]}');
SELECT last_seq, incarnation FROM hstate;

-- a hole that stays open while later numbers arrive was acknowledged and
-- lost here (restored from a file-system snapshot): copied again, once
SET evrep.gap_repair_after = 1;
SELECT evrep_apply(hmsg(40, 3, '0/20', '{15}'));
SELECT last_seq, gaps, repair, phase FROM hstate;
SELECT pg_sleep(1.2);
SELECT evrep_apply(hmsg(40, 3, '0/30', '{16}'));
SELECT last_seq, gaps, repair, phase, repair_is_current FROM hstate;
-- the copy on its way: no second request
SELECT request_id AS req FROM evrep.sync WHERE table_name = 'hist' \gset
SELECT evrep_apply(hmsg(40, 3, '0/31', '{17}'));
SELECT request_id = :req AS same_request FROM evrep.sync WHERE table_name = 'hist';
-- holes below the first number a stream brought were never sent here
UPDATE evrep.sync SET phase = 'done' WHERE table_name = 'hist';
UPDATE evrep.progress SET base_seq = 17 WHERE origin = 'o';
SELECT evrep_apply(hmsg(40, 3, '0/32', '{18}'));
SELECT phase FROM evrep.sync WHERE table_name = 'hist';
RESET evrep.gap_repair_after;

-- malformed histories are parked
SELECT evrep_apply(replace(hmsg(50, 1, '0/1', '{14}'), '"0/1"', '"zz"'));
SELECT evrep_apply(replace(hmsg(50, 1, '0/1', '{14}'), '"since": 1', '"since": 0'));
SELECT sqlstate, error FROM evrep.dead_letter WHERE origin IS NULL ORDER BY id;

-- the status view names the history of the stream
SELECT role, origin, table_name, incarnation, history_reason, repair
FROM evrep.status WHERE origin = 'o';

DROP VIEW hstate;
DROP FUNCTION hmsg;
SELECT evrep_unsubscribe('hist');
DROP TABLE hist;
DELETE FROM evrep.progress WHERE origin = 'o';
DELETE FROM evrep.dead_letter;
