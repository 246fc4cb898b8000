-- Numbering and encoding, as the publisher does before sending.
SELECT routing_key, events,
       regexp_replace(message, ',"(commit_ts|lsn)":"[^"]*"', '', 'g') AS message
FROM evrep_claim(100, 4);
-- rows are written once (a statement's events in one), the numbering is one batch record, and numbers
-- run per table
SELECT o.op, o.events, o.seq IS NULL AS no_seq, o.xid IS NOT NULL AS has_xid
FROM evrep.outbox o ORDER BY o.id;
SELECT id, lo IS NULL AS first_window, after_id, upto_id = (SELECT max(id) FROM evrep.outbox) AS upto_last,
       pub_ids = ARRAY(SELECT id FROM evrep.publication WHERE table_name IN ('customer', 'line') ORDER BY id) AS pubs,
       first_seqs, counts, last_in_window, confirmed
FROM evrep.outbox_batch;
-- not confirmed yet: the same batch, same numbers, comes again
SELECT count(*), sum(events) FROM evrep_claim(100);
-- the broker confirmed: later changes continue the numbering
UPDATE evrep.outbox_batch SET confirmed = true;
INSERT INTO customer VALUES (10, 'Jo', 5);
SELECT regexp_replace(message, ',"(commit_ts|lsn)":"[^"]*"', '', 'g') FROM evrep_claim(100);
SELECT last_seq FROM evrep.publication WHERE table_name = 'customer';
-- the new event is pending until confirmed; rows stay until their partition is emptied
SELECT (SELECT count(*) FROM evrep.outbox_pending) AS pending, (SELECT count(*) FROM evrep.outbox_batch WHERE NOT confirmed) AS unconfirmed;
UPDATE evrep.outbox_batch SET confirmed = true;
SELECT count(*) AS pending FROM evrep.outbox_pending;
SELECT count(*) FROM evrep_claim(100);
SELECT evrep_claim(0);
