//! The local stack runs the production planner: no `EXACT_SCAN_MAX_ROWS`
//! override, so an unfiltered match of the 6,000 demo jobs is past the
//! derived gate and goes through the HNSW graph. Shown by PostgreSQL's own
//! index statistics, which count the graph's scans whoever makes them.

use std::time::{Duration, Instant};

use jobmatch_e2e::{env, Stack};
use shared::domain::TaskStatus;
use sqlx::PgPool;

/// Scans of the full HNSW graph so far. Backends flush their statistics at
/// most every 10 s when idle, so a scan shows up within that.
async fn graph_scans(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'jobs_embedding_hnsw'",
    )
    .fetch_one(db)
    .await
    .expect("index statistics")
}

#[tokio::test]
async fn an_unfiltered_match_runs_the_hnsw_plan() {
    assert!(
        std::env::var("EXACT_SCAN_MAX_ROWS").is_err(),
        "the local stack must not override the production planner"
    );
    let s = Stack::connect().await;
    let db = PgPool::connect(&env("DATABASE_URL"))
        .await
        .expect("database");
    let before = graph_scans(&db).await;
    // `submit` sends a query no earlier run has cached.
    let token = s.token("planner");
    let task_id = s.submit(&token, 0).await;
    let task = s
        .wait_finished(std::slice::from_ref(&task_id), Duration::from_secs(60))
        .await
        .remove(0);
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    let result = task.result.expect("result");
    assert!(!result.cached);
    assert_eq!(result.matches.len(), 10);
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let after = graph_scans(&db).await;
        if after > before {
            println!("planner: jobs_embedding_hnsw scans {before} -> {after}");
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the HNSW graph was not scanned (idx_scan stayed {before})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
