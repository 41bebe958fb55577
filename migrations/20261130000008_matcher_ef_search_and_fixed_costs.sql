-- The HNSW plan's ef_search grows with the table, like the exact gate
-- (20261130000005). make bench, graphs at ef_construction = 128, recall@10
-- of the unfiltered HNSW query for C = 100 against the exact scan:
-- * 100,000 jobs: 0.999 at ef_search 100;
-- * 1,000,000 jobs (`--million`, its ef_search sweep, 100 queries): 0.849 at
--   40, 0.963 at 100, 0.983 at 150, 0.993 at 200 (p50 4.6, 5.2, 5.8 ms at
--   100, 150, 200).
-- So C x (rows / 100,000)^(1/5): C up to 100,000 jobs, 1.58 C (159) at 1M,
-- 2.5 C at 10M, never under C (the rows asked for) nor over 1,000. The
-- exponent is fitted to the 1M run alone; the bench's sweep checks it.
CREATE FUNCTION jobmatch_ef_search(table_rows double precision, count integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(1000, greatest(count, ceil(count * power(greatest(table_rows, 0) / 100000, 0.2))))::integer
$$;

-- jobmatch_nearest below uses it, and cuts its own fixed costs, measured in
-- psql on the 100k and 1M benchmark tables (docs/performance.md):
-- * Without filters the HNSW statement no longer carries the filters' SQL:
--   it folded to nothing but was still parsed and planned, 0.3-0.4 ms of a
--   4.4 ms match at 1M.
-- * The exact plan fetches its C rows back by their tuple id (ctid) from
--   the same statement's scan instead of by key: 100 B-tree descents fewer,
--   0.68 -> 0.58 ms for a very selective match at 100k. The statement reads
--   one snapshot, so the tid names the row version it ranked.

-- The `count` jobs nearest to `query` (or to the stored profile of
-- `profile_user`) among those passing `filters`, with the plan that found
-- them and the profile's skills. The plan:
-- * PostgreSQL's estimate of the passing rows (EXPLAIN; the table's size
--   without filters) at most the gate (`exact_max_rows`, or the derived
--   jobmatch_exact_gate): the exact scan, over at most gate + 1 passing rows
--   that it counts; past the gate it gives way to HNSW, so a low estimate
--   costs time, never rows.
-- * Otherwise HNSW: ef_search = jobmatch_ef_search(rows, count), an iterative scan in relaxed
--   order up to `max_scan_tuples`, and no other way to order rows (PostgreSQL
--   sorted a B-tree range when it misjudged a filter as selective). A scan cut
--   short (fewer than `count` rows from a table larger than max_scan_tuples)
--   is redone exactly, so a misestimated filter never loses rows.
-- `force_plan` ('exact' or 'hnsw') runs one plan as is (the benchmark).
-- No stored profile: SQLSTATE P0002 (no_data_found).
CREATE OR REPLACE FUNCTION jobmatch_nearest(
    query vector,
    profile_user text,
    filters jsonb,
    count integer,
    exact_max_rows bigint DEFAULT NULL,
    max_scan_tuples integer DEFAULT 20000,
    force_plan text DEFAULT NULL
) RETURNS TABLE (
    id text, title text, company text, location text, remote boolean,
    employment_type text, salary_min integer, salary_max integer,
    posted_at timestamptz, skills text[], similarity double precision,
    plan text, profile_skills text[]
)
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $fn$
DECLARE
    q vector := query;
    pskills text[];
    f jsonb := jsonb_strip_nulls(coalesce(filters, '{}'::jsonb));
    -- No filters, no predicate: it folds to nothing but still costs its
    -- parsing and planning.
    pass constant text := CASE WHEN f = '{}'::jsonb THEN 'true' ELSE jobmatch_filter_sql() END;
    table_rows double precision;
    gate bigint;
    estimated double precision;
    explained json;
    passing bigint;
    found jobmatch_candidate[];
    exact_sql constant text :=
        'WITH d AS MATERIALIZED (SELECT j.ctid AS tid, j.id, j.embedding <=> $2 AS distance FROM jobs j WHERE '
        || pass || ' LIMIT $4), '
        || 'top AS (SELECT d.tid, d.distance FROM d ORDER BY d.distance, d.id LIMIT $3) '
        || 'SELECT array_agg(ROW(j.id, j.title, j.company, j.location, j.remote, j.employment_type, '
        || 'j.salary_min, j.salary_max, j.posted_at, j.skills, 1 - top.distance)::jobmatch_candidate '
        || 'ORDER BY top.distance, j.id), (SELECT count(*) FROM d) '
        || 'FROM top JOIN jobs j ON j.ctid = top.tid';
    hnsw_sql constant text :=
        'SELECT array_agg(c) FROM (SELECT ROW(j.id, j.title, j.company, j.location, j.remote, '
        || 'j.employment_type, j.salary_min, j.salary_max, j.posted_at, j.skills, '
        || '1 - (j.embedding <=> $2))::jobmatch_candidate AS c FROM jobs j WHERE '
        || pass || ' ORDER BY j.embedding <=> $2 LIMIT $3) r';
BEGIN
    IF profile_user IS NOT NULL THEN
        SELECT p.embedding, coalesce(p.skills, '{}') INTO q, pskills
        FROM profiles p WHERE p.user_id = profile_user;
        IF q IS NULL THEN
            RAISE EXCEPTION 'no stored profile' USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    SELECT c.reltuples INTO table_rows FROM pg_class c WHERE c.oid = 'jobs'::regclass;
    gate := coalesce(exact_max_rows, jobmatch_exact_gate(table_rows));

    IF force_plan = 'exact' THEN
        EXECUTE exact_sql INTO found, passing USING f, q, count, NULL::bigint;
        RETURN QUERY SELECT (c).*, 'exact'::text, pskills FROM unnest(found) c;
        RETURN;
    END IF;
    IF force_plan IS NULL THEN
        IF f = '{}'::jsonb THEN
            estimated := table_rows;
        ELSE
            EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM jobs WHERE ' || pass
                INTO explained USING f;
            estimated := (explained->0->'Plan'->>'Plan Rows')::double precision;
        END IF;
    END IF;
    IF force_plan IS NULL AND estimated <= gate THEN
        -- Capped at gate + 1 rows (none when the gate is bigint's largest).
        EXECUTE exact_sql INTO found, passing
            USING f, q, count, CASE WHEN gate < 9223372036854775807 THEN gate + 1 END;
        IF passing <= gate THEN
            RETURN QUERY SELECT (c).*, 'exact'::text, pskills FROM unnest(found) c;
            RETURN;
        END IF;
    END IF;

    PERFORM set_config('hnsw.ef_search', jobmatch_ef_search(table_rows, count)::text, true),
            set_config('hnsw.iterative_scan', 'relaxed_order', true),
            set_config('hnsw.max_scan_tuples', max_scan_tuples::text, true),
            set_config('enable_seqscan', 'off', true),
            set_config('enable_bitmapscan', 'off', true),
            set_config('enable_sort', 'off', true);
    EXECUTE hnsw_sql INTO found USING f, q, count;
    IF force_plan IS NULL AND coalesce(cardinality(found), 0) < count
            AND table_rows > max_scan_tuples THEN
        RAISE LOG 'jobmatch_nearest: HNSW scan cut short (% of % rows); searching exactly',
            coalesce(cardinality(found), 0), count;
        PERFORM set_config(s.name, s.reset_val, true) FROM pg_settings s
        WHERE s.name IN ('enable_seqscan', 'enable_bitmapscan', 'enable_sort');
        EXECUTE exact_sql INTO found, passing USING f, q, count, NULL::bigint;
        RETURN QUERY SELECT (c).*, 'exact'::text, pskills FROM unnest(found) c;
        RETURN;
    END IF;
    -- relaxed_order may return rows slightly out of order.
    RETURN QUERY SELECT (c).*, 'hnsw'::text, pskills FROM unnest(found) c
        ORDER BY (c).similarity DESC, (c).id;
END
$fn$;

GRANT EXECUTE ON FUNCTION jobmatch_ef_search(double precision, integer) TO jobmatch_reader;
