//! `migrate` against the local stack's real PostgreSQL: the migrations, then
//! db/ (shared::adapters::schema). An unchanged file is not run again; an
//! older release never applies an older definition over a newer one; a
//! database at main `826778d`'s schema (migrations up to 20261130000011)
//! comes to this release's, its data kept.

mod common;

use std::borrow::Cow;

use shared::adapters::postgres::{PgJobIndex, Plan};
use shared::adapters::schema::{self, DbItem, Outcome, SchemaError, MIGRATOR};
use shared::domain::Filters;
use shared::ports::Query;
use sqlx::PgPool;

/// The last migration of main `826778d`.
const LAST_OF_826778D: i64 = 20261130000011;

async fn nearest_source(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT prosrc FROM pg_proc WHERE proname = 'jobmatch_nearest'")
        .fetch_one(pool)
        .await
        .expect("one jobmatch_nearest")
}

async fn applied_at(pool: &PgPool) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    sqlx::query_as("SELECT name, applied_at FROM jobmatch_db_applied ORDER BY name")
        .fetch_all(pool)
        .await
        .expect("jobmatch_db_applied")
}

#[sqlx::test(migrations = false)]
async fn a_second_migrate_runs_nothing_again(pool: PgPool) {
    let first = schema::migrate(&pool).await.expect("first");
    assert!(
        first.iter().all(|(_, o)| *o == Outcome::Applied),
        "{first:?}"
    );
    assert_eq!(first.len(), schema::items().unwrap().len());
    let before = applied_at(&pool).await;
    let version: i64 = sqlx::query_scalar("SELECT version FROM jobs_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    let second = schema::migrate(&pool).await.expect("second");
    assert!(
        second.iter().all(|(_, o)| *o == Outcome::Unchanged),
        "{second:?}"
    );
    assert_eq!(applied_at(&pool).await, before);
    // Nothing ran, so no DDL outdated the cache either.
    let after: i64 = sqlx::query_scalar("SELECT version FROM jobs_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(after, version);
}

/// An older release's db/ (a lower revision of the matcher) is not applied
/// over the newer one; the same revision with other content is refused and
/// leaves everything as it was (one transaction).
#[sqlx::test(migrations = false)]
async fn an_older_release_keeps_the_newer_definitions(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    schema::migrate(&pool).await.expect("migrate");
    let newer = nearest_source(&pool).await;
    let current = schema::items().unwrap();
    let nearest = current
        .iter()
        .find(|i| i.name.starts_with("50_nearest"))
        .unwrap()
        .clone();

    // The older release: the matcher one revision back, with another body.
    let mut older = current.clone();
    for item in older.iter_mut() {
        if item.name == nearest.name {
            item.revision = nearest.revision.saturating_sub(1).max(1);
            item.sql = Cow::Borrowed("SELECT jobmatch_drop_routines('jobmatch_nearest');");
        }
    }
    if nearest.revision > 1 {
        let outcomes = schema::apply(&mut conn, older).await.expect("older");
        let (_, outcome) = outcomes
            .iter()
            .find(|(i, _)| i.name == nearest.name)
            .unwrap();
        assert_eq!(
            *outcome,
            Outcome::KeptNewer {
                recorded: nearest.revision
            }
        );
    } else {
        // Revision 1 has no older one: the same check one step up.
        let mut bumped = current.clone();
        for item in bumped.iter_mut() {
            if item.name == nearest.name {
                item.revision = 2;
                item.sql = Cow::Owned(format!("{}\n-- the newer release\n", item.sql));
            }
        }
        schema::apply(&mut conn, bumped).await.expect("newer");
        let newer_again = nearest_source(&pool).await;
        let outcomes = schema::apply(&mut conn, older).await.expect("older");
        let (_, outcome) = outcomes
            .iter()
            .find(|(i, _)| i.name == nearest.name)
            .unwrap();
        assert_eq!(*outcome, Outcome::KeptNewer { recorded: 2 });
        assert_eq!(nearest_source(&pool).await, newer_again);
    }
    assert_eq!(nearest_source(&pool).await, newer);

    // The same revision, edited: refused, and nothing of the run stays.
    let before = applied_at(&pool).await;
    let edited: Vec<DbItem> = schema::items()
        .unwrap()
        .into_iter()
        .map(|mut i| {
            if i.name.starts_with("00_tools") {
                i.sql = Cow::Owned(format!("{}\n-- edited\n", i.sql));
            }
            i
        })
        .collect();
    let err = schema::apply(&mut conn, edited).await.unwrap_err();
    assert!(
        matches!(err, SchemaError::ChangedWithoutRevision { ref name, .. } if name == "00_tools.sql"),
        "{err}"
    );
    assert_eq!(applied_at(&pool).await, before);
    assert_eq!(nearest_source(&pool).await, newer);
}

/// An older release's migrator refuses a database with a migration it does
/// not have, before db/ is touched.
#[sqlx::test(migrations = false)]
async fn a_release_without_the_newest_migration_stops_before_db(pool: PgPool) {
    schema::migrate(&pool).await.expect("migrate");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99991231000001, 'from a newer release', true, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = applied_at(&pool).await;
    let err = schema::migrate(&pool).await.unwrap_err();
    assert!(matches!(err, SchemaError::Migrate(_)), "{err}");
    assert_eq!(applied_at(&pool).await, before);
}

/// A database at main 826778d's schema, with a job in it, comes to this
/// release's: the matcher answers with its typed plan, the job kept.
#[sqlx::test(migrations = false)]
async fn a_database_at_the_old_schema_comes_to_this_one(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let old = sqlx::migrate::Migrator::with_migrations(
        MIGRATOR
            .iter()
            .filter(|m| m.version <= LAST_OF_826778D)
            .cloned()
            .collect(),
    );
    old.run(&mut *conn).await.expect("the old migrations");
    let before: String =
        sqlx::query_scalar("SELECT pg_get_function_result('jobmatch_nearest'::regproc)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(before.contains("plan text"), "{before}");
    common::insert_jobs(&pool, &[common::job("kept", common::axis(0, 0.0))]).await;

    let outcomes = schema::migrate(&pool).await.expect("to this release");
    assert!(outcomes.iter().all(|(_, o)| *o == Outcome::Applied));
    let index = PgJobIndex::new(pool.clone(), None);
    for plan in [Plan::Exact, Plan::Hnsw] {
        let (found, got) = index
            .nearest_planned(
                Query::Embedding(&common::axis(0, 0.0)),
                &Filters::default(),
                5,
                Some(plan),
            )
            .await
            .expect("nearest");
        assert_eq!(got, plan);
        assert_eq!(found.candidates.len(), 1);
        assert_eq!(found.candidates[0].job_id, "kept");
    }
    // One matcher, the new one.
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname = 'jobmatch_nearest'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(count, 1);
}
