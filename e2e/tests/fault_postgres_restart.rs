//! Fault test: PostgreSQL stops in the middle of a burst of 100 tasks and comes
//! back. Every task must end `completed`, or `failed` with a clear code; none
//! may stay pending or processing.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jobmatch_e2e::Stack;
use shared::domain::TaskStatus;
use shared::error::ErrorCode;

/// Starts PostgreSQL again even when the test fails half-way.
struct Restart<'a>(&'a Stack);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        self.0.stack_restart("pg-start");
    }
}

async fn burst(stack: &Stack, token: &str, seeds: std::ops::Range<u64>) -> Vec<String> {
    stream::iter(seeds)
        .map(|seed| stack.submit(token, seed))
        .buffer_unordered(8)
        .collect()
        .await
}

#[tokio::test]
async fn postgres_restart_mid_burst_loses_nothing() {
    let stack = Stack::connect().await;
    let owner = format!("fault-pg-{}", uuid::Uuid::new_v4().simple());
    let token = stack.token(&owner);
    let started = Instant::now();

    let mut ids = burst(&stack, &token, 0..30).await;
    stack.stack_restart("pg-stop");
    let guard = Restart(&stack);
    // Accepting needs no PostgreSQL: these are 202 while it is down.
    ids.extend(burst(&stack, &token, 30..70).await);
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(guard);
    ids.extend(burst(&stack, &token, 70..100).await);

    let tasks = stack.wait_finished(&ids, Duration::from_secs(240)).await;
    let completed = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Completed)
        .count();
    let retried = tasks.iter().filter(|t| t.attempts >= 2).count();
    let failed: Vec<_> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Failed)
        .collect();
    println!(
        "fault postgres restart: {} tasks, {completed} completed, {} failed, {retried} took more than one attempt, all finished in {:.1} s",
        tasks.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(tasks.len(), 100);
    for t in &failed {
        let error = t.error.as_ref().expect("a failed task has an error");
        assert_eq!(
            error.code,
            ErrorCode::DependencyUnavailable,
            "{}: {}",
            t.task_id,
            error.message
        );
    }
    for t in tasks.iter().filter(|t| t.status == TaskStatus::Completed) {
        assert_eq!(
            t.result.as_ref().expect("result").count,
            10,
            "{}",
            t.task_id
        );
    }
    // The outage was felt: some task needed a retry or ran out of attempts.
    assert!(retried + failed.len() > 0, "no task met the outage");
}
