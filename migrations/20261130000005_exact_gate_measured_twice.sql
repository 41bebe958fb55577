-- The matcher's exact-versus-HNSW gate, 14 x sqrt(rows) instead of 21.5 x.
-- `make bench` measured the crossover (docs/performance.md "Threshold") at
-- 3,942 passing rows of 100,000 jobs (12.5 x sqrt) and 15,490 of 1,000,000
-- (15.5 x sqrt): it grows as N^0.59, close to sqrt(N). 14 (the geometric
-- mean of the two constants) lands 12% above the first and 10% below the
-- second; 21.5, from one earlier 100k run on other data, was 72% and 39%
-- above them. EXACT_SCAN_MAX_ROWS still overrides it.
CREATE OR REPLACE FUNCTION jobmatch_exact_gate(table_rows double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ceil(14 * sqrt(greatest(table_rows, 0)))::bigint
$$;
