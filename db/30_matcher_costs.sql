-- revision: 1
-- The matcher's helpers: the plan's gate and ef_search, and the filters'
-- JSON arrays as text[] (jobmatch_filter_sql, generated from
-- shared/src/request.rs, reads the filters through it).

-- A JSON array of strings as text[], lower-cased when asked (like the
-- in-memory predicate of Filters::clauses).
CREATE OR REPLACE FUNCTION jobmatch_texts(items jsonb, lower_case boolean) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(CASE WHEN lower_case THEN lower(t) ELSE t END), '{}')
    FROM jsonb_array_elements_text(items) AS t
$$;

-- Up to this many rows passing the filters are searched exactly, more go
-- through HNSW. The exact plan's cost grows with the passing rows, the HNSW
-- plan's with the share of rows a filter drops, so the crossover grows with
-- the square root of the table (docs/performance.md "Threshold"). 19 x sqrt:
-- with the embeddings in the row the exact plan costs about a third per
-- passing row; make bench, with the stack's PostgreSQL at RDS's memory
-- defaults, measured the crossover at 5,432 passing rows of 100,000 jobs
-- (17.2 x sqrt) and 20,590 of 1,000,000 (20.6 x sqrt): 19 (about the
-- geometric mean) lands 11% above the first and 8% below the second.
-- EXACT_SCAN_MAX_ROWS still overrides it.
CREATE OR REPLACE FUNCTION jobmatch_exact_gate(table_rows double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ceil(19 * sqrt(greatest(table_rows, 0)))::bigint
$$;

-- The HNSW plan's ef_search grows with the table, like the exact gate.
-- make bench, graphs at ef_construction = 128, recall@10 of the unfiltered
-- HNSW query for C = 100 against the exact scan:
-- * 100,000 jobs: 0.999 at ef_search 100;
-- * 1,000,000 jobs (`--million`, its ef_search sweep, 100 queries): 0.849 at
--   40, 0.963 at 100, 0.983 at 150, 0.993 at 200 (p50 4.6, 5.2, 5.8 ms at
--   100, 150, 200).
-- So C x (rows / 100,000)^(1/5): C up to 100,000 jobs, 1.58 C (159) at 1M,
-- 2.5 C at 10M, never under C (the rows asked for) nor over 1,000. The
-- exponent is fitted to the 1M run alone; the bench's sweep checks it.
CREATE OR REPLACE FUNCTION jobmatch_ef_search(table_rows double precision, count integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(1000, greatest(count, ceil(count * power(greatest(table_rows, 0) / 100000, 0.2))))::integer
$$;

GRANT EXECUTE ON FUNCTION jobmatch_texts(jsonb, boolean), jobmatch_exact_gate(double precision),
    jobmatch_ef_search(double precision, integer) TO jobmatch_reader;
