-- A posting's end (DESIGN.md "Catalogue operations", issue 28): past
-- `valid_through` it never matches (db/50_nearest.sql), and a cached result
-- holding it ends then (shared::ports::Holds). Not before `posted_at`.
-- Adding a nullable column rewrites nothing; the CHECK reads the table once.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS valid_through timestamptz;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_valid_through_after_posted;
ALTER TABLE jobs ADD CONSTRAINT jobs_valid_through_after_posted
    CHECK (valid_through IS NULL OR valid_through >= posted_at);
