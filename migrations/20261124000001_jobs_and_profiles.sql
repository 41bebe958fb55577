-- jobs and profiles (DESIGN.md "Data"): the pgvector extension, the two
-- tables, the HNSW index for cosine distance, and B-tree/GIN indexes that the
-- filters use. The dimension 384 matches shared::domain::EMBEDDING_DIM.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS jobs (
    id              text PRIMARY KEY,
    title           text NOT NULL,
    company         text NOT NULL,
    location        text NOT NULL,
    remote          bool NOT NULL DEFAULT false,
    employment_type text NOT NULL
        CHECK (employment_type IN ('full_time', 'part_time', 'contract', 'internship', 'temporary')),
    salary_min      int,
    salary_max      int,
    skills          text[] NOT NULL DEFAULT '{}',
    description     text NOT NULL DEFAULT '',
    posted_at       timestamptz NOT NULL DEFAULT now(),
    embedding       vector(384) NOT NULL
);

CREATE TABLE IF NOT EXISTS profiles (
    user_id    text PRIMARY KEY,
    skills     text[] NOT NULL DEFAULT '{}',
    embedding  vector(384) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS jobs_embedding_hnsw
    ON jobs USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

-- Locations match case-insensitively, so the index is on lower(location).
CREATE INDEX IF NOT EXISTS jobs_location_lower ON jobs (lower(location));
CREATE INDEX IF NOT EXISTS jobs_employment_type ON jobs (employment_type);
CREATE INDEX IF NOT EXISTS jobs_posted_at ON jobs (posted_at);
CREATE INDEX IF NOT EXISTS jobs_remote ON jobs (remote);
-- min_salary compares coalesce(salary_max, salary_min).
CREATE INDEX IF NOT EXISTS jobs_salary_reach ON jobs ((coalesce(salary_max, salary_min)));
