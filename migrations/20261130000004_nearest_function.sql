-- The matcher in one call: a match is one statement, so one round trip
-- (issue 15), and its plan logic lives here alone. Its settings are
-- set_config(..., true), local to the statement's own transaction, so RDS
-- Proxy never pins a session.

-- The filters of a match request as SQL: the one place a filter's SQL lives.
-- $1 is the request's filters as JSON, their serde form (shared/src/request.rs),
-- with absent filters absent. Each line folds to a constant when it is planned
-- with the value (EXECUTE ... USING plans with it), so a filter that is not
-- sent costs nothing and the B-tree indexes and the remote graph still apply.
CREATE FUNCTION jobmatch_filter_sql() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT $pred$
        ($1->'locations' IS NULL OR lower(location) = ANY (jobmatch_texts($1->'locations', true)))
    AND ($1->'remote' IS NULL OR remote = ($1->>'remote')::boolean)
    AND ($1->'employment_types' IS NULL OR employment_type = ANY (jobmatch_texts($1->'employment_types', false)))
    AND ($1->'min_salary' IS NULL OR coalesce(salary_max, salary_min) >= ($1->>'min_salary')::bigint)
    AND ($1->'posted_within_days' IS NULL OR posted_at >= now() - make_interval(days => ($1->>'posted_within_days')::int))
    AND ($1->'exclude_job_ids' IS NULL OR id <> ALL (jobmatch_texts($1->'exclude_job_ids', false)))
$pred$ $$;

-- A JSON array of strings as text[], lower-cased when asked (like the
-- in-memory index, Filters::admits).
CREATE FUNCTION jobmatch_texts(items jsonb, lower_case boolean) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(CASE WHEN lower_case THEN lower(t) ELSE t END), '{}')
    FROM jsonb_array_elements_text(items) AS t
$$;

-- Up to this many rows passing the filters are searched exactly, more go
-- through HNSW. The exact plan's cost grows with the passing rows, the HNSW
-- plan's with the share of rows a filter drops, so the crossover grows with
-- the square root of the table (docs/performance.md "Threshold"): 21.5 is
-- the crossover `make bench` measured at 100k jobs (6,800 rows) over √100k.
CREATE FUNCTION jobmatch_exact_gate(table_rows double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ceil(21.5 * sqrt(greatest(table_rows, 0)))::bigint
$$;

CREATE TYPE jobmatch_candidate AS (
    id text, title text, company text, location text, remote boolean,
    employment_type text, salary_min integer, salary_max integer,
    posted_at timestamptz, skills text[], similarity double precision
);

-- The `count` jobs nearest to `query` (or to the stored profile of
-- `profile_user`) among those passing `filters`, with the plan that found
-- them and the profile's skills. The plan:
-- * PostgreSQL's estimate of the passing rows (EXPLAIN; the table's size
--   without filters) at most the gate (`exact_max_rows`, or the derived
--   jobmatch_exact_gate): the exact scan, over at most gate + 1 passing rows
--   that it counts; past the gate it gives way to HNSW, so a low estimate
--   costs time, never rows.
-- * Otherwise HNSW: ef_search = max(100, count), an iterative scan in relaxed
--   order up to `max_scan_tuples`, and no other way to order rows (PostgreSQL
--   sorted a B-tree range when it misjudged a filter as selective). A scan cut
--   short (fewer than `count` rows from a table larger than max_scan_tuples)
--   is redone exactly, so a misestimated filter never loses rows.
-- `force_plan` ('exact' or 'hnsw') runs one plan as is (the benchmark).
-- No stored profile: SQLSTATE P0002 (no_data_found).
CREATE FUNCTION jobmatch_nearest(
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
    pass constant text := jobmatch_filter_sql();
    table_rows double precision;
    gate bigint;
    estimated double precision;
    explained json;
    passing bigint;
    found jobmatch_candidate[];
    exact_sql constant text :=
        'WITH d AS MATERIALIZED (SELECT j.id, j.embedding <=> $2 AS distance FROM jobs j WHERE '
        || pass || ' LIMIT $4), '
        || 'top AS (SELECT d.id, d.distance FROM d ORDER BY d.distance, d.id LIMIT $3) '
        || 'SELECT array_agg(ROW(j.id, j.title, j.company, j.location, j.remote, j.employment_type, '
        || 'j.salary_min, j.salary_max, j.posted_at, j.skills, 1 - top.distance)::jobmatch_candidate '
        || 'ORDER BY top.distance, j.id), (SELECT count(*) FROM d) '
        || 'FROM top JOIN jobs j USING (id)';
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

    PERFORM set_config('hnsw.ef_search', greatest(100, least(count, 1000))::text, true),
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

GRANT EXECUTE ON FUNCTION jobmatch_nearest(vector, text, jsonb, integer, bigint, integer, text),
    jobmatch_filter_sql(), jobmatch_texts(jsonb, boolean), jobmatch_exact_gate(double precision)
    TO jobmatch_reader;
