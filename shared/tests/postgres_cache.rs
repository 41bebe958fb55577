//! The cache adapter against the real PostgreSQL + pgvector of the local
//! stack (`sqlx::test`: a fresh database, migrated as `migrate` does): its
//! tables stay within their caps, an entry that expired or whose versions
//! moved on is never served, and neither is one that a database login alone
//! planted or changed (its MAC does not verify).

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::adapters::cache::{CacheLimits, PgMatchCache};
use shared::cache_mac::CacheMac;
use shared::config::Secret;
use shared::domain::{MatchResult, Timestamp, EMBEDDING_DIM};
use shared::ports::{CacheKey, Holds, Lookup, MatchCache, PostedWindow};
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

fn mac() -> CacheMac {
    CacheMac::new(
        &Secret::new("a test key of thirty-two bytes or more".into()),
        "CACHE_MAC_KEY",
    )
    .expect("key")
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
    let cache = PgMatchCache::new(pool.clone(), limits(Duration::from_secs(3600), 5, 3), mac());
    let versions = miss(&cache, &key(0)).await;
    for i in 0..40 {
        cache
            .store(&key(i), None, versions, &result(), Holds::default())
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
    let expired = PgMatchCache::new(pool.clone(), limits(Duration::ZERO, 100, 100), mac());
    let versions = miss(&expired, &key(1)).await;
    expired
        .store(&key(1), None, versions, &result(), Holds::default())
        .await
        .expect("store");
    miss(&expired, &key(1)).await;

    let cache = PgMatchCache::new(
        pool.clone(),
        limits(Duration::from_secs(3600), 100, 100),
        mac(),
    );
    let versions = miss(&cache, &key(2)).await;
    cache
        .store(&key(2), None, versions, &result(), Holds::default())
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
        .store(&key(3), None, moved, &result(), Holds::default())
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
    let cache = PgMatchCache::new(
        pool.clone(),
        limits(Duration::from_secs(3600), 100, 100),
        mac(),
    );
    for ddl in [
        "ALTER TABLE jobs ALTER COLUMN title TYPE text USING upper(title)",
        "CREATE OR REPLACE FUNCTION jobmatch_ef_search(table_rows double precision, count integer) \
         RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT count $$",
    ] {
        let versions = miss(&cache, &key(4)).await;
        cache
            .store(&key(4), None, versions, &result(), Holds::default())
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
    let cache = PgMatchCache::new(
        pool.clone(),
        limits(Duration::from_secs(3600), 100, 100),
        mac(),
    );
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
        .store(
            &key(5),
            None,
            versions,
            &result(),
            Holds {
                window: Some(inside),
                ..Holds::default()
            },
        )
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
        .store(
            &key(6),
            None,
            versions,
            &result(),
            Holds {
                window: Some(left),
                ..Holds::default()
            },
        )
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

fn hit(lookup: Lookup) -> MatchResult {
    match lookup {
        Lookup::Hit(result) => result,
        Lookup::Miss(_) => panic!("expected a hit"),
    }
}

/// Runs `sql` as the functions' role (`jobmatch_reader`, whose rights a
/// leaked functions' login has): the planting below needs no more.
async fn as_functions(pool: &PgPool, sql: &str, bind: &[&[u8]]) {
    let mut tx = pool.begin().await.expect("transaction");
    sqlx::query("SET LOCAL ROLE jobmatch_reader")
        .execute(&mut *tx)
        .await
        .expect("the functions' role");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in bind {
        query = query.bind(*b);
    }
    query.execute(&mut *tx).await.expect(sql);
    tx.commit().await.expect("commit");
}

/// A row written by SQL alone, at the current versions and unexpired, is
/// never served: without a MAC, with a made-up one, with the MAC and body of
/// another key's entry, or as the release before wrote rows (`result`
/// jsonb). A result, a version or an end changed after a proper store is a
/// miss too. The next proper store replaces such a row and is served.
#[sqlx::test(migrations = false)]
async fn a_result_planted_or_changed_by_sql_is_a_miss(pool: PgPool) {
    common::migrated(&pool).await;
    let cache = PgMatchCache::new(
        pool.clone(),
        limits(Duration::from_secs(3600), 100, 100),
        mac(),
    );
    let versions = miss(&cache, &key(10)).await;
    let stored = result();
    cache
        .store(&key(10), None, versions, &stored, Holds::default())
        .await
        .expect("store");
    let served = hit(cache.lookup(&key(10), None).await.expect("lookup"));
    assert_eq!(
        served.computed_at, stored.computed_at,
        "a proper store is a hit"
    );

    let mut forged = result();
    forged.count = 99;
    forged.query_ms = 42.0;
    let forged = serde_json::to_vec(&forged).expect("json");
    let plant = |key: u8, mac: Option<Vec<u8>>| {
        let pool = pool.clone();
        let forged = forged.clone();
        async move {
            let mac = mac.unwrap_or_default();
            as_functions(
                &pool,
                "INSERT INTO match_cache (key, jobs_version, result_json, mac, computed_at, expires_at) \
                 SELECT $1, version, $2, nullif($3, ''::bytea), now(), now() + interval '1 hour' \
                 FROM jobs_version",
                &[&[key; 32], &forged, &mac],
            )
            .await;
        }
    };
    plant(11, None).await;
    miss(&cache, &key(11)).await;
    plant(12, Some(vec![0xAB; 32])).await;
    miss(&cache, &key(12)).await;
    // Another key's valid entry, copied whole: the MAC covers the key.
    as_functions(
        &pool,
        "INSERT INTO match_cache (key, jobs_version, profile_user, profile_version, result_json, \
                                  mac, computed_at, expires_at) \
         SELECT $1, jobs_version, profile_user, profile_version, result_json, mac, computed_at, \
                expires_at FROM match_cache WHERE key = $2",
        &[&key(13), &key(10)],
    )
    .await;
    miss(&cache, &key(13)).await;
    // As the release before this one stored it: jsonb, no MAC.
    as_functions(
        &pool,
        "INSERT INTO match_cache (key, jobs_version, result, computed_at, expires_at) \
         SELECT $1, version, convert_from($2, 'UTF8')::jsonb, now(), now() + interval '1 hour' \
         FROM jobs_version",
        &[&key(14), &forged],
    )
    .await;
    miss(&cache, &key(14)).await;

    // Changes to the proper entry, each undone before the next.
    for change in [
        "UPDATE match_cache SET result_json = convert_to(replace(convert_from(result_json, 'UTF8'), \
         '\"count\":0', '\"count\":1'), 'UTF8') WHERE key = $1",
        "UPDATE match_cache SET expires_at = expires_at + interval '1 day' WHERE key = $1",
    ] {
        let saved: (Vec<u8>, DateTime<Utc>) =
            sqlx::query_as("SELECT result_json, expires_at FROM match_cache WHERE key = $1")
                .bind(&key(10)[..])
                .fetch_one(&pool)
                .await
                .expect("the entry");
        as_functions(&pool, change, &[&key(10)]).await;
        miss(&cache, &key(10)).await;
        sqlx::query("UPDATE match_cache SET result_json = $2, expires_at = $3 WHERE key = $1")
            .bind(&key(10)[..])
            .bind(&saved.0)
            .bind(saved.1)
            .execute(&pool)
            .await
            .expect("undo");
        hit(cache.lookup(&key(10), None).await.expect("lookup"));
    }
    // A result outdated by a write to jobs, moved to the current version.
    sqlx::query("UPDATE jobs SET title = title WHERE false")
        .execute(&pool)
        .await
        .expect("update");
    let versions = miss(&cache, &key(10)).await;
    as_functions(
        &pool,
        "UPDATE match_cache SET jobs_version = (SELECT version FROM jobs_version) WHERE key = $1",
        &[&key(10)],
    )
    .await;
    miss(&cache, &key(10)).await;

    // Another key (a rotation): every entry is a miss, and stores replace them.
    let rotated = PgMatchCache::new(
        pool.clone(),
        limits(Duration::from_secs(3600), 100, 100),
        CacheMac::new(
            &Secret::new("another key of thirty-two bytes or more".into()),
            "CACHE_MAC_KEY",
        )
        .expect("key"),
    );
    miss(&rotated, &key(10)).await;
    for k in [10, 11, 12, 14] {
        rotated
            .store(&key(k), None, versions, &stored, Holds::default())
            .await
            .expect("store");
        let served = hit(rotated.lookup(&key(k), None).await.expect("lookup"));
        assert_eq!(served.count, 0, "the planted row is replaced");
    }
}

/// The same for text vectors: one planted, changed or copied from another
/// key by SQL is a miss.
#[sqlx::test(migrations = false)]
async fn an_embedding_planted_or_changed_by_sql_is_a_miss(pool: PgPool) {
    common::migrated(&pool).await;
    let cache = PgMatchCache::new(
        pool.clone(),
        limits(Duration::from_secs(3600), 100, 100),
        mac(),
    );
    let vector = common::axis(3, 0.25);
    cache
        .store_embedding(&key(20), &vector)
        .await
        .expect("store");
    assert_eq!(
        cache.embedding(&key(20)).await.expect("lookup"),
        Some(vector.clone()),
        "a proper store is a hit, bit for bit"
    );

    as_functions(
        &pool,
        "INSERT INTO embedding_cache (key, embedding, created_at, expires_at) \
         SELECT $1, embedding, now(), now() + interval '1 hour' FROM embedding_cache WHERE key = $2",
        &[&key(21), &key(20)],
    )
    .await;
    assert_eq!(
        cache.embedding(&key(21)).await.expect("lookup"),
        None,
        "no MAC"
    );
    as_functions(
        &pool,
        "INSERT INTO embedding_cache (key, embedding, mac, created_at, expires_at) \
         SELECT $1, embedding, mac, now(), now() + interval '1 hour' FROM embedding_cache WHERE key = $2",
        &[&key(22), &key(20)],
    )
    .await;
    assert_eq!(
        cache.embedding(&key(22)).await.expect("lookup"),
        None,
        "another key's MAC"
    );
    let other = pgvector::Vector::from(common::axis(7, 0.0));
    let mut tx = pool.begin().await.expect("transaction");
    sqlx::query("SET LOCAL ROLE jobmatch_reader")
        .execute(&mut *tx)
        .await
        .expect("role");
    sqlx::query("UPDATE embedding_cache SET embedding = $2 WHERE key = $1")
        .bind(&key(20)[..])
        .bind(other)
        .execute(&mut *tx)
        .await
        .expect("change");
    tx.commit().await.expect("commit");
    assert_eq!(
        cache.embedding(&key(20)).await.expect("lookup"),
        None,
        "changed"
    );
}
