-- revision: 1
-- Drops every routine of one name in the public schema, whatever its
-- arguments: a file that must drop and create a function (a new return type
-- or argument list, which CREATE OR REPLACE refuses) drops all its versions.
CREATE OR REPLACE FUNCTION jobmatch_drop_routines(routine_name text) RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    r regprocedure;
BEGIN
    FOR r IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.proname = routine_name AND p.pronamespace = 'public'::regnamespace LOOP
        EXECUTE format('DROP ROUTINE %s', r);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION jobmatch_drop_routines(text) FROM PUBLIC;
