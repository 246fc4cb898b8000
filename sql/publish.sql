-- Numbering and encoding, as the publisher does before sending.
SELECT routing_key, events,
       regexp_replace(message, ',"(commit_ts|lsn)":"[^"]*"', '', 'g') AS message
FROM evrep_claim(100, 4);
-- numbers are persisted: every row carries one, and they run per table
SELECT o.seq, o.op, o.commit_ts IS NOT NULL AS has_commit_ts
FROM evrep.outbox o ORDER BY o.id;
-- not confirmed yet: the same batch, same numbers, comes again
SELECT count(*), sum(events) FROM evrep_claim(100);
-- the broker confirmed: rows go; later changes continue the numbering
DELETE FROM evrep.outbox WHERE seq IS NOT NULL;
INSERT INTO customer VALUES (10, 'Jo', 5);
SELECT regexp_replace(message, ',"(commit_ts|lsn)":"[^"]*"', '', 'g') FROM evrep_claim(100);
SELECT last_seq FROM evrep.publication WHERE table_name = 'customer';
DELETE FROM evrep.outbox WHERE seq IS NOT NULL;
SELECT count(*) FROM evrep_claim(100);
SELECT evrep_claim(0);
