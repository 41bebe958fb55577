//! Load: 1,000 tasks from 32 concurrent clients through the gateway. All must
//! complete, none lost. Prints accepted/s, tasks/s end to end, and p50/p99
//! from accept (`created_at`) to completion (`completed_at`).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jobmatch_e2e::{percentile, Stack};
use shared::domain::TaskStatus;

const TASKS: u64 = 1_000;
const CLIENTS: usize = 32;

#[tokio::test]
async fn a_thousand_tasks_from_32_clients_all_complete() {
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    // One subject per client, as 32 separate callers.
    let tokens: Vec<String> = (0..CLIENTS)
        .map(|c| stack.token(&format!("load-{run}-{c}")))
        .collect();
    let started = Instant::now();
    let ids: Vec<String> = stream::iter(0..TASKS)
        .map(|i| stack.submit(&tokens[i as usize % CLIENTS], 1_000 + i))
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let accept_secs = started.elapsed().as_secs_f64();
    let tasks = stack.wait_finished(&ids, Duration::from_secs(600)).await;

    assert_eq!(tasks.len() as u64, TASKS);
    let mut lost = 0;
    let mut latencies = Vec::new();
    let mut last_done = None;
    for t in &tasks {
        if t.status != TaskStatus::Completed {
            lost += 1;
            continue;
        }
        let done = t.completed_at.expect("completed_at").get();
        latencies.push((done - t.created_at.get()).num_milliseconds() as f64);
        last_done = last_done.max(Some(done));
    }
    latencies.sort_by(f64::total_cmp);
    let first_created = tasks
        .iter()
        .map(|t| t.created_at.get())
        .min()
        .expect("tasks");
    let span_secs =
        (last_done.expect("completions") - first_created).num_milliseconds() as f64 / 1000.0;
    println!(
        "load: {TASKS} tasks from {CLIENTS} clients: accepted {:.0}/s; {:.0} tasks/s end to end; accept->completed p50 {:.0} ms, p99 {:.0} ms; {lost} not completed",
        TASKS as f64 / accept_secs,
        TASKS as f64 / span_secs,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
    );
    assert_eq!(lost, 0, "tasks not completed");
}
