-- What a posting was made from (issue 28, DESIGN.md "Catalogue operations"):
-- SHA-256 of its normalised line, and of the model when the line had no
-- embedding (shared::catalogue::content_hash). An ingested line whose hash
-- equals the stored one is `unchanged`: not embedded, not written. NULL for
-- rows written otherwise (SQL by hand, older loads): the next ingest of
-- such a posting writes it once. Adding a nullable column rewrites nothing.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS content_hash bytea;
