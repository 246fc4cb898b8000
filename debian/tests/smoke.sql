-- The packaged evrep on a new cluster started with
-- shared_preload_libraries = 'evrep' (evrep.database unset: no workers).
-- Run by debian/rules at build time and by the autopkgtest
-- (debian/tests/control), both through pg_buildext psql (ON_ERROR_STOP).
CREATE EXTENSION evrep;
DO $$
DECLARE v text := (SELECT extversion FROM pg_extension WHERE extname = 'evrep');
BEGIN
    IF v IS DISTINCT FROM '1.1' THEN
        RAISE EXCEPTION 'CREATE EXTENSION evrep gave version %, expected 1.1', v;
    END IF;
END $$;
SELECT count(*) AS publish_rows FROM evrep.status;
-- the update path with the packaged scripts
DROP EXTENSION evrep;
CREATE EXTENSION evrep VERSION '1.0';
ALTER EXTENSION evrep UPDATE;
DO $$
DECLARE v text := (SELECT extversion FROM pg_extension WHERE extname = 'evrep');
BEGIN
    IF v IS DISTINCT FROM '1.1' THEN
        RAISE EXCEPTION 'ALTER EXTENSION evrep UPDATE from 1.0 gave version %, expected 1.1', v;
    END IF;
END $$;
SELECT extversion FROM pg_extension WHERE extname = 'evrep';
