//! The cache of results and text embeddings in PostgreSQL
//! (`migrations/20261130000003_match_cache.sql`): shared by every function
//! instance, next to the data whose versions decide what is still valid, so a
//! lookup checks them in the same statement. Bounded in age (`expires_at`)
//! and in rows: each store also deletes up to [`EVICT_BATCH`] expired or
//! outdated rows, and the oldest beyond the row cap, skipping rows another
//! store holds (stores never wait on each other). A store never replaces an
//! entry computed at a newer `jobs_version`. Every entry carries a MAC
//! (`shared::cache_mac`): one that does not verify is a miss, so a database
//! login alone cannot plant what a reader serves.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::Row;

use crate::adapters::db_connect::Db;
use crate::cache_mac::{to_micros, CacheMac, Rejection, ResultEntry};
use crate::domain::MatchResult;
use crate::error::{Error, Result};
use crate::ports::{CacheKey, DataVersions, Holds, Lookup, MatchCache};

const COMPONENT: &str = "cache";
/// Rows one store may evict: keeps each store's cost bounded; the table
/// stays within its cap plus one.
const EVICT_BATCH: i64 = 64;

/// Limits of the cache (`CacheConfig`).
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub result_ttl: Duration,
    pub max_results: i64,
    pub embedding_ttl: Duration,
    pub max_embeddings: i64,
}

#[derive(Clone)]
pub struct PgMatchCache {
    db: Db,
    limits: CacheLimits,
    mac: CacheMac,
}

impl PgMatchCache {
    pub fn new(db: impl Into<Db>, limits: CacheLimits, mac: CacheMac) -> PgMatchCache {
        PgMatchCache {
            db: db.into(),
            limits,
            mac,
        }
    }
}

fn db_err(e: sqlx::Error) -> Error {
    Error::unavailable(COMPONENT, e)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Logged once per entry refused; names neither its key nor its MAC.
fn refused(table: &'static str, why: Rejection) {
    tracing::warn!(
        table,
        reason = why.as_str(),
        "cache entry not authentic: served as a miss"
    );
}

/// When a result stored now stops being served: its age limit or when it
/// stops holding (`Holds::until`: a candidate leaving the window, as the
/// filter's SQL counts days in UTC, sqlx's session time zone, or reaching its
/// `valid_through`). Computed here rather than in SQL so that the MAC covers it.
fn expires_at(now: DateTime<Utc>, ttl: Duration, holds: Holds) -> DateTime<Utc> {
    let aged = chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    to_micros(holds.until().map_or(aged, |left| left.min(aged)))
}

impl MatchCache for PgMatchCache {
    async fn lookup(&self, key: &CacheKey, profile_user: Option<&str>) -> Result<Lookup> {
        // One round trip: the current versions, and the entry if it matches
        // them. `profiles` is read only for a result keyed by a profile.
        let row = match profile_user {
            Some(user) => sqlx::query(
                "SELECT v.version AS jobs_version, p.version AS profile_version, \
                        c.expires_at, c.result_json, c.mac \
                 FROM jobs_version v \
                 LEFT JOIN profiles p ON p.user_id = $2 \
                 LEFT JOIN match_cache c ON c.key = $1 AND c.expires_at > now() \
                      AND c.jobs_version = v.version AND c.profile_version = p.version",
            )
            .bind(&key[..])
            .bind(user),
            None => sqlx::query(
                "SELECT v.version AS jobs_version, NULL::bigint AS profile_version, \
                        c.expires_at, c.result_json, c.mac \
                 FROM jobs_version v \
                 LEFT JOIN match_cache c ON c.key = $1 AND c.expires_at > now() \
                      AND c.jobs_version = v.version AND c.profile_version IS NULL",
            )
            .bind(&key[..]),
        }
        .fetch_one(self.db.pool().await?)
        .await
        .map_err(db_err)?;
        let versions = DataVersions {
            jobs: row.try_get("jobs_version").map_err(db_err)?,
            profile: row.try_get("profile_version").map_err(db_err)?,
        };
        let Some(expires_at) = row
            .try_get::<Option<DateTime<Utc>>, _>("expires_at")
            .map_err(db_err)?
        else {
            return Ok(Lookup::Miss(versions));
        };
        let json: Option<Vec<u8>> = row.try_get("result_json").map_err(db_err)?;
        let mac: Option<Vec<u8>> = row.try_get("mac").map_err(db_err)?;
        let Some(json) = json else {
            refused("match_cache", Rejection::Missing);
            return Ok(Lookup::Miss(versions));
        };
        // What this lookup relies on: the key and owner asked for, the
        // versions it matched (the entry's, by the join) and its end.
        let entry = ResultEntry {
            key,
            profile_user,
            versions,
            expires_at,
            result_json: &json,
        };
        if let Err(why) = self.mac.verify_result(&entry, mac.as_deref()) {
            refused("match_cache", why);
            return Ok(Lookup::Miss(versions));
        }
        let result = serde_json::from_slice(&json).map_err(|e| Error::unavailable(COMPONENT, e))?;
        Ok(Lookup::Hit(result))
    }

    async fn store(
        &self,
        key: &CacheKey,
        profile_user: Option<&str>,
        versions: DataVersions,
        result: &MatchResult,
        holds: Holds,
    ) -> Result<()> {
        let computed_at = result.computed_at.map(|t| t.get());
        let json = serde_json::to_vec(result).map_err(|e| Error::Internal(e.to_string()))?;
        let expires_at = expires_at(Utc::now(), self.limits.result_ttl, holds);
        let mac = self.mac.sign_result(&ResultEntry {
            key,
            profile_user,
            versions,
            expires_at,
            result_json: &json,
        });
        // `result` (jsonb) is the release before's column: NULL here, which
        // it reads as a miss (migrations/20261208000001_cache_mac.sql).
        sqlx::query(
            "WITH put AS ( \
               INSERT INTO match_cache (key, jobs_version, profile_user, profile_version, \
                                        result_json, mac, computed_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()), $8) \
               ON CONFLICT (key) DO UPDATE SET jobs_version = EXCLUDED.jobs_version, \
                 profile_user = EXCLUDED.profile_user, profile_version = EXCLUDED.profile_version, \
                 result = NULL, result_json = EXCLUDED.result_json, mac = EXCLUDED.mac, \
                 computed_at = EXCLUDED.computed_at, expires_at = EXCLUDED.expires_at \
               WHERE match_cache.jobs_version <= EXCLUDED.jobs_version \
               RETURNING 1), \
             stale AS ( \
               DELETE FROM match_cache WHERE key IN ( \
                 SELECT key FROM match_cache WHERE expires_at <= now() OR jobs_version < $2 \
                 LIMIT $10 FOR UPDATE SKIP LOCKED)), \
             over AS ( \
               DELETE FROM match_cache WHERE key IN ( \
                 SELECT key FROM match_cache ORDER BY computed_at DESC OFFSET $9 LIMIT $10 \
                 FOR UPDATE SKIP LOCKED)) \
             SELECT count(*) FROM put",
        )
        .bind(&key[..])
        .bind(versions.jobs)
        .bind(profile_user)
        .bind(versions.profile)
        .bind(&json)
        .bind(&mac)
        .bind(computed_at)
        .bind(expires_at)
        .bind(self.limits.max_results)
        .bind(EVICT_BATCH)
        .execute(self.db.pool().await?)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn embedding(&self, key: &CacheKey) -> Result<Option<Vec<f32>>> {
        let row: Option<(Vector, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT embedding, mac FROM embedding_cache WHERE key = $1 AND expires_at > now()",
        )
        .bind(&key[..])
        .fetch_optional(self.db.pool().await?)
        .await
        .map_err(db_err)?;
        let Some((vector, mac)) = row else {
            return Ok(None);
        };
        let vector = Vec::from(vector);
        if let Err(why) = self.mac.verify_embedding(key, &vector, mac.as_deref()) {
            refused("embedding_cache", why);
            return Ok(None);
        }
        Ok(Some(vector))
    }

    async fn store_embedding(&self, key: &CacheKey, embedding: &[f32]) -> Result<()> {
        let mac = self.mac.sign_embedding(key, embedding);
        sqlx::query(
            "WITH put AS ( \
               INSERT INTO embedding_cache (key, embedding, mac, created_at, expires_at) \
               VALUES ($1, $2, $3, now(), now() + make_interval(secs => $4)) \
               ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding, mac = EXCLUDED.mac, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
               RETURNING 1), \
             stale AS ( \
               DELETE FROM embedding_cache WHERE key IN ( \
                 SELECT key FROM embedding_cache WHERE expires_at <= now() LIMIT $6 \
                 FOR UPDATE SKIP LOCKED)), \
             over AS ( \
               DELETE FROM embedding_cache WHERE key IN ( \
                 SELECT key FROM embedding_cache ORDER BY created_at DESC OFFSET $5 LIMIT $6 \
                 FOR UPDATE SKIP LOCKED)) \
             SELECT count(*) FROM put",
        )
        .bind(&key[..])
        .bind(Vector::from(embedding.to_vec()))
        .bind(&mac)
        .bind(secs(self.limits.embedding_ttl))
        .bind(self.limits.max_embeddings)
        .bind(EVICT_BATCH)
        .execute(self.db.pool().await?)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
