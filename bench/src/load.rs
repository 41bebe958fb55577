//! `make bench --load-only` (and part of every `make bench`): the local
//! stack under load, through the gateway as clients use it. One client in a
//! closed loop first, then `clients` at once, in the same run, so that the
//! scaling figure compares like with like. Each client is one caller (its
//! own JWT subject, so its own quota) sending one request at a time, as real
//! traffic comes; a 429 fails the run, since its figures would then measure
//! the quota (the local QUOTA_BURST covers a client's share of the posts). Every POST carries a fresh random
//! embedding (no cache hit, no model): the figures are the service's path,
//! not the model's. With N clients in a closed loop, latency is N ÷
//! throughput, so throughput is the figure to raise.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::Utc;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoTaskStore;
use shared::domain::{Task, TaskStatus, EMBEDDING_DIM};
use shared::ports::TaskReader;

use crate::measure::percentile;

/// Targets of issue 15, for 300 POSTs from 32 clients on the 2-core machine.
const MIN_SCALING: f64 = 2.5;
const MIN_ACCEPTED_PER_SEC: f64 = 60.0;
const MIN_TASKS_PER_SEC: f64 = 30.0;

pub struct Load {
    pub api_url: String,
    pub jwt_secret: String,
    pub tasks_table: String,
    pub posts: usize,
    pub clients: usize,
    /// POSTs of the one-client baseline.
    pub single_posts: usize,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub clients: usize,
    pub posts: usize,
    pub accepted_per_sec: f64,
    pub post_p50_ms: f64,
    pub post_p99_ms: f64,
    /// Tasks completed a second, from the first POST to the last completion.
    pub tasks_per_sec: f64,
    /// Accepted (`created_at`) to `completed_at`.
    pub done_p50_ms: f64,
    pub done_p99_ms: f64,
    pub not_completed: usize,
}

#[derive(Debug, Serialize)]
pub struct LoadFigures {
    pub single: Phase,
    pub many: Phase,
    /// Accepted a second with `clients`, over that with one.
    pub scaling: f64,
    /// Where the many-client phase's CPU went (Linux only).
    pub cpu: Option<CpuCeiling>,
}

/// The machine's CPU per task in the many-client phase, and the throughput
/// that CPU allows: everything on the machine (stack, PostgreSQL, the bench
/// itself) shares its cores, and moto's DynamoDB, one Python process
/// answering one request at a time, can use only one of them.
#[derive(Debug, Serialize)]
pub struct CpuCeiling {
    pub cores: usize,
    pub machine_ms_per_task: f64,
    pub dynamodb_ms_per_task: Option<f64>,
    /// Tasks a second at which the first of the two runs out of CPU.
    pub ceiling_per_sec: f64,
}

/// Busy CPU time (ms) of the whole machine and of moto's DynamoDB process,
/// from /proc. USER_HZ is 100 on every Linux architecture.
#[derive(Clone, Copy)]
struct CpuTimes {
    machine_ms: f64,
    dynamodb_ms: Option<f64>,
}

const USER_HZ_MS: f64 = 10.0;
/// Written by infra/local/stack.py.
const DYNAMODB_PID_FILE: &str = ".local/pids/moto.pid";

fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = ticks.iter().sum::<f64>() - ticks.get(3)? - ticks.get(4)?;
    let dynamodb_ms = std::fs::read_to_string(DYNAMODB_PID_FILE)
        .ok()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
        .and_then(|stat| {
            // After the command's closing parenthesis: state is field 3,
            // utime 14 and stime 15.
            let fields: Vec<f64> = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse().ok())
                .collect();
            (fields.len() == 2).then(|| (fields[0] + fields[1]) * USER_HZ_MS)
        });
    Some(CpuTimes {
        machine_ms: busy * USER_HZ_MS,
        dynamodb_ms,
    })
}

fn ceiling(before: CpuTimes, after: CpuTimes, tasks: usize) -> Option<CpuCeiling> {
    let cores = std::thread::available_parallelism().ok()?.get();
    let tasks = tasks.max(1) as f64;
    let machine_ms_per_task = (after.machine_ms - before.machine_ms) / tasks;
    let dynamodb_ms_per_task = after
        .dynamodb_ms
        .zip(before.dynamodb_ms)
        .map(|(a, b)| (a - b) / tasks);
    let machine = cores as f64 * 1000.0 / machine_ms_per_task;
    let dynamodb = dynamodb_ms_per_task.map_or(f64::INFINITY, |ms| 1000.0 / ms);
    Some(CpuCeiling {
        cores,
        machine_ms_per_task,
        dynamodb_ms_per_task,
        ceiling_per_sec: machine.min(dynamodb),
    })
}

fn random_embedding(rng: &mut impl Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

async fn post(
    http: &reqwest::Client,
    load: &Load,
    token: &str,
    seed: u64,
) -> Result<(String, f64)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let body = json!({"embedding": random_embedding(&mut rng), "skills": ["rust"], "limit": 10});
    let started = Instant::now();
    let resp = http
        .post(format!("{}/jobs/match", load.api_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    ensure!(
        resp.status().as_u16() != 429,
        "POST answered 429: a client's share of the posts is over its quota \
         (QUOTA_BURST and QUOTA_RATE of .local/env)"
    );
    ensure!(
        resp.status().as_u16() == 202,
        "POST answered {}",
        resp.status()
    );
    let accepted: Value = resp.json().await?;
    let id = accepted["task_id"].as_str().context("task_id")?.to_owned();
    Ok((id, ms))
}

/// Waits until every task is finished. Tasks finish about in the order
/// they were accepted, so this reads them in that order and waits on the
/// first one still open: one read per task, and one a poll while waiting.
/// Reading every open task each round (4 at a time) kept moto's DynamoDB,
/// which answers one request at a time, busy beside the worker measured.
async fn finished(store: &DynamoTaskStore, ids: Vec<String>) -> Result<Vec<Task>> {
    let give_up = Instant::now() + Duration::from_secs(600);
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        loop {
            match store.get(&id, Utc::now()).await? {
                Some(t) if t.status.is_finished() => {
                    done.push(t);
                    break;
                }
                Some(_) => {
                    ensure!(Instant::now() < give_up, "task {id} still open after 600 s");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => anyhow::bail!("task {id} is missing"),
            }
        }
    }
    Ok(done)
}

async fn phase(
    http: &reqwest::Client,
    store: &DynamoTaskStore,
    load: &Load,
    clients: usize,
    posts: usize,
    seed: u64,
) -> Result<Phase> {
    let run = format!("{:x}", rand::rng().random::<u64>());
    let tokens: Vec<String> = (0..clients)
        .map(|c| {
            shared::auth::mint_hs256(load.jwt_secret.as_bytes(), &format!("load-{run}-{c}"), 3600)
        })
        .collect::<Result<_, _>>()?;
    let (started, first_post) = (Instant::now(), Utc::now());
    // The posts go to whichever client is free next, each client in a
    // closed loop of its own.
    let next = AtomicUsize::new(0);
    let loops = tokens.iter().map(|token| {
        let next = &next;
        async move {
            let mut accepted = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= posts {
                    return Ok::<_, anyhow::Error>(accepted);
                }
                accepted.push((i, post(http, load, token, seed + i as u64).await?));
            }
        }
    });
    let mut accepted: Vec<(usize, (String, f64))> = futures::future::try_join_all(loops)
        .await?
        .into_iter()
        .flatten()
        .collect();
    // In the order sent, about that of completion (see `finished`).
    accepted.sort_unstable_by_key(|(i, _)| *i);
    let accept_secs = started.elapsed().as_secs_f64();
    let (ids, post_ms): (Vec<String>, Vec<f64>) = accepted.into_iter().map(|(_, a)| a).unzip();
    let tasks = finished(store, ids).await?;
    let mut done_ms = Vec::new();
    let mut last_done = first_post;
    let mut not_completed = 0;
    for t in &tasks {
        match (t.status, t.completed_at) {
            (TaskStatus::Completed, Some(at)) => {
                done_ms.push((at.get() - t.created_at.get()).num_milliseconds() as f64);
                last_done = last_done.max(at.get());
            }
            _ => not_completed += 1,
        }
    }
    let span = (last_done - first_post).num_milliseconds().max(1) as f64 / 1000.0;
    Ok(Phase {
        clients,
        posts,
        accepted_per_sec: posts as f64 / accept_secs,
        post_p50_ms: percentile(&post_ms, 0.5),
        post_p99_ms: percentile(&post_ms, 0.99),
        tasks_per_sec: (posts - not_completed) as f64 / span,
        done_p50_ms: percentile(&done_ms, 0.5),
        done_p99_ms: percentile(&done_ms, 0.99),
        not_completed,
    })
}

pub async fn measure(load: &Load) -> Result<LoadFigures> {
    let aws = shared::aws::load().await?;
    let store = DynamoTaskStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        load.tasks_table.clone(),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(load.clients * 2)
        .timeout(Duration::from_secs(60))
        .build()?;
    // Warm every function instance before timing.
    phase(&http, &store, load, load.clients, load.clients * 2, 1).await?;
    let single = phase(&http, &store, load, 1, load.single_posts, 10_000).await?;
    let before = cpu_times();
    let many = phase(&http, &store, load, load.clients, load.posts, 20_000).await?;
    let cpu = before
        .zip(cpu_times())
        .and_then(|(b, a)| ceiling(b, a, many.posts - many.not_completed));
    Ok(LoadFigures {
        scaling: many.accepted_per_sec / single.accepted_per_sec,
        single,
        many,
        cpu,
    })
}

pub fn print(f: &LoadFigures) {
    println!(
        "\nLoad through the gateway (fresh random embeddings; POST, then polled to completion):"
    );
    println!(
        "{:>8} {:>6} {:>11} {:>9} {:>9} {:>8} {:>10} {:>10} {:>5}",
        "clients",
        "posts",
        "accepted/s",
        "POST p50",
        "POST p99",
        "tasks/s",
        "done p50",
        "done p99",
        "lost"
    );
    for p in [&f.single, &f.many] {
        println!(
            "{:>8} {:>6} {:>11.1} {:>9.1} {:>9.1} {:>8.1} {:>10.0} {:>10.0} {:>5}",
            p.clients,
            p.posts,
            p.accepted_per_sec,
            p.post_p50_ms,
            p.post_p99_ms,
            p.tasks_per_sec,
            p.done_p50_ms,
            p.done_p99_ms,
            p.not_completed
        );
    }
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "scaling {:.2}x of one client (target >= {MIN_SCALING}: {}); {:.1} accepted/s (target >= {MIN_ACCEPTED_PER_SEC}: {}); \
         {:.1} tasks/s end to end (target >= {MIN_TASKS_PER_SEC}: {}); {} lost",
        f.scaling,
        mark(f.scaling >= MIN_SCALING),
        f.many.accepted_per_sec,
        mark(f.many.accepted_per_sec >= MIN_ACCEPTED_PER_SEC),
        f.many.tasks_per_sec,
        mark(f.many.tasks_per_sec >= MIN_TASKS_PER_SEC),
        f.many.not_completed + f.single.not_completed
    );
    if let Some(c) = &f.cpu {
        let dynamodb = c
            .dynamodb_ms_per_task
            .map(|ms| {
                format!(
                    ", {ms:.1} ms of it in moto's DynamoDB (one core: {:.0}/s)",
                    1000.0 / ms
                )
            })
            .unwrap_or_default();
        println!(
            "CPU with {} clients: {:.1} ms a task on this machine ({} cores: {:.0}/s){dynamodb}. \
             Ceiling {:.0} tasks/s; {:.1} tasks/s is {:.0}% of it, and the scaling it allows is {:.2}x.",
            f.many.clients,
            c.machine_ms_per_task,
            c.cores,
            c.cores as f64 * 1000.0 / c.machine_ms_per_task,
            c.ceiling_per_sec,
            f.many.tasks_per_sec,
            100.0 * f.many.tasks_per_sec / c.ceiling_per_sec,
            c.ceiling_per_sec / f.single.accepted_per_sec
        );
    }
}
