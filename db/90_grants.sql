-- revision: 2
-- Least privilege on tables (DESIGN.md "Database roles"). jobmatch_reader
-- (migration 20261130000002; the functions' login is a member) reads the
-- catalogue and the profiles, reads the jobs' version and uses the cache's
-- tables. A table's rights are stated here alone; migrations make tables.
-- Revoked first, so that a right granted by hand or by an older release
-- is gone once this file is applied (migrate re-applies it when it changes).
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM jobmatch_reader;
GRANT USAGE ON SCHEMA public TO jobmatch_reader;
GRANT SELECT ON jobs, profiles, jobs_version TO jobmatch_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON match_cache, embedding_cache TO jobmatch_reader;
