-- Both HNSW graphs with ef_construction = 128 instead of 64 (m stays 16).
-- make bench at 100k jobs, on the catalogue the generator makes today
-- (`--reuse --hnsw 16,128` against the default run): recall@10 of the
-- matcher 0.973 -> 0.999 with no filter and 0.976 -> 0.999 with a broad one,
-- p50 2.80 -> 3.13 and 6.21 -> 6.10 ms, the graph's size unchanged (205 MB),
-- built in 27.7 instead of 19.5 s. `jobmatch load` rebuilds the graphs with
-- their current definitions, so it keeps these.
--
-- Each new graph is built beside the old one, which serves reads meanwhile
-- (writes to jobs wait), and then takes its name. Past 200,000 jobs the
-- build takes minutes, longer than a deploy's migration may run (migrate's
-- Lambda timeout is 600 s): such a table keeps its graphs, with a warning in
-- migrate's log, and docs/deploy.md ("Loading jobs") gives the statements
-- to rebuild them by hand.
DO $$
DECLARE
    graph record;
    rows double precision;
BEGIN
    SELECT c.reltuples INTO rows FROM pg_class c WHERE c.oid = 'jobs'::regclass;
    IF rows > 200000 THEN
        RAISE WARNING 'jobs holds about % rows: its HNSW graphs keep ef_construction = 64; '
            'rebuild them by hand with 128 (docs/deploy.md, "Loading jobs")', rows::bigint;
        RETURN;
    END IF;
    -- Room for a graph of 200,000 jobs (about 2 kB each), so that the build
    -- does not spill.
    PERFORM set_config('maintenance_work_mem', '512MB', true);
    FOR graph IN SELECT * FROM (VALUES
        ('jobs_embedding_hnsw', ''),
        ('jobs_embedding_hnsw_remote', ' WHERE remote')) AS g(name, only_rows)
    LOOP
        EXECUTE format('CREATE INDEX %I ON jobs USING hnsw (embedding vector_cosine_ops) '
                       'WITH (m = 16, ef_construction = 128)%s', graph.name || '_next', graph.only_rows);
        EXECUTE format('DROP INDEX IF EXISTS %I', graph.name);
        EXECUTE format('ALTER INDEX %I RENAME TO %I', graph.name || '_next', graph.name);
    END LOOP;
END
$$;
