-- The cache of repeated work (DESIGN.md "Cache"), shared by every function
-- instance. Never stale by construction:
-- * jobs_version: one number that every statement writing `jobs` bumps, by
--   whichever writer (the loader, psql by hand, a later migration): a cached
--   result counts only for the version it was computed at.
-- * profiles.version: a new number from a sequence at each insert or update
--   of a profile (a deleted and re-inserted profile never reuses one): a
--   result keyed by a stored profile counts only for that version.
-- The triggers are SECURITY DEFINER so that any role allowed to write jobs or
-- profiles bumps the versions without rights on them.

CREATE TABLE IF NOT EXISTS jobs_version (
    singleton bool PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO jobs_version (singleton, version) VALUES (true, 1) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION bump_jobs_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    UPDATE jobs_version SET version = version + 1;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_version_bump ON jobs;
CREATE TRIGGER jobs_version_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION bump_jobs_version();

CREATE SEQUENCE IF NOT EXISTS profile_version_seq;
-- A constant default, so that an insert naming only the contract's columns
-- still works for any writer (nextval here would need rights on the
-- sequence); the trigger below gives every inserted or updated row its number.
ALTER TABLE profiles ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;
UPDATE profiles SET version = nextval('profile_version_seq') WHERE version = 0;

CREATE OR REPLACE FUNCTION bump_profile_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    NEW.version := nextval('profile_version_seq');
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS profile_version_bump ON profiles;
CREATE TRIGGER profile_version_bump BEFORE INSERT OR UPDATE ON profiles
    FOR EACH ROW EXECUTE FUNCTION bump_profile_version();

-- Results, keyed by SHA-256 of the request's query source (embedding, text,
-- or owner + "profile"), skills, filters and limit. Unlogged: a crash empties
-- it, which a cache may do, and its writes skip the WAL.
CREATE UNLOGGED TABLE IF NOT EXISTS match_cache (
    key             bytea PRIMARY KEY,
    jobs_version    bigint NOT NULL,
    -- Set for results keyed by a stored profile: they count only while the
    -- profile has this version (and serve only their owner: the key has it).
    profile_user    text,
    profile_version bigint,
    result          jsonb NOT NULL,
    computed_at     timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS match_cache_computed_at ON match_cache (computed_at);

-- Vectors of texts, keyed by SHA-256 of the model's identity and the text.
CREATE UNLOGGED TABLE IF NOT EXISTS embedding_cache (
    key        bytea PRIMARY KEY,
    embedding  vector(384) NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS embedding_cache_created_at ON embedding_cache (created_at);

GRANT SELECT ON jobs_version TO jobmatch_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON match_cache, embedding_cache TO jobmatch_reader;
