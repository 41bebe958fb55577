-- revision: 2
-- The matcher in one call: a match is one statement, so one round trip,
-- and its plan logic lives here alone. Its settings are set_config(...,
-- true), local to the statement's own transaction, so RDS Proxy never pins
-- a session. Dropped and created whole, so that a new result column or
-- argument is an edit of this file alone (CREATE OR REPLACE refuses a new
-- return type); callers see the old or the new definition, never neither:
-- db/ is applied in one transaction.
SELECT jobmatch_drop_routines('jobmatch_nearest');
DROP TYPE IF EXISTS jobmatch_candidate;
DROP TYPE IF EXISTS jobmatch_plan;

-- How the nearest rows were found (shared::adapters::postgres::Plan).
CREATE TYPE jobmatch_plan AS ENUM ('exact', 'hnsw');

CREATE TYPE jobmatch_candidate AS (
    id text, title text, company text, location text, remote boolean,
    employment_type text, salary_min integer, salary_max integer,
    posted_at timestamptz, skills text[], valid_through timestamptz,
    similarity double precision
);

-- The `count` jobs nearest to `query` (or to the stored profile of
-- `profile_user`) among those passing `filters`, with the plan that found
-- them and the profile's skills. Only live postings pass (`valid_through`
-- unset or still ahead: shared::domain::JobRecord::live_at), before any
-- filter. The plan:
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
-- `force_plan` runs one plan as is (the benchmark).
-- No stored profile: SQLSTATE P0002 (no_data_found).
CREATE FUNCTION jobmatch_nearest(
    query vector,
    profile_user text,
    filters jsonb,
    count integer,
    exact_max_rows bigint DEFAULT NULL,
    max_scan_tuples integer DEFAULT 20000,
    force_plan jobmatch_plan DEFAULT NULL
) RETURNS TABLE (
    id text, title text, company text, location text, remote boolean,
    employment_type text, salary_min integer, salary_max integer,
    posted_at timestamptz, skills text[], valid_through timestamptz,
    similarity double precision, plan jobmatch_plan, profile_skills text[]
)
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $fn$
DECLARE
    q vector := query;
    pskills text[];
    f jsonb := jsonb_strip_nulls(coalesce(filters, '{}'::jsonb));
    live constant text := '(valid_through IS NULL OR valid_through > now())';
    -- No filters, no filter predicate: it folds to nothing but still costs
    -- its parsing and planning.
    pass constant text := CASE WHEN f = '{}'::jsonb THEN live
                               ELSE live || ' AND (' || jobmatch_filter_sql() || ')' END;
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
        || 'j.salary_min, j.salary_max, j.posted_at, j.skills, j.valid_through, 1 - top.distance)::jobmatch_candidate '
        || 'ORDER BY top.distance, j.id), (SELECT count(*) FROM d) '
        || 'FROM top JOIN jobs j ON j.ctid = top.tid';
    hnsw_sql constant text :=
        'SELECT array_agg(c) FROM (SELECT ROW(j.id, j.title, j.company, j.location, j.remote, '
        || 'j.employment_type, j.salary_min, j.salary_max, j.posted_at, j.skills, j.valid_through, '
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
    -- The table's rows now, as the planner counts them: the density of the
    -- last ANALYZE times the pages the table has now; before any ANALYZE,
    -- the planner's own guess.
    SELECT CASE WHEN c.reltuples >= 0 AND c.relpages > 0
                THEN c.reltuples / c.relpages
                     * (pg_relation_size(c.oid) / current_setting('block_size')::double precision)
           END
    INTO table_rows FROM pg_class c WHERE c.oid = 'jobs'::regclass;
    IF table_rows IS NULL THEN
        EXPLAIN (FORMAT JSON) SELECT 1 FROM jobs INTO explained;
        table_rows := (explained->0->'Plan'->>'Plan Rows')::double precision;
    END IF;
    gate := coalesce(exact_max_rows, jobmatch_exact_gate(table_rows));

    IF force_plan = 'exact' THEN
        EXECUTE exact_sql INTO found, passing USING f, q, count, NULL::bigint;
        RETURN QUERY SELECT (c).*, 'exact'::jobmatch_plan, pskills FROM unnest(found) c;
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
            RETURN QUERY SELECT (c).*, 'exact'::jobmatch_plan, pskills FROM unnest(found) c;
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
        RETURN QUERY SELECT (c).*, 'exact'::jobmatch_plan, pskills FROM unnest(found) c;
        RETURN;
    END IF;
    -- relaxed_order may return rows slightly out of order.
    RETURN QUERY SELECT (c).*, 'hnsw'::jobmatch_plan, pskills FROM unnest(found) c
        ORDER BY (c).similarity DESC, (c).id;
END
$fn$;

GRANT USAGE ON TYPE jobmatch_plan, jobmatch_candidate TO jobmatch_reader;
GRANT EXECUTE ON FUNCTION jobmatch_nearest(vector, text, jsonb, integer, bigint, integer, jobmatch_plan)
    TO jobmatch_reader;
