-- revision: 2
-- DESIGN.md "Cache": any change to `jobs` by any writer, a migration or a
-- db/ file too, makes every cached result that could differ unusable at once.
-- The statement trigger of 10_cache_versions.sql sees every INSERT, UPDATE,
-- DELETE and TRUNCATE, but not:
-- * DDL that rewrites values (ALTER TABLE jobs ALTER COLUMN ... USING ...);
-- * a change to how a match is computed (the gate, the graphs, ef_search,
--   the matcher itself: applying such a db/ file is DDL);
-- * a `jobs` dropped and created again, which loses the trigger with it.
-- So DDL in this database moves jobs_version. DDL is rare (deploys, an
-- operator by hand), and a result that could not differ is only computed
-- once more. Not moved by:
-- * DDL on temporary objects only, such as the loader's staging table: it
--   cannot change a result, and bumping at its start would hold the
--   version's row lock for the whole load (the loader's own writes to jobs
--   bump it anyway, when they happen);
-- * a command that did nothing (CREATE ... IF NOT EXISTS on an existing
--   object). A DROP lists no objects here, and always moves it.
-- A `jobs` created (or renamed into place) without its row trigger gets it
-- back. SECURITY DEFINER, so that a role allowed some DDL needs no rights on
-- jobs_version.
CREATE OR REPLACE FUNCTION jobmatch_ddl_bump() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    jobs_table regclass := to_regclass('public.jobs');
    touched boolean;
BEGIN
    SELECT coalesce(bool_or(c.schema_name IS DISTINCT FROM 'pg_temp'), TG_TAG LIKE 'DROP %')
    INTO touched FROM pg_event_trigger_ddl_commands() c;
    IF NOT touched THEN
        RETURN;
    END IF;
    IF to_regclass('public.jobs_version') IS NOT NULL THEN
        UPDATE jobs_version SET version = version + 1;
    END IF;
    IF TG_TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
        AND jobs_table IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_trigger WHERE tgrelid = jobs_table AND tgname = 'jobs_version_bump'
        ) THEN
        PERFORM jobmatch_jobs_version_trigger();
    END IF;
END
$$;
REVOKE ALL ON FUNCTION jobmatch_ddl_bump() FROM PUBLIC;

-- Event triggers have no OR REPLACE; the function above may be replaced
-- under an existing one.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'jobmatch_ddl_bump') THEN
        CREATE EVENT TRIGGER jobmatch_ddl_bump ON ddl_command_end
            EXECUTE FUNCTION jobmatch_ddl_bump();
    END IF;
END
$$;
