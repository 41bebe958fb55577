//! `make bench --fairness-only` (and the last part of every `make bench`):
//! one caller's backlog must not delay another caller's short text by more
//! than a few seconds (DESIGN.md "Fair use", issue 27). Through the gateway
//! of `make up`, as clients come: caller A queues `backlog` resumes of 1,400
//! words at once; caller B then sends short texts one after another, each
//! timed from its acceptance to its completion (`created_at` to
//! `completed_at`). B's times with an idle stack come first, for comparison;
//! every one of A's tasks must complete too (legal work never fails for lack
//! of time).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::Utc;
use futures::stream::{self, StreamExt};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoTaskStore;
use shared::domain::{Task, TaskStatus};
use shared::ports::TaskReader;

use crate::measure::percentile;

/// The bound set for issue 27: another caller's short text completes within
/// this long of its acceptance while A's backlog is queued (measured
/// 2026-12-07: max 449 ms; docs/performance.md "Fair use").
pub const BOUND_MS: f64 = 2_000.0;
/// Words of each of A's resumes (about 1,800 word pieces: 8 windows).
const BACKLOG_WORDS: usize = 1_400;

pub struct Fairness {
    pub api_url: String,
    pub jwt_secret: String,
    pub tasks_table: String,
    /// A's long texts.
    pub backlog: usize,
    /// B's short texts while A's backlog is queued.
    pub probes: usize,
}

#[derive(Debug, Serialize)]
pub struct FairnessFigures {
    pub backlog: usize,
    pub backlog_words: usize,
    /// B's short texts, accepted to completed, with the stack idle.
    pub idle_ms: Vec<f64>,
    /// The same while A's backlog is queued.
    pub loaded_ms: Vec<f64>,
    /// A's tasks not yet completed when each of B's completed.
    pub backlog_open: Vec<usize>,
    pub bound_ms: f64,
    pub within_bound: bool,
    /// A's first acceptance to A's last completion.
    pub backlog_secs: f64,
    pub backlog_completed: usize,
    /// A's tasks claimed more than once (handed back for lack of time, or
    /// retried).
    pub backlog_claimed_again: usize,
    pub backlog_max_attempts: u32,
}

fn token(f: &Fairness, sub: &str) -> Result<String> {
    Ok(shared::auth::mint_hs256(
        f.jwt_secret.as_bytes(),
        sub,
        3600,
    )?)
}

async fn submit(http: &reqwest::Client, f: &Fairness, token: &str, text: &str) -> Result<String> {
    let resp = http
        .post(format!("{}/jobs/match", f.api_url))
        .bearer_auth(token)
        .json(&json!({ "text": text, "limit": 10 }))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    ensure!(status.as_u16() == 202, "POST answered {status}: {body}");
    Ok(body["task_id"].as_str().context("task_id")?.to_owned())
}

/// Polls one task every 100 ms until it is finished.
async fn finished(store: &DynamoTaskStore, id: &str, limit: Duration) -> Result<Task> {
    let give_up = Instant::now() + limit;
    loop {
        let task = store
            .get(id, Utc::now())
            .await?
            .with_context(|| format!("task {id} is missing"))?;
        if task.status.is_finished() {
            return Ok(task);
        }
        ensure!(
            Instant::now() < give_up,
            "task {id} still {} after {limit:?}",
            task.status.as_str()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Accepted to completed, in ms, of a completed task.
fn took_ms(task: &Task) -> Result<f64> {
    ensure!(
        task.status == TaskStatus::Completed,
        "task {} ended {} ({:?})",
        task.task_id,
        task.status.as_str(),
        task.error
    );
    let done = task.completed_at.context("completed_at")?.get();
    Ok((done - task.created_at.get()).num_milliseconds() as f64)
}

/// One of B's short texts: sent, then waited for.
async fn probe(
    http: &reqwest::Client,
    store: &DynamoTaskStore,
    f: &Fairness,
    token: &str,
    run: &str,
    i: usize,
) -> Result<Task> {
    // Its own words each time: no cache serves it.
    let text = format!("ICU nurse for night shifts on a cardiology ward, ref {run}-{i}");
    let id = submit(http, f, token, &text).await?;
    finished(store, &id, Duration::from_secs(120)).await
}

pub async fn measure(f: &Fairness) -> Result<FairnessFigures> {
    let aws = shared::aws::load().await?;
    let store = DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), f.tasks_table.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let run = format!("{:x}", rand::rng().random::<u64>());
    let (a, b) = (
        token(f, &format!("fair-a-{run}"))?,
        token(f, &format!("fair-b-{run}"))?,
    );

    let mut idle_ms = Vec::new();
    for i in 0..3 {
        idle_ms.push(took_ms(&probe(&http, &store, f, &b, &run, i).await?)?);
    }

    let seed: u64 = rand::rng().random();
    let texts: Vec<String> = (0..f.backlog)
        .map(|i| jobmatch_cli::generate::long_resume(seed.wrapping_add(i as u64), BACKLOG_WORDS))
        .collect();
    let backlog: Vec<String> = stream::iter(&texts)
        .map(|text| submit(&http, f, &a, text))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    // The backlog queued and the worker busy with it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut loaded = Vec::new();
    for i in 0..f.probes {
        loaded.push(probe(&http, &store, f, &b, &run, 100 + i).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let mut a_tasks = Vec::with_capacity(backlog.len());
    for id in &backlog {
        a_tasks.push(finished(&store, id, Duration::from_secs(900)).await?);
    }
    let loaded_ms: Vec<f64> = loaded.iter().map(took_ms).collect::<Result<_>>()?;
    let backlog_open = loaded
        .iter()
        .map(|p| {
            let at = p.completed_at.map(|t| t.get());
            a_tasks
                .iter()
                .filter(|t| t.completed_at.map(|c| c.get()) > at)
                .count()
        })
        .collect();
    let first = a_tasks.iter().map(|t| t.created_at.get()).min();
    let last = a_tasks
        .iter()
        .filter_map(|t| t.completed_at.map(|c| c.get()))
        .max();
    let backlog_secs = match (first, last) {
        (Some(first), Some(last)) => (last - first).num_milliseconds() as f64 / 1000.0,
        _ => f64::NAN,
    };
    let worst = loaded_ms.iter().copied().fold(0.0, f64::max);
    Ok(FairnessFigures {
        backlog: f.backlog,
        backlog_words: BACKLOG_WORDS,
        idle_ms,
        within_bound: worst <= BOUND_MS,
        loaded_ms,
        backlog_open,
        bound_ms: BOUND_MS,
        backlog_secs,
        backlog_completed: a_tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Completed)
            .count(),
        backlog_claimed_again: a_tasks.iter().filter(|t| t.attempts > 1).count(),
        backlog_max_attempts: a_tasks.iter().map(|t| t.attempts).max().unwrap_or(0),
    })
}

pub fn print(f: &FairnessFigures) {
    let ms = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{:.0}", x))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\nFairness: caller A queues {} resumes of {} words; caller B sends short texts (accepted to completed):",
        f.backlog, f.backlog_words
    );
    println!("  B, stack idle:        {} ms", ms(&f.idle_ms));
    println!(
        "  B, A's backlog queued: {} ms (p50 {:.0}, max {:.0}); A's tasks still open then: {:?}",
        ms(&f.loaded_ms),
        percentile(&f.loaded_ms, 0.5),
        f.loaded_ms.iter().copied().fold(0.0, f64::max),
        f.backlog_open
    );
    println!(
        "  bound {:.0} ms: {}",
        f.bound_ms,
        if f.within_bound { "met" } else { "NOT met" }
    );
    println!(
        "  A: {} of {} completed in {:.1} s; {} claimed more than once (at most {} times)",
        f.backlog_completed,
        f.backlog,
        f.backlog_secs,
        f.backlog_claimed_again,
        f.backlog_max_attempts
    );
}
