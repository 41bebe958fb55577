-- The cache's entries authenticated (issue 27, shared::cache_mac): the
-- functions' role may write both tables, so each row carries an HMAC-SHA256
-- under a key that is not a database credential, and a row whose MAC does
-- not verify is a miss. Rows from before have none: misses, replaced by the
-- next store of their key.
-- * match_cache.result_json: the result's JSON exactly as signed. jsonb
--   (`result`) rewrites the text (key order, spaces, numbers), so the MAC
--   cannot cover it. `result` stays for the release before this one, which
--   reads and writes it during a deploy and after a rollback: this release
--   writes NULL there (which that release reads as a miss), and a row that
--   release writes carries no valid MAC here. Drop it in a later release.
ALTER TABLE match_cache
    ADD COLUMN IF NOT EXISTS result_json bytea,
    ADD COLUMN IF NOT EXISTS mac bytea,
    ALTER COLUMN result DROP NOT NULL;
ALTER TABLE embedding_cache ADD COLUMN IF NOT EXISTS mac bytea;
