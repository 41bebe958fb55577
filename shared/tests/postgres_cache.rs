//! The cache adapter against the real PostgreSQL + pgvector of the local
//! stack (`sqlx::test`: a fresh database, migrated as `migrate` does): its
//! tables stay within their caps, and an entry that expired or whose versions moved on is
//! never served.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::adapters::cache::{CacheLimits, PgMatchCache};
use shared::domain::{MatchResult, Timestamp, EMBEDDING_DIM};
use shared::ports::{CacheKey, Lookup, MatchCache, PostedWindow};
use sqlx::PgPool;

fn result() -> MatchResult {
    MatchResult {
        matches: vec![],
        count: 0,
        query_ms: 1.0,
        cached: false,
        computed_at: Some(Timestamp::now()),
    }
}

fn key(i: u8) -> CacheKey {
    [i; 32]
}

fn limits(ttl: Duration, max_results: i64, max_embeddings: i64) -> CacheLimits {
    CacheLimits {
        result_ttl: ttl,
        max_results,
        embedding_ttl: ttl,
        max_embeddings,
    }
}

async fn rows(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .expect("count")
}

async fn miss(cache: &PgMatchCache, key: &CacheKey) -> shared::ports::DataVersions {
    match cache.lookup(key, None).await.expect("lookup") {
        Lookup::Miss(v) => v,
        Lookup::Hit(_) => panic!("expected a miss"),
    }
}

#[sqlx::test(migrations = false)]
async fn the_tables_stay_within_their_caps(pool: PgPool) {
    common::migrated(&pool).await;
    let cache = PgMatchCache::new(pool.clone(), limits(Duration::from_secs(3600), 5, 3));
    let versions = miss(&cache, &key(0)).await;
    for i in 0..40 {
        cache
            .store(&key(i), None, versions, &result(), None)
            .await
            .expect("store");
        let vector = vec![1.0 / (EMBEDDING_DIM as f32).sqrt(); EMBEDDING_DIM];
        cache
            .store_embedding(&key(i), &vector)
            .await
            .expect("store embedding");
    }
    // Each store evicts what is beyond the cap before it: cap + 1 at most.
    assert!(rows(&pool, "match_cache").await <= 6);
    assert!(rows(&pool, "embedding_cache").await <= 4);
    // The newest are the ones kept.
    assert!(matches!(
        cache.lookup(&key(39), None).await.expect("lookup"),
        Lookup::Hit(_)
    ));
    assert!(cache.embedding(&key(39)).await.expect("lookup").is_some());
    assert!(cache.embedding(&key(0)).await.expect("lookup").is_none());
}

#[sqlx::test(migrations = false)]
async fn expired_or_outdated_entries_are_never_served(pool: PgPool) {
    common::migrated(&pool).await;
    let expired = PgMatchCache::new(pool.clone(), limits(Duration::ZERO, 100, 100));
    let versions = miss(&expired, &key(1)).await;
    expired
        .store(&key(1), None, versions, &result(), None)
        .await
        .expect("store");
    miss(&expired, &key(1)).await;

    let cache = PgMatchCache::new(pool.clone(), limits(Duration::from_secs(3600), 100, 100));
    let versions = miss(&cache, &key(2)).await;
    cache
        .store(&key(2), None, versions, &result(), None)
        .await
        .expect("store");
    let Lookup::Hit(hit) = cache.lookup(&key(2), None).await.expect("lookup") else {
        panic!("a fresh entry is served");
    };
    assert!(
        !hit.cached,
        "the adapter returns what was stored; the service marks hits"
    );
    // Any statement writing jobs moves the version, even one that changes no row.
    sqlx::query("UPDATE jobs SET title = title WHERE false")
        .execute(&pool)
        .await
        .expect("update");
    let moved = miss(&cache, &key(2)).await;
    assert_eq!(moved.jobs, versions.jobs + 1);
    // The next store evicts the outdated entry.
    cache
        .store(&key(3), None, moved, &result(), None)
        .await
        .expect("store");
    assert_eq!(rows(&pool, "match_cache").await, 1);
}

async fn jobs_version(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT version FROM jobs_version")
        .fetch_one(pool)
        .await
        .expect("version")
}

async fn has_bump_trigger(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger \
         WHERE tgrelid = 'jobs'::regclass AND tgname = 'jobs_version_bump')",
    )
    .fetch_one(pool)
    .await
    .expect("trigger")
}

/// DDL that no row trigger sees still outdates what was cached: a rewrite
/// by hand, a migration replacing the matcher, a `jobs` created again (which
/// gets its trigger back, so its later writes count too).
#[sqlx::test(migrations = false)]
async fn ddl_outdates_cached_results(pool: PgPool) {
    common::migrated(&pool).await;
    let cache = PgMatchCache::new(pool.clone(), limits(Duration::from_secs(3600), 100, 100));
    for ddl in [
        "ALTER TABLE jobs ALTER COLUMN title TYPE text USING upper(title)",
        "CREATE OR REPLACE FUNCTION jobmatch_ef_search(table_rows double precision, count integer) \
         RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT count $$",
    ] {
        let versions = miss(&cache, &key(4)).await;
        cache
            .store(&key(4), None, versions, &result(), None)
            .await
            .expect("store");
        assert!(matches!(
            cache.lookup(&key(4), None).await.expect("lookup"),
            Lookup::Hit(_)
        ));
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(&pool)
            .await
            .expect(ddl);
        assert!(miss(&cache, &key(4)).await.jobs > versions.jobs, "{ddl}");
    }

    sqlx::raw_sql(
        "CREATE TABLE jobs_copy AS TABLE jobs; DROP TABLE jobs CASCADE; \
         ALTER TABLE jobs_copy RENAME TO jobs",
    )
    .execute(&pool)
    .await
    .expect("jobs created again");
    assert!(has_bump_trigger(&pool).await, "the trigger is back");
    let before = jobs_version(&pool).await;
    sqlx::query("DELETE FROM jobs WHERE false")
        .execute(&pool)
        .await
        .expect("delete");
    assert_eq!(jobs_version(&pool).await, before + 1);
}

/// A `posted_within_days` result holds until its oldest candidate leaves the
/// window, computed as the filter's SQL computes the window.
#[sqlx::test(migrations = false)]
async fn a_window_entry_ends_when_its_oldest_candidate_leaves(pool: PgPool) {
    common::migrated(&pool).await;
    let cache = PgMatchCache::new(pool.clone(), limits(Duration::from_secs(3600), 100, 100));
    let posted = |offset: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, DateTime<Utc>>(sqlx::AssertSqlSafe(format!(
                "SELECT now() - make_interval(days => 30) + interval '{offset}'"
            )))
            .fetch_one(&pool)
            .await
            .expect("time")
        }
    };
    // In the window for one more minute: served, until then.
    let inside = PostedWindow {
        oldest_posted_at: posted("1 minute").await,
        days: 30,
    };
    let versions = miss(&cache, &key(5)).await;
    cache
        .store(&key(5), None, versions, &result(), Some(inside))
        .await
        .expect("store");
    assert!(matches!(
        cache.lookup(&key(5), None).await.expect("lookup"),
        Lookup::Hit(_)
    ));
    let ends: bool = sqlx::query_scalar(
        "SELECT expires_at = $1 + make_interval(days => 30) FROM match_cache WHERE key = $2",
    )
    .bind(inside.oldest_posted_at)
    .bind(&key(5)[..])
    .fetch_one(&pool)
    .await
    .expect("expires_at");
    assert!(ends, "the entry ends when its oldest candidate leaves");

    // Out of the window a minute ago: never served.
    let left = PostedWindow {
        oldest_posted_at: posted("-1 minute").await,
        days: 30,
    };
    cache
        .store(&key(6), None, versions, &result(), Some(left))
        .await
        .expect("store");
    miss(&cache, &key(6)).await;
}

/// The loader's staging table (temporary) does not move the version, a
/// no-op `IF NOT EXISTS` neither, a DROP does, and a migration may still
/// drop the row trigger and create it again.
#[sqlx::test(migrations = false)]
async fn temporary_ddl_leaves_the_version_and_the_trigger_can_be_redefined(pool: PgPool) {
    common::migrated(&pool).await;
    let mut conn = pool.acquire().await.expect("connection");
    let before = jobs_version(&pool).await;
    sqlx::raw_sql(
        "CREATE TEMP TABLE staging (LIKE jobs INCLUDING DEFAULTS); \
         ALTER TABLE staging ALTER COLUMN title DROP NOT NULL; \
         CREATE INDEX IF NOT EXISTS jobs_posted_at ON jobs (posted_at)",
    )
    .execute(&mut *conn)
    .await
    .expect("temporary DDL");
    assert_eq!(jobs_version(&pool).await, before);

    sqlx::raw_sql("DROP INDEX jobs_posted_at")
        .execute(&mut *conn)
        .await
        .expect("drop");
    assert_eq!(jobs_version(&pool).await, before + 1);

    sqlx::raw_sql(
        "DROP TRIGGER IF EXISTS jobs_version_bump ON jobs; \
         CREATE TRIGGER jobs_version_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jobs \
             FOR EACH STATEMENT EXECUTE FUNCTION bump_jobs_version()",
    )
    .execute(&mut *conn)
    .await
    .expect("the trigger redefined, as migration 3 does");
    assert!(has_bump_trigger(&pool).await);
}
