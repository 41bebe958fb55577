//! Fault test: poison messages (not JSON; an unknown task id) in the same
//! queue as real tasks. The poison reaches the dead-letter queue after the
//! redrive count; the real tasks complete. The DLQ's consumer is paused
//! meanwhile, so that this test reads the DLQ itself (fault_dead_letter.rs
//! tests the consumer).

use std::time::Duration;

use futures::stream::{self, StreamExt};
use jobmatch_e2e::{env, Stack};
use shared::domain::TaskStatus;

#[tokio::test]
async fn poison_goes_to_the_dlq_and_the_rest_complete() {
    let stack = Stack::connect().await;
    let _paused = stack.pause("poller-dlq");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let token = stack.token(&format!("fault-poison-{run}"));
    let not_json = format!("poison {run}");
    let unknown = serde_json::json!({ "task_id": format!("ghost-{run}") }).to_string();
    stack.send_raw(&not_json).await;
    stack.send_raw(&unknown).await;
    let ids: Vec<String> = stream::iter(0..10u64)
        .map(|seed| stack.submit(&token, 100 + seed))
        .buffer_unordered(5)
        .collect()
        .await;

    let tasks = stack.wait_finished(&ids, Duration::from_secs(60)).await;
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Completed));

    let max: u32 = env("MAX_RECEIVE_COUNT").parse().expect("MAX_RECEIVE_COUNT");
    let limit = Duration::from_secs(180);
    let (a, b) = tokio::join!(
        stack.await_dead_letter(&not_json, limit),
        stack.await_dead_letter(&unknown, limit)
    );
    println!("fault poison: 10 tasks completed; poison dead-lettered after {a} and {b} receives");
    assert!(
        a >= max && b >= max,
        "dead-lettered after {a}/{b} receives, expected {max}"
    );
}
