//! Whole-path figures on the running local stack (`make up`).
//!
//! The functions run under `cargo lambda watch`; they are invoked directly on
//! its `/2015-03-31/functions/<name>/invocations` path, without the Python
//! gateway or poller. Each function's own cost is its invocation latency minus
//! that of an invocation of the same function on the same path that does no
//! I/O (the watch proxy's overhead), both as medians. It is compared with the
//! same work done directly from here with the same adapters:
//! - worker: one SQS record for a pending task, against (query + claim + complete);
//! - api: `POST /jobs/match`, against the same writes through the same
//!   adapters, in the api's order (the pending task, then its message). The
//!   two writes at once (the api's order before issue 13) are timed beside
//!   them: what writing first costs a POST.
//!
//! The perf-profile api sends to a queue no poller reads (`stack.py
//! perf-watch`), so that no worker processes the submitted tasks while the
//! next figures are measured.
//!
//! The worker's peak RSS is its process's VmHWM.
//!
//! Text tasks: `POST /jobs/match` with a `text` through the api, then the
//! worker invoked with that task's message (the perf api's queue has no
//! poller), timed from before the POST to the worker's return with the task
//! completed: the service's own time for a text request, without the queue's
//! delivery delay. Each text is a distinct query of the relevance file with a
//! run tag in front, so that no cache of texts or embeddings can answer it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoTaskStore;
use shared::adapters::postgres::PgJobIndex;
use shared::adapters::sqs::SqsTaskQueue;
use shared::domain::{Filters, MatchRequest, Routing, Task, TaskMessage, TaskStatus};
use shared::ports::{Claim, Fence, TaskQueue, TaskReader, TaskWriter};
use shared::service;

use crate::measure::percentile;

pub struct Stack {
    pub lambda_url: String,
    pub tasks_table: String,
    pub jwt_secret: String,
    /// The target directory of the functions' builds: "debug", "perf", ...
    pub functions_profile: String,
    /// The demo database the functions query.
    pub index: PgJobIndex,
    /// Texts (and skills) for the text-task figure; the first few warm up.
    pub texts: Vec<(String, Vec<String>)>,
    pub text_runs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct WholePath {
    pub runs: usize,
    pub demo_jobs: i64,
    pub worker_invoke_p50_ms: f64,
    pub worker_empty_invoke_p50_ms: f64,
    pub worker_cost_ms: f64,
    pub query_p50_ms: f64,
    pub claim_p50_ms: f64,
    pub complete_p50_ms: f64,
    /// worker_cost / (query + claim + complete).
    pub worker_overhead_ratio: f64,
    pub api_post_invoke_p50_ms: f64,
    pub api_noop_invoke_p50_ms: f64,
    pub api_post_cost_ms: f64,
    pub put_item_p50_ms: f64,
    pub send_message_p50_ms: f64,
    /// api_post_cost / writes_in_order.
    pub post_ratio: f64,
    /// The pending task, then its message, from the benchmark: the api's
    /// order, and what its POST costs at best on this machine.
    pub writes_in_order_p50_ms: f64,
    /// The same two writes at once: the api's order before issue 13.
    pub both_writes_at_once_p50_ms: f64,
    pub worker_peak_rss_mb: Option<f64>,
    pub text: Option<TextTasks>,
    pub cache: Option<CacheFigures>,
    pub note: String,
}

/// The cache (DESIGN.md "Cache"): the same text request twice, a miss then a
/// hit, per text length; and the legacy call (inline embedding) twice.
#[derive(Debug, Clone, Serialize)]
pub struct CacheFigures {
    pub classes: Vec<CacheClass>,
    pub legacy_miss_p50_ms: f64,
    pub legacy_hit_p50_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheClass {
    pub word_pieces: usize,
    pub runs: usize,
    pub miss_post_to_completed_p50_ms: f64,
    pub hit_post_to_completed_p50_ms: f64,
    pub miss_worker_p50_ms: f64,
    pub hit_worker_p50_ms: f64,
    /// hit_worker / miss_worker (target for 254 word pieces: <= 0.30).
    pub hit_over_miss: f64,
}

/// Text requests from POST to completed (see the module's documentation).
#[derive(Debug, Clone, Serialize)]
pub struct TextTasks {
    pub runs: usize,
    pub mean_word_pieces: f64,
    pub post_to_completed_p50_ms: f64,
    pub post_to_completed_p90_ms: f64,
    pub post_invoke_p50_ms: f64,
    pub worker_invoke_p50_ms: f64,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

async fn invoke(http: &reqwest::Client, url: &str, event: &Value) -> Result<(f64, Value)> {
    let t = Instant::now();
    let resp = http.post(url).json(event).send().await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let elapsed = ms(t);
    if !status.is_success() {
        bail!("invocation of {url} failed with {status}: {body}");
    }
    Ok((elapsed, body))
}

/// `invoke` of a match request to the api: one caller sends them all, more
/// than its quota's burst (QUOTA_BURST), so a 429 waits its Retry-After and
/// is sent again. Only the answered invocation is timed.
async fn invoke_api(http: &reqwest::Client, url: &str, event: &Value) -> Result<(f64, Value)> {
    loop {
        let (t, resp) = invoke(http, url, event).await?;
        if resp["statusCode"] != 429 {
            return Ok((t, resp));
        }
        let wait = resp["headers"]["retry-after"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .with_context(|| format!("a 429 without Retry-After: {resp}"))?;
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

pub(crate) fn sqs_event(task_id: &str) -> Value {
    json!({"Records": [{
        "messageId": uuid::Uuid::now_v7().to_string(),
        "receiptHandle": "bench",
        "body": json!({"task_id": task_id}).to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": Utc::now().timestamp_millis().to_string()},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:bench",
        "awsRegion": "us-east-1"
    }]})
}

/// An HttpApi payload 2.0 event, as the gateway builds it.
pub(crate) fn http_event(
    method: &str,
    path: &str,
    route_key: &str,
    token: Option<&str>,
    body: &str,
) -> Value {
    let mut headers = json!({"content-type": "application/json", "host": "bench"});
    if let Some(token) = token {
        headers["authorization"] = Value::String(format!("Bearer {token}"));
    }
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000", "apiId": "bench", "domainName": "bench",
            "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "jobmatch-bench"},
            "requestId": uuid::Uuid::now_v7().to_string(), "routeKey": route_key,
            "stage": "$default", "time": "01/Jan/2025:00:00:00 +0000",
            "timeEpoch": Utc::now().timestamp_millis()
        },
        "isBase64Encoded": false,
        "body": body
    })
}

fn request() -> MatchRequest {
    MatchRequest {
        embedding: None,
        text: None,
        skills: None,
        filters: Filters {
            remote: Some(true),
            ..Default::default()
        },
        limit: 20,
        callback: None,
    }
}

/// A fresh pending task of `owner`, as the api would write it.
fn new_task(owner: &str) -> Task {
    Task::pending(
        service::new_task_id(),
        owner.to_owned(),
        request(),
        Utc::now(),
        3600,
    )
}

pub(crate) async fn pending(store: &DynamoTaskStore, owner: &str) -> Result<String> {
    let task = new_task(owner);
    store.create(&task).await?;
    Ok(task.task_id)
}

/// Peak RSS (VmHWM) of the worker process cargo lambda watch runs for this
/// checkout, from the build of `profile`.
fn worker_peak_rss_mb(profile: &str) -> Option<f64> {
    let root = std::env::current_dir().ok()?;
    let want = root.join("target").join(profile).join("worker");
    let mut best: Option<f64> = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe != want {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())?;
        best = Some(best.map_or(kb / 1024.0, |b: f64| b.max(kb / 1024.0)));
    }
    best
}

pub async fn measure(stack: &Stack, runs: usize) -> Result<WholePath> {
    let aws = shared::aws::load().await?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if !endpoint.starts_with("http://127.0.0.1") && !endpoint.starts_with("http://localhost") {
        bail!("AWS_ENDPOINT_URL must point at the local moto server; got {endpoint:?}");
    }
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let store = DynamoTaskStore::new(dynamo.clone(), stack.tasks_table.clone());
    let http = reqwest::Client::new();
    let base = stack.lambda_url.trim_end_matches('/');
    let worker_url = format!("{base}/2015-03-31/functions/worker/invocations");
    let api_url = format!("{base}/2015-03-31/functions/api/invocations");
    let owner = "demo-user";
    let demo_jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(stack.index.db().pool().await?)
        .await
        .context("demo database")?;

    // Warm up both functions (first invocations build and start them).
    for _ in 0..3 {
        invoke(&http, &worker_url, &json!({"Records": []})).await?;
        let id = pending(&store, owner).await?;
        invoke(&http, &worker_url, &sqs_event(&id)).await?;
    }

    let (mut worker, mut empty, mut query, mut claim, mut complete) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (t, _) = invoke(&http, &worker_url, &json!({"Records": []})).await?;
        empty.push(t);

        let id = pending(&store, owner).await?;
        let (t, body) = invoke(&http, &worker_url, &sqs_event(&id)).await?;
        worker.push(t);
        let failures = body["batchItemFailures"].as_array().map_or(0, Vec::len);
        let done = store.get(&id, Utc::now()).await?;
        if failures > 0 || done.as_ref().map(|t| t.status) != Some(TaskStatus::Completed) {
            bail!("the worker did not complete task {id}: {body}");
        }

        // The same work, directly: the claim, the match, the completion.
        let id = pending(&store, owner).await?;
        let t = Instant::now();
        let claimed = store
            .claim(&id, Utc::now(), Utc::now().timestamp_millis() + 60_000)
            .await?;
        claim.push(ms(t));
        let Claim::Claimed(task) = claimed else {
            bail!("could not claim {id}: {claimed:?}");
        };
        let t = Instant::now();
        let result = service::run_match(
            &stack.index,
            &shared::ports::NoModel,
            &shared::ports::NoCache,
            owner,
            &task.request,
            &service::Always,
        )
        .await?;
        query.push(ms(t));
        let t = Instant::now();
        store
            .complete(&id, Fence::Attempt(task.attempts), &result, Utc::now())
            .await?;
        complete.push(ms(t));
    }
    let worker_peak_rss_mb = worker_peak_rss_mb(&stack.functions_profile);

    // The api: POST /jobs/match, and a request it rejects before any I/O.
    let token = shared::auth::mint_hs256(stack.jwt_secret.as_bytes(), owner, 3600)?;
    let body = r#"{"limit": 1, "filters": {"remote": true}}"#;
    let post = http_event(
        "POST",
        "/jobs/match",
        "POST /jobs/match",
        Some(&token),
        body,
    );
    let noop = http_event("POST", "/jobs/match", "POST /jobs/match", None, body);
    let probe_queue = sqs
        .create_queue()
        .queue_name(format!("bench-probe-{}", uuid::Uuid::now_v7().simple()))
        .send()
        .await?
        .queue_url
        .context("probe queue url")?;
    let probe = SqsTaskQueue::new(sqs.clone(), probe_queue.clone());
    for _ in 0..3 {
        invoke_api(&http, &api_url, &post).await?;
    }
    let (mut posts, mut noops, mut puts, mut sends, mut both, mut in_order) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    // Tasks written only to time the writes: never queued, deleted below.
    let mut probe_tasks = Vec::new();
    // As the api sends them: in the caller's fair-queue group.
    let routing = Routing::of_owner(owner);
    for i in 0..runs {
        let (t, resp) = invoke_api(&http, &api_url, &post).await?;
        if resp["statusCode"] != 202 {
            bail!("POST /jobs/match answered {resp}");
        }
        posts.push(t);
        let (t, resp) = invoke(&http, &api_url, &noop).await?;
        if resp["statusCode"] != 401 {
            bail!("unauthenticated POST answered {resp}");
        }
        noops.push(t);
        // The api's own two writes, one after the other: the pending task
        // (conditional PutItem) and its message.
        let task = new_task(owner);
        let t = Instant::now();
        store.create(&task).await?;
        let put = ms(t);
        probe_tasks.push(task.task_id);
        let t = Instant::now();
        probe
            .send(&TaskMessage::new(format!("bench-probe-{i}")), &routing)
            .await?;
        sends.push(ms(t));
        in_order.push(put + ms(t));
        puts.push(put);
        let task = new_task(owner);
        let message = TaskMessage::new(format!("bench-probe-both-{i}"));
        let t = Instant::now();
        let (created, sent) = tokio::join!(store.create(&task), probe.send(&message, &routing));
        both.push(ms(t));
        probe_tasks.push(task.task_id);
        created?;
        sent?;
    }
    sqs.delete_queue().queue_url(&probe_queue).send().await?;
    // Untimed: no task stays pending for ever in the stack's table.
    for id in probe_tasks {
        dynamo
            .delete_item()
            .table_name(&stack.tasks_table)
            .key("task_id", AttributeValue::S(id))
            .send()
            .await?;
    }

    let text = if stack.texts.is_empty() || stack.text_runs == 0 {
        None
    } else {
        Some(text_tasks(&http, &api_url, &worker_url, &store, &token, stack).await?)
    };
    let cache = if stack.texts.is_empty() || stack.text_runs == 0 {
        None
    } else {
        Some(cache_figures(&http, &api_url, &worker_url, &store, &token, stack).await?)
    };

    let p = |v: &Vec<f64>| percentile(v, 0.5);
    let worker_cost = p(&worker) - p(&empty);
    let direct = p(&query) + p(&claim) + p(&complete);
    let post_cost = p(&posts) - p(&noops);
    let writes = p(&in_order);
    Ok(WholePath {
        runs,
        demo_jobs,
        worker_invoke_p50_ms: p(&worker),
        worker_empty_invoke_p50_ms: p(&empty),
        worker_cost_ms: worker_cost,
        query_p50_ms: p(&query),
        claim_p50_ms: p(&claim),
        complete_p50_ms: p(&complete),
        worker_overhead_ratio: worker_cost / direct,
        api_post_invoke_p50_ms: p(&posts),
        api_noop_invoke_p50_ms: p(&noops),
        api_post_cost_ms: post_cost,
        put_item_p50_ms: p(&puts),
        send_message_p50_ms: p(&sends),
        post_ratio: post_cost / writes,
        writes_in_order_p50_ms: writes,
        both_writes_at_once_p50_ms: p(&both),
        worker_peak_rss_mb,
        text,
        cache,
        note: format!(
            "functions built with the {} profile under cargo lambda watch; costs are \
             invocation p50 minus the p50 of a no-I/O invocation on the same path",
            stack.functions_profile
        ),
    })
}

/// Text tasks: POST through the api, then the worker on the task's message.
async fn text_tasks(
    http: &reqwest::Client,
    api_url: &str,
    worker_url: &str,
    store: &DynamoTaskStore,
    token: &str,
    stack: &Stack,
) -> Result<TextTasks> {
    const WARM_UP: usize = 2;
    if stack.texts.len() < WARM_UP + stack.text_runs {
        bail!(
            "{} texts for {} text tasks and {WARM_UP} warm-up ones",
            stack.texts.len(),
            stack.text_runs
        );
    }
    // The model's word pieces of the measured texts (as the worker counts them).
    let model =
        tokio::task::spawn_blocking(|| embed::MiniLm::load(&embed::default_dir())).await??;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let tag = &tag[tag.len() - 8..];
    let (mut total, mut posts, mut workers, mut pieces) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let texts = stack.texts.iter().take(WARM_UP + stack.text_runs);
    for (i, (text, skills)) in texts.enumerate() {
        let text = format!("Ref {tag}-{i}. {text}");
        let body = json!({"text": text, "skills": skills, "limit": 10}).to_string();
        let run = text_task(http, api_url, worker_url, store, token, &body).await?;
        if i >= WARM_UP {
            total.push(run.total_ms);
            posts.push(run.post_ms);
            workers.push(run.worker_ms);
            pieces.push(model.word_pieces(&text)? as f64);
        }
    }
    Ok(TextTasks {
        runs: total.len(),
        mean_word_pieces: pieces.iter().sum::<f64>() / pieces.len().max(1) as f64,
        post_to_completed_p50_ms: percentile(&total, 0.5),
        post_to_completed_p90_ms: percentile(&total, 0.9),
        post_invoke_p50_ms: percentile(&posts, 0.5),
        worker_invoke_p50_ms: percentile(&workers, 0.5),
    })
}

/// One text task, timed.
struct TextRun {
    /// Before the POST to the worker's return with the task completed.
    total_ms: f64,
    post_ms: f64,
    worker_ms: f64,
    cached: bool,
}

/// A POST of `body` through the api, then the worker on its message.
async fn text_task(
    http: &reqwest::Client,
    api_url: &str,
    worker_url: &str,
    store: &DynamoTaskStore,
    token: &str,
    body: &str,
) -> Result<TextRun> {
    let post = http_event("POST", "/jobs/match", "POST /jobs/match", Some(token), body);
    let (post_ms, resp) = invoke_api(http, api_url, &post).await?;
    // From here, plus the POST itself: a 429's wait is not the task's time.
    let t = Instant::now();
    if resp["statusCode"] != 202 {
        bail!("POST /jobs/match with a text answered {resp}");
    }
    let accepted: Value = serde_json::from_str(resp["body"].as_str().unwrap_or_default())
        .context("the 202's body")?;
    let id = accepted["task_id"]
        .as_str()
        .context("task_id in the 202's body")?
        .to_owned();
    let (worker_ms, _) = invoke(http, worker_url, &sqs_event(&id)).await?;
    let elapsed = post_ms + ms(t);
    let done = store.get(&id, Utc::now()).await?;
    let Some(result) = done
        .filter(|t| t.status == TaskStatus::Completed)
        .and_then(|t| t.result)
    else {
        bail!("the worker did not complete text task {id}");
    };
    Ok(TextRun {
        total_ms: elapsed,
        post_ms,
        worker_ms,
        cached: result.cached,
    })
}

/// A text of about `word_pieces` word pieces (the model's count), unique to `tag`.
fn text_of(model: &embed::MiniLm, source: &str, tag: &str, word_pieces: usize) -> Result<String> {
    let words: Vec<&str> = source.split_whitespace().collect();
    let mut text = format!("Ref {tag}.");
    let mut i = 0;
    while model.word_pieces(&text)? < word_pieces {
        text.push(' ');
        text.push_str(words[i % words.len()]);
        i += 1;
    }
    Ok(text)
}

async fn cache_figures(
    http: &reqwest::Client,
    api_url: &str,
    worker_url: &str,
    store: &DynamoTaskStore,
    token: &str,
    stack: &Stack,
) -> Result<CacheFigures> {
    const RUNS: usize = 10;
    let model =
        tokio::task::spawn_blocking(|| embed::MiniLm::load(&embed::default_dir())).await??;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let run = &run[run.len() - 8..];
    let source: String = stack
        .texts
        .iter()
        .map(|(t, _)| t.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let mut classes = Vec::new();
    for word_pieces in [20, 254] {
        let (mut miss_total, mut hit_total, mut miss_worker, mut hit_worker) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..RUNS {
            let text = text_of(
                &model,
                &source,
                &format!("{run}-{word_pieces}-{i}"),
                word_pieces,
            )?;
            let body = json!({"text": text, "limit": 10}).to_string();
            let miss = text_task(http, api_url, worker_url, store, token, &body).await?;
            if miss.cached {
                bail!("a new text was answered from the cache");
            }
            miss_total.push(miss.total_ms);
            miss_worker.push(miss.worker_ms);
            let hit = text_task(http, api_url, worker_url, store, token, &body).await?;
            if !hit.cached {
                bail!("the repeat of a text was not answered from the cache");
            }
            hit_total.push(hit.total_ms);
            hit_worker.push(hit.worker_ms);
        }
        let p = |v: &Vec<f64>| percentile(v, 0.5);
        classes.push(CacheClass {
            word_pieces,
            runs: RUNS,
            miss_post_to_completed_p50_ms: p(&miss_total),
            hit_post_to_completed_p50_ms: p(&hit_total),
            miss_worker_p50_ms: p(&miss_worker),
            hit_worker_p50_ms: p(&hit_worker),
            hit_over_miss: p(&hit_worker) / p(&miss_worker),
        });
    }
    // The legacy call runs an inline-embedding match in the api itself.
    let (mut legacy_miss, mut legacy_hit) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let seed = run.bytes().fold(i as u64, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        let mut v: Vec<f32> = (0..shared::domain::EMBEDDING_DIM)
            .map(|j| {
                (((seed.wrapping_add(j as u64)).wrapping_mul(2_654_435_761) % 1000) as f32) - 500.0
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        let body = json!({"embedding": v, "limit": 10}).to_string();
        let event = http_event(
            "POST",
            "/jobs/match/legacy",
            "POST /jobs/match/legacy",
            Some(token),
            &body,
        );
        for (n, out) in [&mut legacy_miss, &mut legacy_hit].into_iter().enumerate() {
            let (t, resp) = invoke_api(http, api_url, &event).await?;
            let result: Value = serde_json::from_str(resp["body"].as_str().unwrap_or_default())
                .context("the legacy body")?;
            if result["result"]["cached"] != json!(n == 1) {
                bail!(
                    "legacy call {n} of the same body: cached is {}",
                    result["result"]["cached"]
                );
            }
            out.push(t);
        }
    }
    Ok(CacheFigures {
        classes,
        legacy_miss_p50_ms: percentile(&legacy_miss, 0.5),
        legacy_hit_p50_ms: percentile(&legacy_hit, 0.5),
    })
}
