-- revision: 3
-- Least privilege on tables (DESIGN.md "Database roles"). A table's rights
-- are stated here alone; migrations make tables.
-- - jobmatch_reader (migration 20261130000002; the api, worker and status
--   log in as a member) reads the catalogue and the profiles, reads the
--   jobs' version and uses the cache's tables.
-- - jobmatch_writer (the ingest and catalogue functions log in as a member,
--   made by `migrate` from its secret) has rights on `jobs` alone. The cache
--   versions move through SECURITY DEFINER triggers (db/10_cache_versions.sql).
-- Revoked first, so that a right granted by hand or by an older release
-- is gone once this file is applied (migrate re-applies it when it changes).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobmatch_writer') THEN
        CREATE ROLE jobmatch_writer NOLOGIN;
    END IF;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM jobmatch_reader;
GRANT USAGE ON SCHEMA public TO jobmatch_reader;
GRANT SELECT ON jobs, profiles, jobs_version TO jobmatch_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON match_cache, embedding_cache TO jobmatch_reader;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM jobmatch_writer;
GRANT USAGE ON SCHEMA public TO jobmatch_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO jobmatch_writer;
