-- DESIGN.md "Cache": any change to `jobs` by any writer, a migration too,
-- makes every cached result that could differ unusable at once. The
-- statement trigger of 20261130000003 sees every INSERT, UPDATE, DELETE and
-- TRUNCATE, but not:
-- * DDL that rewrites values (ALTER TABLE jobs ALTER COLUMN ... USING ...);
-- * a migration that changes how a match is computed (the gate, the graphs,
--   ef_search: 20261130000005 to 20261130000009 each did);
-- * a `jobs` dropped and created again, which loses the trigger with it.
-- So any DDL in this database moves jobs_version. DDL is rare (migrations,
-- the loader's staging table, an operator by hand), and a result that could
-- not differ is only computed once more. A `jobs` without its trigger gets it
-- back. SECURITY DEFINER, so that a role allowed some DDL (the loader's
-- temporary table) needs no rights on jobs_version.
CREATE FUNCTION jobmatch_ddl_bump() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    jobs_table regclass := to_regclass('public.jobs');
BEGIN
    IF to_regclass('public.jobs_version') IS NOT NULL THEN
        UPDATE jobs_version SET version = version + 1;
    END IF;
    IF jobs_table IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_trigger WHERE tgrelid = jobs_table AND tgname = 'jobs_version_bump'
    ) THEN
        CREATE TRIGGER jobs_version_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jobs
            FOR EACH STATEMENT EXECUTE FUNCTION bump_jobs_version();
    END IF;
END
$$;

CREATE EVENT TRIGGER jobmatch_ddl_bump ON ddl_command_end
    EXECUTE FUNCTION jobmatch_ddl_bump();
