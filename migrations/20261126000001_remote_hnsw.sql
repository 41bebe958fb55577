-- A second HNSW graph over the remote jobs only, for the `remote = true`
-- filter. Remote work is correlated with the kind of job (most software and
-- data postings, few healthcare ones), so for many candidates the nearest
-- jobs are almost all on-site and the full graph's iterative scan must walk
-- far before it has enough remote rows. make bench, 100k jobs (26% remote),
-- 300 queries with remote = true through the full graph: p50 3.7 ms, p99
-- 27 ms; through this graph: p50 0.5 ms, p99 1.2 ms, for a 3.5 s build and
-- about a quarter of the full graph's size. PostgreSQL uses it when the
-- query's `remote = true` is a planning-time constant, which the matcher's
-- custom plans guarantee (plan_cache_mode = force_custom_plan).
-- Same build parameters as jobs_embedding_hnsw (see the first migration).
CREATE INDEX IF NOT EXISTS jobs_embedding_hnsw_remote
    ON jobs USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE remote;
