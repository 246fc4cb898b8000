-- Extension objects and settings.  The suite runs without workers
-- (evrep.database is empty): they are tested with a real broker in test/t.
CREATE EXTENSION evrep;
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'evrep' AND c.relkind IN ('r', 'p', 'v')
ORDER BY 2;
SELECT p.proname FROM pg_proc p
WHERE p.proname LIKE 'evrep\_%' ORDER BY 1;
SHOW evrep.node_name;
SHOW evrep.database;
-- the prefix is reserved: a misspelt setting is an error
SET evrep.nodename = 'x';
SELECT worker FROM evrep.worker_state() ORDER BY 1;
