//! The cache of results and text embeddings in PostgreSQL
//! (`migrations/20261130000003_match_cache.sql`): shared by every function
//! instance, next to the data whose versions decide what is still valid, so a
//! lookup checks them in the same statement. Bounded in age (`expires_at`)
//! and in rows: each store also deletes up to [`EVICT_BATCH`] expired or
//! outdated rows, and the oldest beyond the row cap, skipping rows another
//! store holds (stores never wait on each other). A store never replaces an
//! entry computed at a newer `jobs_version`.

use std::time::Duration;

use pgvector::Vector;
use sqlx::Row;

use crate::adapters::db_connect::Db;
use crate::domain::MatchResult;
use crate::error::{Error, Result};
use crate::ports::{CacheKey, DataVersions, Lookup, MatchCache, PostedWindow};

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
}

impl PgMatchCache {
    pub fn new(db: impl Into<Db>, limits: CacheLimits) -> PgMatchCache {
        PgMatchCache {
            db: db.into(),
            limits,
        }
    }
}

fn db_err(e: sqlx::Error) -> Error {
    Error::unavailable(COMPONENT, e)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl MatchCache for PgMatchCache {
    async fn lookup(&self, key: &CacheKey, profile_user: Option<&str>) -> Result<Lookup> {
        // One round trip: the current versions, and the entry if it matches
        // them. `profiles` is read only for a result keyed by a profile.
        let row = match profile_user {
            Some(user) => sqlx::query(
                "SELECT v.version AS jobs_version, p.version AS profile_version, c.result \
                 FROM jobs_version v \
                 LEFT JOIN profiles p ON p.user_id = $2 \
                 LEFT JOIN match_cache c ON c.key = $1 AND c.expires_at > now() \
                      AND c.jobs_version = v.version AND c.profile_version = p.version",
            )
            .bind(&key[..])
            .bind(user),
            None => sqlx::query(
                "SELECT v.version AS jobs_version, NULL::bigint AS profile_version, c.result \
                 FROM jobs_version v \
                 LEFT JOIN match_cache c ON c.key = $1 AND c.expires_at > now() \
                      AND c.jobs_version = v.version AND c.profile_version IS NULL",
            )
            .bind(&key[..]),
        }
        .fetch_one(self.db.pool().await?)
        .await
        .map_err(db_err)?;
        let result: Option<sqlx::types::Json<MatchResult>> =
            row.try_get("result").map_err(db_err)?;
        if let Some(sqlx::types::Json(result)) = result {
            return Ok(Lookup::Hit(result));
        }
        Ok(Lookup::Miss(DataVersions {
            jobs: row.try_get("jobs_version").map_err(db_err)?,
            profile: row.try_get("profile_version").map_err(db_err)?,
        }))
    }

    async fn store(
        &self,
        key: &CacheKey,
        profile_user: Option<&str>,
        versions: DataVersions,
        result: &MatchResult,
        window: Option<PostedWindow>,
    ) -> Result<()> {
        let computed_at = result.computed_at.map(|t| t.get());
        sqlx::query(
            "WITH put AS ( \
               INSERT INTO match_cache (key, jobs_version, profile_user, profile_version, result, \
                                        computed_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5, coalesce($6, now()), \
                       least(now() + make_interval(secs => $7), \
                             $10 + make_interval(days => $11::int))) \
               ON CONFLICT (key) DO UPDATE SET jobs_version = EXCLUDED.jobs_version, \
                 profile_user = EXCLUDED.profile_user, profile_version = EXCLUDED.profile_version, \
                 result = EXCLUDED.result, computed_at = EXCLUDED.computed_at, \
                 expires_at = EXCLUDED.expires_at \
               WHERE match_cache.jobs_version <= EXCLUDED.jobs_version \
               RETURNING 1), \
             stale AS ( \
               DELETE FROM match_cache WHERE key IN ( \
                 SELECT key FROM match_cache WHERE expires_at <= now() OR jobs_version < $2 \
                 LIMIT $9 FOR UPDATE SKIP LOCKED)), \
             over AS ( \
               DELETE FROM match_cache WHERE key IN ( \
                 SELECT key FROM match_cache ORDER BY computed_at DESC OFFSET $8 LIMIT $9 \
                 FOR UPDATE SKIP LOCKED)) \
             SELECT count(*) FROM put",
        )
        .bind(&key[..])
        .bind(versions.jobs)
        .bind(profile_user)
        .bind(versions.profile)
        .bind(sqlx::types::Json(result))
        .bind(computed_at)
        .bind(secs(self.limits.result_ttl))
        .bind(self.limits.max_results)
        .bind(EVICT_BATCH)
        .bind(window.map(|w| w.oldest_posted_at))
        .bind(window.map(|w| w.days))
        .execute(self.db.pool().await?)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn embedding(&self, key: &CacheKey) -> Result<Option<Vec<f32>>> {
        let row: Option<Vector> = sqlx::query_scalar(
            "SELECT embedding FROM embedding_cache WHERE key = $1 AND expires_at > now()",
        )
        .bind(&key[..])
        .fetch_optional(self.db.pool().await?)
        .await
        .map_err(db_err)?;
        Ok(row.map(Vec::from))
    }

    async fn store_embedding(&self, key: &CacheKey, embedding: &[f32]) -> Result<()> {
        sqlx::query(
            "WITH put AS ( \
               INSERT INTO embedding_cache (key, embedding, created_at, expires_at) \
               VALUES ($1, $2, now(), now() + make_interval(secs => $3)) \
               ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding, \
                 created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
               RETURNING 1), \
             stale AS ( \
               DELETE FROM embedding_cache WHERE key IN ( \
                 SELECT key FROM embedding_cache WHERE expires_at <= now() LIMIT $5 \
                 FOR UPDATE SKIP LOCKED)), \
             over AS ( \
               DELETE FROM embedding_cache WHERE key IN ( \
                 SELECT key FROM embedding_cache ORDER BY created_at DESC OFFSET $4 LIMIT $5 \
                 FOR UPDATE SKIP LOCKED)) \
             SELECT count(*) FROM put",
        )
        .bind(&key[..])
        .bind(Vector::from(embedding.to_vec()))
        .bind(secs(self.limits.embedding_ttl))
        .bind(self.limits.max_embeddings)
        .bind(EVICT_BATCH)
        .execute(self.db.pool().await?)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
