-- The exact-versus-HNSW gate, 19 x sqrt(rows) instead of 14 x: with the
-- embeddings in the row (20261130000007) the exact plan costs about a third
-- per passing row, so it stays the faster plan for more rows. make bench,
-- with the stack's PostgreSQL at RDS's memory defaults, measured the
-- crossover at 5,432 passing rows of 100,000 jobs (17.2 x sqrt) and 20,590
-- of 1,000,000 (20.6 x sqrt): N^0.58, as before. 19 (about the geometric
-- mean) lands 11% above the first and 8% below the second; 14 was 18% and
-- 32% below them. EXACT_SCAN_MAX_ROWS still overrides it.
CREATE OR REPLACE FUNCTION jobmatch_exact_gate(table_rows double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ceil(19 * sqrt(greatest(table_rows, 0)))::bigint
$$;
