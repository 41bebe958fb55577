-- Refuse a pgvector older than 0.8.0 (DESIGN.md "HTTP contract": a filtered
-- search must still return `limit` rows, which the matcher gets from 0.8's
-- iterative index scans, `hnsw.iterative_scan`). Without this the deploy would
-- succeed and filtered matches would come back short, or fail at query time.
-- Versions compare as numbers (0.10.0 > 0.8.0), not as text; a suffix such
-- as "-dev" is ignored. Checks only: nothing is changed, so a database that
-- passes is left exactly as it was.
DO $$
DECLARE
    installed text;
    parsed int[];
BEGIN
    SELECT extversion INTO installed FROM pg_extension WHERE extname = 'vector';
    IF installed IS NULL THEN
        RAISE EXCEPTION 'pgvector is not installed in database %', current_database()
            USING HINT = 'CREATE EXTENSION vector (the first migration does) needs pgvector 0.8.0 or newer on the server.';
    END IF;
    parsed := string_to_array(substring(installed FROM '^[0-9]+(?:\.[0-9]+)*'), '.')::int[];
    IF parsed IS NULL OR parsed < ARRAY[0, 8, 0] THEN
        RAISE EXCEPTION 'pgvector % is installed; jobmatch needs 0.8.0 or newer (iterative index scans for filtered matches)', installed
            USING HINT = 'Update the extension with ALTER EXTENSION vector UPDATE; if the server has no newer pgvector, first upgrade PostgreSQL to a minor version that ships pgvector 0.8 (on RDS: the template''s major-only EngineVersion takes the current minor).';
    END IF;
END
$$;
