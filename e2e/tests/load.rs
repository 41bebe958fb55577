//! Load: 1,000 tasks from 32 concurrent clients through the gateway. All must
//! complete, none lost. Prints accepted/s, tasks/s end to end, and p50/p99
//! from accept (`created_at`) to completion (`completed_at`). Each client is
//! one caller sending one request at a time, as real traffic comes, so each
//! has its own quota (the local QUOTA_BURST covers its ~32 requests).

use std::time::{Duration, Instant};

use jobmatch_e2e::{percentile, Stack};
use shared::domain::TaskStatus;
use std::sync::atomic::{AtomicU64, Ordering};

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
    // The tasks go to whichever client is free next.
    let next = AtomicU64::new(0);
    let loops = tokens.iter().map(|token| {
        let (stack, next) = (&stack, &next);
        async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= TASKS {
                    return ids;
                }
                ids.push((i, stack.submit(token, 1_000 + i).await));
            }
        }
    });
    let mut sent: Vec<(u64, String)> = futures::future::join_all(loops)
        .await
        .into_iter()
        .flatten()
        .collect();
    // In the order sent, about that of completion (`wait_finished`).
    sent.sort_unstable_by_key(|(i, _)| *i);
    let ids: Vec<String> = sent.into_iter().map(|(_, id)| id).collect();
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
