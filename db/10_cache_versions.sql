-- revision: 2
-- The cache's versions (DESIGN.md "Cache"; tables in migration
-- 20261130000003): every statement writing `jobs`, by any writer, moves
-- jobs_version; every insert or update of a profile gives it a new number
-- from profile_version_seq (a deleted and re-inserted profile never reuses
-- one). SECURITY DEFINER so that any role allowed to write jobs or profiles
-- bumps the versions without rights on them; pg_temp last in search_path, so
-- that no temporary object of the caller's can stand in for ours.
CREATE OR REPLACE FUNCTION bump_jobs_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE jobs_version SET version = version + 1;
    RETURN NULL;
END
$$;

-- The statement trigger on jobs; the event trigger of 20_ddl_bump.sql calls
-- this too, to put it back on a `jobs` created again.
CREATE OR REPLACE FUNCTION jobmatch_jobs_version_trigger() RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    CREATE OR REPLACE TRIGGER jobs_version_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jobs
        FOR EACH STATEMENT EXECUTE FUNCTION bump_jobs_version();
END
$$;
SELECT jobmatch_jobs_version_trigger();

CREATE OR REPLACE FUNCTION bump_profile_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    NEW.version := nextval('profile_version_seq');
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER profile_version_bump BEFORE INSERT OR UPDATE ON profiles
    FOR EACH ROW EXECUTE FUNCTION bump_profile_version();

-- Trigger functions only: nobody calls them directly.
REVOKE ALL ON FUNCTION bump_jobs_version(), bump_profile_version(),
    jobmatch_jobs_version_trigger() FROM PUBLIC;
