-- Least privilege (DESIGN.md "Database roles"): the functions log in as a
-- member of this role, which may only read jobs and profiles. The login role
-- itself (its name and password) is made by `migrate` after the migrations
-- (shared::adapters::postgres::grant_functions_login), since its password
-- comes from a secret, not from SQL. The master user keeps migrations alone.
-- A table added later is readable by the functions only through its own GRANT
-- in its migration.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobmatch_reader') THEN
        CREATE ROLE jobmatch_reader NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO jobmatch_reader;
GRANT SELECT ON jobs, profiles TO jobmatch_reader;
