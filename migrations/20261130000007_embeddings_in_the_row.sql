-- Job embeddings stored in the row (STORAGE PLAIN) instead of pgvector's
-- default, EXTERNAL. A job's row is about 2.2 kB, over PostgreSQL's 2 kB
-- TOAST threshold, so the 1,540-byte embedding went to the TOAST table and
-- every distance the exact plan computed first looked it up there (about four
-- more buffers a row). Measured on 50,000 jobs of the 1M benchmark table, one
-- process: the exact scan of their embeddings 112 -> 35.6 ms. The
-- description is compressed or moved out instead; the total size is about
-- the same (112 -> 120 MB).
--
-- New and updated rows take the new storage at once. Existing rows are
-- rewritten here, which rebuilds every index of jobs (both HNSW graphs
-- included), so only up to 200,000 jobs: past that the rewrite would outlast
-- migrate's 600 s timeout. A larger table keeps its rows as they are, with
-- a warning in migrate's log, and docs/deploy.md ("Loading jobs") gives the
-- statement to run in a maintenance window.
DO $$
DECLARE
    rows double precision;
    -- vector(384): the dimension stays defined once, in the first migration.
    embedding_type text := (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                            WHERE a.attrelid = 'jobs'::regclass AND a.attname = 'embedding');
BEGIN
    SELECT c.reltuples INTO rows FROM pg_class c WHERE c.oid = 'jobs'::regclass;
    IF rows > 200000 THEN
        ALTER TABLE jobs ALTER COLUMN embedding SET STORAGE PLAIN;
        RAISE WARNING 'jobs holds about % rows: only new and updated rows keep their embedding '
            'in the row; rewrite the others by hand (docs/deploy.md, "Loading jobs")', rows::bigint;
        RETURN;
    END IF;
    PERFORM set_config('maintenance_work_mem', '512MB', true);
    -- A USING expression makes PostgreSQL rewrite the table (the values are
    -- unchanged: real[] holds them exactly); ALTER TYPE resets the storage to
    -- the type's default, so SET STORAGE comes in the same statement, which
    -- applies it before the rewrite.
    EXECUTE format('ALTER TABLE jobs '
                   'ALTER COLUMN embedding TYPE %1$s USING embedding::real[]::%1$s, '
                   'ALTER COLUMN embedding SET STORAGE PLAIN', embedding_type);
END
$$;
