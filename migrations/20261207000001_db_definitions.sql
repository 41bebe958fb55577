-- From here on, migrations keep to schema (tables, columns, indexes, data
-- moves). Functions, triggers, views and grants have one current source:
-- one idempotent file each in db/, applied by `migrate` after the migrations
-- (shared::adapters::schema). This table records what was applied, so that
-- an unchanged file is not run again and an older release never applies an
-- older revision of a file over a newer one.
CREATE TABLE IF NOT EXISTS jobmatch_db_applied (
    name       text PRIMARY KEY,
    revision   integer NOT NULL CHECK (revision > 0),
    sha256     bytea NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
