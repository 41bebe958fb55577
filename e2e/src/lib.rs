//! Harness for the fault and load tests: the running local stack (`.local/env`),
//! an HTTP client with dev tokens, the task table read through the real
//! DynamoDB adapter, direct worker invocations, and the stack's fault switches.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use chrono::Utc;
use rand::{Rng, SeedableRng};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoTaskStore;
use shared::domain::{Task, TaskStatus, EMBEDDING_DIM};
use shared::ports::TaskReader;

pub mod catalogue;
pub mod receiver;

pub fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| {
        panic!("{key} is not set: run `make up` and export .local/env (make test does both)")
    })
}

/// The repository root (the e2e crate's parent).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// SIGKILLs this checkout's worker processes (those started by cargo lambda
/// watch from the repository root); returns how many were killed.
pub fn kill_workers() -> usize {
    kill_function("worker")
}

/// SIGKILLs this checkout's processes of the function `name`.
pub fn kill_function(name: &str) -> usize {
    let binary = format!("target/debug/{name}");
    let root = repo_root();
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let is_worker = cmdline
            .split(|b| *b == 0)
            .next()
            .is_some_and(|arg0| arg0.ends_with(binary.as_bytes()));
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        if is_worker && cwd.as_deref() == Some(root.as_path()) {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .expect("kill");
            killed += usize::from(status.success());
        }
    }
    killed
}

pub struct Stack {
    pub http: Client,
    pub api: String,
    pub lambda: String,
    secret: String,
    pub store: DynamoTaskStore,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
    /// Mixed into every `submit` seed. The demo database and its match
    /// cache outlive a run, so a fixed seed would meet the result an
    /// earlier run cached and never reach the worker's search.
    run: u64,
}

/// A random unit vector, seeded: an inline query that needs no stored profile.
pub fn embedding(seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Stack {
    pub async fn connect() -> Stack {
        let endpoint = env("AWS_ENDPOINT_URL");
        assert!(
            endpoint.starts_with("http://127.0.0.1"),
            "fault tests run only against the local stack, not {endpoint}"
        );
        let aws = shared::aws::load().await.expect("an HTTPS client");
        Stack {
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
            api: env("API_URL").trim_end_matches('/').to_owned(),
            lambda: env("LAMBDA_URL").trim_end_matches('/').to_owned(),
            secret: env("JWT_SECRET"),
            store: DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), env("TASKS_TABLE")),
            sqs: aws_sdk_sqs::Client::new(&aws),
            queue_url: env("QUEUE_URL"),
            dlq_url: env("DLQ_URL"),
            run: rand::random(),
        }
    }

    pub fn token(&self, sub: &str) -> String {
        shared::auth::mint_hs256(self.secret.as_bytes(), sub, 3600).expect("token")
    }

    /// A token with the `scope` claim (`"jobs:read jobs:write"`: an admin's).
    pub fn scoped_token(&self, sub: &str, scope: &str) -> String {
        shared::auth::mint_hs256_scoped(self.secret.as_bytes(), sub, Some(scope), 3600)
            .expect("token")
    }

    /// POST /jobs/match with an inline embedding that no earlier run has
    /// sent; the task id of the 202.
    pub async fn submit(&self, token: &str, seed: u64) -> String {
        let body =
            json!({"embedding": embedding(seed ^ self.run), "skills": ["rust"], "limit": 10});
        self.submit_body(token, &body).await
    }

    /// POST /jobs/match with `text` (a resume or a phrase); the task id of the 202.
    pub async fn submit_text(&self, token: &str, text: &str) -> String {
        self.submit_body(token, &json!({ "text": text, "limit": 10 }))
            .await
    }

    /// POST /jobs/match with `body`; the task id of the 202 (anything else
    /// panics with the answer).
    pub async fn submit_body(&self, token: &str, body: &Value) -> String {
        let resp = self
            .http
            .post(format!("{}/jobs/match", self.api))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST /jobs/match");
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(status, StatusCode::ACCEPTED, "submit: {v}");
        v["task_id"].as_str().expect("task_id").to_owned()
    }

    /// GET /jobs/match/status/{id} as the caller of `token` sees it.
    pub async fn status_body(&self, token: &str, id: &str) -> Value {
        self.get_json(token, &format!("/jobs/match/status/{id}"))
            .await
    }

    /// The first page of GET /jobs/match/tasks for the caller of `token`.
    pub async fn listing(&self, token: &str) -> Value {
        self.get_json(token, "/jobs/match/tasks").await
    }

    async fn get_json(&self, token: &str, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .expect("json")
    }

    /// POST /jobs/match/{id}/cancel: the status and the body.
    pub async fn cancel(&self, token: &str, id: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/jobs/match/{id}/cancel", self.api))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST cancel");
        let status = resp.status();
        (status, resp.json().await.expect("json"))
    }

    pub async fn task(&self, task_id: &str) -> Task {
        self.store
            .get(task_id, Utc::now())
            .await
            .expect("GetItem")
            .unwrap_or_else(|| panic!("task {task_id} is missing"))
    }

    /// Waits until every task is finished; panics naming a straggler.
    /// Tasks finish about in the order given (submission order), so this
    /// reads them in that order and waits on the first one still open: one
    /// read per task, and one a poll while waiting. Polling every open task
    /// would load the stack under test (its DynamoDB answers one request at
    /// a time).
    pub async fn wait_finished(&self, ids: &[String], limit: Duration) -> Vec<Task> {
        let started = Instant::now();
        let mut done = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            loop {
                let t = self.task(id).await;
                if t.status.is_finished() {
                    done.push(t);
                    break;
                }
                if started.elapsed() > limit {
                    panic!(
                        "task {id} still {} (attempts={}) after {limit:?}; {} of {} tasks \
                         not seen finished",
                        t.status.as_str(),
                        t.attempts,
                        ids.len() - i,
                        ids.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        done
    }

    /// Asserts that every task completed with `count` matches, naming the
    /// first that did not and its error.
    pub fn assert_completed(tasks: &[Task], count: usize) {
        for t in tasks {
            assert_eq!(
                t.status,
                TaskStatus::Completed,
                "{} {:?}",
                t.task_id,
                t.error
            );
            assert_eq!(t.result.as_ref().expect("result").count, count);
        }
    }

    /// Runs `infra/local/stack.py restart <what>` (pg-stop, pg-start, watch).
    pub fn stack_restart(&self, what: &str) {
        let root = repo_root();
        let status = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("infra/local/stack.py"))
            .args(["restart", what])
            .current_dir(&root)
            .status()
            .expect("stack.py");
        assert!(status.success(), "stack.py restart {what} failed");
    }

    /// Waits until GET /health answers 200 (after a runtime restart).
    pub async fn wait_healthy(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let ok = self
                .http
                .get(format!("{}/health", self.api))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ok {
                return;
            }
            assert!(started.elapsed() < limit, "API not healthy after {limit:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Invokes the worker directly, as the event source would, with one record
    /// per (message id, body, receive count); returns the failed message ids.
    pub async fn invoke_worker(&self, records: &[(&str, &str, u32)]) -> Vec<String> {
        let now = Utc::now().timestamp_millis().to_string();
        let records: Vec<Value> = records
            .iter()
            .map(|(id, body, count)| {
                json!({
                    "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                    "attributes": {"ApproximateReceiveCount": count.to_string(), "SentTimestamp": now},
                    "messageAttributes": {}, "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:direct", "awsRegion": "us-east-1"
                })
            })
            .collect();
        let resp = self
            .http
            .post(format!(
                "{}/2015-03-31/functions/worker/invocations",
                self.lambda
            ))
            .json(&json!({ "Records": records }))
            .send()
            .await
            .expect("invoke worker");
        assert_eq!(resp.status(), StatusCode::OK, "worker invocation failed");
        let v: Value = resp.json().await.expect("json");
        v["batchItemFailures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn send_raw(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage");
    }

    /// Waits for a message with this body in the dead-letter queue, deletes
    /// it, and returns its receive count on the source queue.
    pub async fn await_dead_letter(&self, body: &str, limit: Duration) -> u32 {
        let started = Instant::now();
        while started.elapsed() < limit {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("ReceiveMessage on the DLQ");
            for m in got.messages() {
                if m.body() == Some(body) {
                    let attrs: HashMap<_, _> = m.attributes().cloned().unwrap_or_default();
                    let count = attrs
                        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    self.sqs
                        .delete_message()
                        .queue_url(&self.dlq_url)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .expect("DeleteMessage");
                    return count;
                }
            }
        }
        panic!("{body:?} did not reach the dead-letter queue within {limit:?}");
    }
}

/// A local-stack part (`poller`, `poller-dlq`) stopped until this is dropped,
/// also when the test fails.
pub struct Paused<'a> {
    stack: &'a Stack,
    part: &'static str,
}

impl Stack {
    /// Stops `part` (`stack.py restart <part>-stop`) until the guard drops.
    pub fn pause(&self, part: &'static str) -> Paused<'_> {
        self.stack_restart(&format!("{part}-stop"));
        Paused { stack: self, part }
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.stack.stack_restart(self.part);
    }
}
