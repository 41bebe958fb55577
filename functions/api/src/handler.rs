//! The api function's routes: `POST /jobs/match` (accept a task, optionally
//! idempotent with `Idempotency-Key`), `POST /jobs/match/legacy` (match inline;
//! with `text`, through the worker) and `GET /health` (no token). Generic over
//! the ports so that unit tests run without AWS.

use std::time::{Duration, Instant};

use chrono::Utc;
use embed::tokenizer::TextBound;
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use shared::auth::{Caller, Verifier};
use shared::domain::{MatchRequest, MatchResult, QuerySource, Task, TaskError, TaskStatus};
use shared::error::{Error, FieldError, Result};
use shared::http;
use shared::idempotency;
use shared::ports::{
    IdempotentTaskStore, JobIndex, MatchCache, NoCache, NoModel, TaskQueue, TaskStore,
};
use shared::request::{check_content_type, parse_match_request};
use shared::service;

/// Everything a request needs, built once per container.
pub struct App<S, Q, J, C = NoCache> {
    pub store: S,
    pub queue: Q,
    pub index: J,
    /// Results and text vectors (DESIGN.md "Cache"), for the legacy call's
    /// inline matches. POST never reads it: accepting a task stays free of
    /// PostgreSQL.
    pub cache: C,
    pub verifier: Verifier,
    pub task_ttl_secs: i64,
    /// How long a legacy call with `text` waits for the worker.
    pub legacy_text_wait: Duration,
    /// The bound on a request's `text` in word pieces (DESIGN.md "Fair use").
    pub text_bound: TextBound,
    /// This instance's last `/health` answer (`HealthCache::default()`).
    pub health_cache: HealthCache,
}

/// Each health probe gets this long; the checks run concurrently, so
/// `/health` answers within about this time whatever hangs.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an instance answers `/health` from its last deep check. The
/// route needs no token, so without this every call (a monitor, a load
/// balancer, anyone on the internet) would reach PostgreSQL, DynamoDB and SQS;
/// with it an instance probes them at most once per window, whatever the
/// request rate. A failure shows within the window (plus HEALTH_TIMEOUT).
pub const HEALTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// The last deep health check of this instance (status and body), reused
/// until `ttl` has passed. Its clock is tokio's, which tests can pause and
/// advance.
pub struct HealthCache {
    ttl: Duration,
    last: std::sync::Mutex<Option<CachedHealth>>,
}

struct CachedHealth {
    at: tokio::time::Instant,
    status: StatusCode,
    body: serde_json::Value,
}

impl HealthCache {
    /// A cache that keeps an answer for `ttl` (zero: probe on every call).
    pub fn new(ttl: Duration) -> HealthCache {
        HealthCache {
            ttl,
            last: std::sync::Mutex::new(None),
        }
    }

    fn fresh(&self, now: tokio::time::Instant) -> Option<(StatusCode, serde_json::Value)> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|c| now.saturating_duration_since(c.at) < self.ttl)
            .map(|c| (c.status, c.body.clone()))
    }

    fn store(&self, at: tokio::time::Instant, status: StatusCode, body: &serde_json::Value) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedHealth {
            at,
            status,
            body: body.clone(),
        });
    }
}

impl Default for HealthCache {
    fn default() -> HealthCache {
        HealthCache::new(HEALTH_CACHE_TTL)
    }
}

impl<S: TaskStore + IdempotentTaskStore, Q: TaskQueue, J: JobIndex, C: MatchCache> App<S, Q, J, C> {
    /// Routes a request; every error becomes a problem+json response here.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        http::respond(
            match (req.method(), req.uri().path().trim_end_matches('/')) {
                (&Method::POST, "/jobs/match") => self.submit(&req).await,
                (&Method::POST, "/jobs/match/legacy") => self.legacy(&req).await,
                (&Method::GET, "/health") => Ok(self.health().await),
                (method, path) => Err(Error::NoRoute(format!("{method} {path}"))),
            },
        )
    }

    /// Authentication first, then the body: 413, 415, 400, 422 in that
    /// order; a `text` over the bound is a 422 too, before anything is stored.
    async fn caller_and_request(&self, req: &Request) -> Result<(Caller, MatchRequest)> {
        let caller = http::caller(&self.verifier, req.headers()).await?;
        let body = req.body().as_ref();
        if body.len() > shared::request::MAX_BODY_BYTES {
            return Err(Error::PayloadTooLarge(shared::request::MAX_BODY_BYTES));
        }
        let content_type = match req.headers().get(header::CONTENT_TYPE) {
            Some(v) => Some(v.to_str().map_err(|_| {
                Error::UnsupportedMediaType("the content type is not valid ASCII".into())
            })?),
            None => None,
        };
        check_content_type(content_type, body)?;
        let request = parse_match_request(body)?;
        self.text_bound.check(&request)?;
        Ok((caller, request))
    }

    async fn submit(&self, req: &Request) -> Result<Response<Body>> {
        let (caller, request) = self.caller_and_request(req).await?;
        let key = match req.headers().get(idempotency::HEADER) {
            Some(v) => Some(v.to_str().map_err(|_| {
                Error::Validation(vec![FieldError::new(
                    "Idempotency-Key",
                    "must be visible ASCII characters",
                )])
            })?),
            None => None,
        };
        let now = Utc::now();
        let (task, replayed) = match key {
            Some(key) => {
                let s = idempotency::submit(
                    &self.store,
                    &self.queue,
                    &caller.0,
                    key,
                    request,
                    now,
                    self.task_ttl_secs,
                )
                .await?;
                (s.task, s.replayed)
            }
            None => {
                let task = service::submit(
                    &self.store,
                    &self.queue,
                    &caller.0,
                    request,
                    now,
                    self.task_ttl_secs,
                )
                .await?;
                (task, false)
            }
        };
        let status_url = format!("/jobs/match/status/{}", task.task_id);
        let body = json!({
            "task_id": task.task_id,
            "status": task.status,
            "created_at": task.created_at,
            "expires_at": http::rfc3339_secs(task.expires_at),
            "links": {"status": status_url},
        });
        let mut resp: Response<Body> = http::json(StatusCode::ACCEPTED, &body);
        let headers = resp.headers_mut();
        if let Ok(location) = status_url.parse() {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        if replayed {
            headers.insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
        }
        Ok(resp)
    }

    async fn legacy(&self, req: &Request) -> Result<Response<Body>> {
        let (caller, request) = self.caller_and_request(req).await?;
        let result = match request.source() {
            // This function loads no model: the worker embeds the text, as
            // for the async path, so both rank alike.
            QuerySource::Text(_) => self.legacy_through_worker(&caller, request).await?,
            QuerySource::Embedding(_) | QuerySource::Profile => {
                service::run_match(&self.index, &NoModel, &self.cache, &caller.0, &request).await?
            }
        };
        Ok(http::json(
            StatusCode::OK,
            &json!({"status": "completed", "result": result}),
        ))
    }

    /// Submits the request as a task and waits for the worker to finish it.
    async fn legacy_through_worker(
        &self,
        caller: &Caller,
        request: MatchRequest,
    ) -> Result<MatchResult> {
        let task = service::submit(
            &self.store,
            &self.queue,
            &caller.0,
            request,
            Utc::now(),
            self.task_ttl_secs,
        )
        .await?;
        let until = Instant::now() + self.legacy_text_wait;
        let mut pause = Duration::from_millis(20);
        loop {
            tokio::time::sleep(pause).await;
            let found = self.store.get(&task.task_id, Utc::now()).await?;
            match found {
                Some(Task {
                    status: TaskStatus::Completed,
                    result: Some(result),
                    ..
                }) => return Ok(result),
                Some(Task {
                    status: TaskStatus::Failed,
                    error,
                    ..
                }) => return Err(legacy_failure(&task.task_id, error)),
                _ if Instant::now() >= until => {
                    return Err(Error::StillRunning {
                        task_id: task.task_id,
                        waited_ms: u64::try_from(self.legacy_text_wait.as_millis())
                            .unwrap_or(u64::MAX),
                    })
                }
                _ => pause = (pause * 2).min(Duration::from_millis(200)),
            }
        }
    }

    /// The last deep check while it is younger than the cache's window, a
    /// new one otherwise; the body is the same either way.
    async fn health(&self) -> Response<Body> {
        if let Some((status, body)) = self.health_cache.fresh(tokio::time::Instant::now()) {
            return http::json(status, &body);
        }
        // The window starts when the probes start: their answers are at most
        // this old.
        let started = tokio::time::Instant::now();
        let (status, body) = self.deep_health().await;
        self.health_cache.store(started, status, &body);
        http::json(status, &body)
    }

    /// Checks each dependency concurrently, each within its own timeout.
    async fn deep_health(&self) -> (StatusCode, serde_json::Value) {
        let (postgres, dynamodb, sqs) = tokio::join!(
            check(self.index.pgvector_version()),
            check(self.store.ping()),
            check(self.queue.ping()),
        );
        let timeout_ms = HEALTH_TIMEOUT.as_millis() as u64;
        let component = |(outcome, ms): &(Result<Option<String>, ProbeFailure>, f64)| match outcome
        {
            Ok(pgvector) => {
                let mut c = json!({"status": "ok", "latency_ms": ms, "timeout_ms": timeout_ms});
                if let Some(v) = pgvector {
                    c["pgvector"] = json!(v);
                }
                c
            }
            Err(e) => json!({
                "status": "down",
                "latency_ms": ms,
                "timeout_ms": timeout_ms,
                "error": health_error(e),
            }),
        };
        let failing: Vec<&str> = [
            ("postgres", &postgres.0),
            ("dynamodb", &dynamodb.0),
            ("sqs", &sqs.0),
        ]
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect();
        let healthy = failing.is_empty();
        let (postgres, dynamodb, sqs) =
            (component(&postgres), component(&dynamodb), component(&sqs));
        let body = json!({
            "status": if healthy { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "failing": failing,
            "components": {
                "postgres": postgres,
                "dynamodb": dynamodb,
                "sqs": sqs,
            },
        });
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body)
    }
}

/// The legacy call's answer for its task's failure: 503 when a retry may
/// pass (a dependency was down on every attempt), 500 otherwise.
fn legacy_failure(task_id: &str, error: Option<TaskError>) -> Error {
    match error {
        Some(e) if e.may_pass_on_retry() => Error::Unavailable {
            component: "worker",
            message: format!("task {task_id} failed: {}", e.message),
        },
        e => Error::Internal(format!(
            "task {task_id} failed: {}",
            e.map_or_else(String::new, |e| format!("{}: {}", e.code, e.message))
        )),
    }
}

/// Why a health probe reports its component down.
enum ProbeFailure {
    /// No answer within `HEALTH_TIMEOUT`.
    TimedOut,
    Failed(Error),
}

/// Runs one health probe within the timeout; returns its outcome and latency.
async fn check<T: HealthDetail>(
    probe: impl std::future::Future<Output = Result<T>>,
) -> (Result<Option<String>, ProbeFailure>, f64) {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
        Ok(r) => r.map(HealthDetail::detail).map_err(ProbeFailure::Failed),
        Err(_) => Err(ProbeFailure::TimedOut),
    };
    let ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    (outcome, ms)
}

/// The reason a component is down, without internals (addresses, messages).
fn health_error(failure: &ProbeFailure) -> String {
    match failure {
        ProbeFailure::TimedOut => format!("no answer within {} ms", HEALTH_TIMEOUT.as_millis()),
        ProbeFailure::Failed(Error::Unavailable { .. }) => "unavailable".into(),
        ProbeFailure::Failed(other) => other.code().replace('_', " "),
    }
}

/// What a health probe reports besides "ok".
trait HealthDetail {
    fn detail(self) -> Option<String>;
}
impl HealthDetail for () {
    fn detail(self) -> Option<String> {
        None
    }
}
impl HealthDetail for String {
    fn detail(self) -> Option<String> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::adapters::memory::{MemoryJobIndex, MemoryQueue, MemoryTaskStore};
    use shared::domain::TaskStatus;
    use shared::domain::DEAD_LETTERED;
    use shared::error::UNAVAILABLE_CODE;
    use shared::ports::TaskWriter;

    const SECRET: &[u8] = b"unit-secret";

    fn app(queue_down: bool) -> App<MemoryTaskStore, MemoryQueue, MemoryJobIndex> {
        App {
            store: MemoryTaskStore::default(),
            queue: MemoryQueue {
                down: queue_down,
                ..Default::default()
            },
            index: MemoryJobIndex::default(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: text_bound(),
            health_cache: HealthCache::default(),
            cache: NoCache,
        }
    }

    fn request(method: &str, path: &str, body: &str, token: Option<&str>) -> Request {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        request_with(method, path, body.as_bytes(), &headers)
    }

    fn request_with(method: &str, path: &str, body: &[u8], headers: &[(&str, String)]) -> Request {
        let mut b = lambda_http::http::Request::builder()
            .method(method)
            .uri(path);
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        b.body(Body::from(body.to_vec())).expect("request")
    }

    fn assert_problem(resp: &Response<Body>, status: u16, kind: &str) -> serde_json::Value {
        assert_eq!(resp.status(), status, "{:?}", resp.body());
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body = json_body(resp);
        assert_eq!(body["status"], status);
        assert_eq!(body["type"], kind);
        assert!(body["title"].is_string() && body["detail"].is_string());
        body
    }

    fn token(sub: &str) -> String {
        shared::auth::mint_hs256(SECRET, sub, 60).expect("token")
    }

    /// The deployed bound: the bundled tokenizer, 2,048 word pieces.
    fn text_bound() -> TextBound {
        TextBound::bundled(embed::tokenizer::DEFAULT_MAX_TEXT_WORD_PIECES)
            .expect("the bundled tokenizer")
    }

    #[tokio::test]
    async fn a_text_over_the_bound_is_422_naming_text_on_both_routes_and_nothing_is_stored() {
        let app = app(false);
        // 20,000 characters are allowed, but each `!` is a word piece.
        let bangs = serde_json::json!({ "text": "!".repeat(20_000) }).to_string();
        for path in ["/jobs/match", "/jobs/match/legacy"] {
            let resp = app
                .handle(request("POST", path, &bangs, Some(&token("alice"))))
                .await;
            let b = assert_problem(&resp, 422, "/problems/invalid-request");
            assert_eq!(b["errors"][0]["field"], "text", "{b}");
            let message = b["errors"][0]["message"].as_str().expect("message");
            assert!(message.contains("20000 word pieces"), "{message}");
            assert!(message.contains("2048"), "{message}");
        }
        assert!(app.store.tasks.lock().expect("lock").is_empty());
        assert!(app.queue.sent.lock().expect("lock").is_empty());

        // At the bound exactly: accepted. "a" is one word piece; with the
        // spaces, 2,048 of them are 2,048 pieces.
        let at_bound = serde_json::json!({ "text": vec!["a"; 2_048].join(" ") }).to_string();
        let resp = app
            .handle(request(
                "POST",
                "/jobs/match",
                &at_bound,
                Some(&token("alice")),
            ))
            .await;
        assert_eq!(resp.status(), 202, "{:?}", resp.body());
        let over = serde_json::json!({ "text": vec!["a"; 2_049].join(" ") }).to_string();
        let resp = app
            .handle(request("POST", "/jobs/match", &over, Some(&token("alice"))))
            .await;
        assert_problem(&resp, 422, "/problems/invalid-request");
        assert_eq!(app.queue.sent.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn the_queue_message_carries_the_callers_group() {
        let app = app(false);
        for sub in ["alice", "bob", "alice"] {
            let resp = app
                .handle(request("POST", "/jobs/match", "{}", Some(&token(sub))))
                .await;
            assert_eq!(resp.status(), 202);
        }
        let groups: Vec<Option<String>> = app
            .queue
            .routing
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.group.clone())
            .collect();
        assert_eq!(groups[0], groups[2], "one caller, one group");
        assert_ne!(groups[0], groups[1]);
        let alice = groups[0].as_deref().expect("a group");
        assert_eq!(alice.len(), 32);
        assert!(
            !alice.contains("alice"),
            "no identity in the queue's metadata"
        );
    }

    fn json_body(resp: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(resp.body().as_ref()).expect("json body")
    }

    #[tokio::test]
    async fn submit_writes_task_and_message_and_answers_202() {
        let app = app(false);
        let resp = app
            .handle(request(
                "POST",
                "/jobs/match",
                r#"{"limit":5}"#,
                Some(&token("alice")),
            ))
            .await;
        assert_eq!(resp.status(), 202);
        let body = json_body(&resp);
        let id = body["task_id"].as_str().expect("task id").to_owned();
        assert_eq!(
            resp.headers()["location"],
            format!("/jobs/match/status/{id}")
        );
        assert_eq!(resp.headers()["retry-after"], "1");
        assert_eq!(body["status"], "pending");
        assert_eq!(body["links"]["status"], format!("/jobs/match/status/{id}"));
        let tasks = app.store.tasks.lock().expect("lock");
        let task = &tasks[&id];
        assert_eq!(task.owner, "alice");
        assert_eq!(task.request.limit, 5);
        assert_eq!(task.status, TaskStatus::Pending);
        assert_eq!(app.queue.sent.lock().expect("lock")[0].task_id, id);
    }

    #[tokio::test]
    async fn unqueued_task_is_closed_and_answer_is_503() {
        let app = app(true);
        let resp = app
            .handle(request("POST", "/jobs/match", "{}", Some(&token("alice"))))
            .await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let tasks = app.store.tasks.lock().expect("lock");
        assert!(tasks.values().all(|t| t.status == TaskStatus::Failed));
    }

    #[tokio::test]
    async fn malformed_json_is_400_and_nothing_is_written() {
        let app = app(false);
        let resp = app
            .handle(request(
                "POST",
                "/jobs/match",
                "{not json",
                Some(&token("alice")),
            ))
            .await;
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        assert_eq!(json_body(&resp)["status"], 400);
        assert!(app.store.tasks.lock().expect("lock").is_empty());
        assert!(app.queue.sent.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn missing_or_bad_token_is_401_with_challenge() {
        let app = app(false);
        let resp = app.handle(request("POST", "/jobs/match", "{}", None)).await;
        assert_eq!(resp.status(), 401);
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Bearer"));
        let resp = app
            .handle(request("POST", "/jobs/match", "{}", Some("nope")))
            .await;
        assert_eq!(resp.status(), 401);
        assert_eq!(json_body(&resp)["detail"], "malformed token");
    }

    /// Plays the worker: completes the first pending task it finds.
    async fn complete_when_queued(app: &App<MemoryTaskStore, MemoryQueue, MemoryJobIndex>) {
        finish_when_queued(app, None).await;
    }

    /// Plays the worker: completes the first pending task it finds, or
    /// fails it with `error`.
    async fn finish_when_queued(
        app: &App<MemoryTaskStore, MemoryQueue, MemoryJobIndex>,
        error: Option<TaskError>,
    ) {
        use shared::ports::Fence;
        for _ in 0..100 {
            let queued = app.queue.sent.lock().expect("lock").first().cloned();
            if let Some(message) = queued {
                let claimed = app
                    .store
                    .claim(&message.task_id, Utc::now(), i64::MAX)
                    .await
                    .expect("claim");
                assert!(matches!(claimed, shared::ports::Claim::Claimed(_)));
                if let Some(error) = error {
                    app.store
                        .fail(&message.task_id, Fence::Attempt(1), &error, Utc::now())
                        .await
                        .expect("fail");
                    return;
                }
                let result = shared::domain::MatchResult {
                    matches: vec![],
                    count: 0,
                    query_ms: 1.5,
                    cached: false,
                    computed_at: Some(shared::domain::Timestamp::now()),
                };
                app.store
                    .complete(&message.task_id, Fence::Attempt(1), &result, Utc::now())
                    .await
                    .expect("complete");
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("nothing was queued");
    }

    #[tokio::test]
    async fn legacy_text_is_answered_by_the_worker_and_gives_up_with_the_task_id() {
        let app = app(false);
        let body = r#"{"text":"ward nurse","limit":3}"#;
        let call = app.handle(request(
            "POST",
            "/jobs/match/legacy",
            body,
            Some(&token("alice")),
        ));
        let (resp, ()) = tokio::join!(call, complete_when_queued(&app));
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
        let answer = json_body(&resp);
        assert_eq!(answer["status"], "completed");
        assert_eq!(answer["result"]["query_ms"], 1.5);
        // The task carries the text for the worker; the api embedded nothing.
        let tasks = app.store.tasks.lock().expect("lock").clone();
        let task = tasks.values().next().expect("task");
        assert_eq!(task.request.text.as_deref(), Some("ward nurse"));

        // Nobody runs the next one: 503 naming the task, which goes on.
        let resp = app
            .handle(request(
                "POST",
                "/jobs/match/legacy",
                body,
                Some(&token("alice")),
            ))
            .await;
        let problem = assert_problem(&resp, 503, "/problems/still-running");
        let detail = problem["detail"].as_str().expect("detail");
        let pending: Vec<String> = app
            .store
            .tasks
            .lock()
            .expect("lock")
            .values()
            .filter(|t| t.status == TaskStatus::Pending)
            .map(|t| t.task_id.clone())
            .collect();
        assert_eq!(pending.len(), 1);
        assert!(detail.contains(&pending[0]), "{detail}");
    }

    #[tokio::test]
    async fn a_legacy_text_whose_task_failed_is_503_only_when_a_retry_may_pass() {
        for (code, status) in [
            (UNAVAILABLE_CODE, 503),
            (DEAD_LETTERED, 500),
            ("internal", 500),
        ] {
            let app = app(false);
            let call = app.handle(request(
                "POST",
                "/jobs/match/legacy",
                r#"{"text":"ward nurse","limit":3}"#,
                Some(&token("alice")),
            ));
            let error = TaskError {
                code: code.into(),
                message: "postgres was unavailable on every attempt".into(),
            };
            let (resp, ()) = tokio::join!(call, finish_when_queued(&app, Some(error)));
            assert_eq!(resp.status(), status, "{code}");
            assert_eq!(
                resp.headers()["content-type"],
                "application/problem+json",
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn legacy_without_profile_is_422() {
        let app = app(false);
        let resp = app
            .handle(request(
                "POST",
                "/jobs/match/legacy",
                "{}",
                Some(&token("nobody")),
            ))
            .await;
        assert_eq!(resp.status(), 422);
        assert_eq!(json_body(&resp)["type"], "/problems/profile-not-found");
    }

    #[tokio::test]
    async fn bad_bodies_get_413_415_400_and_422_on_both_routes() {
        let app = app(false);
        let auth = ("authorization", format!("Bearer {}", token("alice")));
        let json = ("content-type", "application/json".to_string());
        for path in ["/jobs/match", "/jobs/match/legacy"] {
            let big = vec![b' '; shared::request::MAX_BODY_BYTES + 1];
            let resp = app
                .handle(request_with(
                    "POST",
                    path,
                    &big,
                    &[auth.clone(), json.clone()],
                ))
                .await;
            assert_problem(&resp, 413, "/problems/payload-too-large");

            for ct in [
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/xml",
            ] {
                let resp = app
                    .handle(request_with(
                        "POST",
                        path,
                        b"{}",
                        &[auth.clone(), ("content-type", ct.to_string())],
                    ))
                    .await;
                let b = assert_problem(&resp, 415, "/problems/unsupported-media-type");
                assert!(b["detail"].as_str().expect("detail").contains(ct), "{b}");
            }
            let resp = app
                .handle(request_with(
                    "POST",
                    path,
                    b"{}",
                    std::slice::from_ref(&auth),
                ))
                .await;
            assert_problem(&resp, 415, "/problems/unsupported-media-type");

            for bad in ["{", "[]", "\"x\"", "null"] {
                let resp = app
                    .handle(request("POST", path, bad, Some(&token("alice"))))
                    .await;
                assert_problem(&resp, 400, "/problems/malformed-json");
            }

            let resp = app
                .handle(request(
                    "POST",
                    path,
                    r#"{"limt":5,"limit":0,"filters":{"employment_types":["gig"],"min_salary":-5}}"#,
                    Some(&token("alice")),
                ))
                .await;
            let b = assert_problem(&resp, 422, "/problems/invalid-request");
            let fields: Vec<&str> = b["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .map(|e| e["field"].as_str().expect("field"))
                .collect();
            assert_eq!(
                fields,
                [
                    "limt",
                    "filters.employment_types",
                    "filters.min_salary",
                    "limit"
                ]
            );
            assert!(b["errors"][0]["message"]
                .as_str()
                .expect("message")
                .contains("`limt`"));
        }
        // Authentication comes first: a bad body without a token is a 401.
        let resp = app
            .handle(request_with(
                "POST",
                "/jobs/match",
                b"{",
                std::slice::from_ref(&json),
            ))
            .await;
        assert_eq!(resp.status(), 401);
        assert!(app.store.tasks.lock().expect("lock").is_empty());
        assert!(app.queue.sent.lock().expect("lock").is_empty());
    }

    fn keyed(body: &str, sub: &str, key: &str) -> Request {
        request_with(
            "POST",
            "/jobs/match",
            body.as_bytes(),
            &[
                ("content-type", "application/json".to_string()),
                ("authorization", format!("Bearer {}", token(sub))),
                ("idempotency-key", key.to_string()),
            ],
        )
    }

    #[tokio::test]
    async fn idempotency_key_replays_conflicts_and_is_per_caller() {
        let app = app(false);
        let first = app
            .handle(keyed(
                r#"{"limit":5,"skills":["Rust"]}"#,
                "alice",
                "order-1",
            ))
            .await;
        assert_eq!(first.status(), 202);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let id = json_body(&first)["task_id"].clone();

        // Same body up to normalisation: the same task, 202 again.
        let again = app
            .handle(keyed(
                r#"{"skills":["rust "],"limit":5}"#,
                "alice",
                "order-1",
            ))
            .await;
        assert_eq!(again.status(), 202);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.headers()["content-type"], "application/json");
        let body = json_body(&again);
        assert_eq!(body["task_id"], id);
        assert_eq!(
            again.headers()["location"],
            format!("/jobs/match/status/{}", id.as_str().expect("id"))
        );

        let other = app
            .handle(keyed(r#"{"limit":6}"#, "alice", "order-1"))
            .await;
        let b = assert_problem(&other, 422, "/problems/idempotency-key-reused");
        assert!(b["detail"]
            .as_str()
            .expect("detail")
            .contains("Idempotency-Key"));

        let bob = app
            .handle(keyed(r#"{"limit":5,"skills":["Rust"]}"#, "bob", "order-1"))
            .await;
        assert_eq!(bob.status(), 202);
        assert_ne!(json_body(&bob)["task_id"], id);

        assert_eq!(app.store.tasks.lock().expect("lock").len(), 2);
        assert_eq!(app.queue.sent.lock().expect("lock").len(), 2);

        for bad in ["", &"k".repeat(256)] {
            let resp = app.handle(keyed("{}", "alice", bad)).await;
            let b = assert_problem(&resp, 422, "/problems/invalid-request");
            assert_eq!(b["errors"][0]["field"], "Idempotency-Key");
        }
        let resp = app.handle(keyed("{}", "alice", &"k".repeat(255))).await;
        assert_eq!(resp.status(), 202);
    }

    /// A probe that never answers.
    struct Hangs;
    impl TaskQueue for Hangs {
        async fn send(
            &self,
            _: &shared::domain::TaskMessage,
            _: &shared::domain::Routing,
        ) -> Result<()> {
            std::future::pending().await
        }
        async fn ping(&self) -> Result<()> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn health_never_hangs_and_names_the_component_that_does() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: Hangs,
            index: MemoryJobIndex::default(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: text_bound(),
            health_cache: HealthCache::default(),
            cache: NoCache,
        };
        let started = tokio::time::Instant::now();
        let resp = app.handle(request_with("GET", "/health", b"", &[])).await;
        // Virtual time: the answer came at the probe timeout, not later.
        assert_eq!(started.elapsed(), HEALTH_TIMEOUT);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = json_body(&resp);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["failing"], serde_json::json!(["sqs"]));
        assert_eq!(body["components"]["sqs"]["status"], "down");
        assert_eq!(
            body["components"]["sqs"]["error"],
            "no answer within 2000 ms"
        );
        assert_eq!(body["components"]["sqs"]["timeout_ms"], 2000);
        assert_eq!(body["components"]["postgres"]["status"], "ok");
        assert_eq!(body["components"]["dynamodb"]["status"], "ok");
    }

    /// A queue whose every call fails at once.
    struct Down;
    impl TaskQueue for Down {
        async fn send(
            &self,
            _: &shared::domain::TaskMessage,
            _: &shared::domain::Routing,
        ) -> Result<()> {
            Err(Error::unavailable("sqs", "connection refused at 10.0.0.7"))
        }
        async fn ping(&self) -> Result<()> {
            Err(Error::unavailable("sqs", "connection refused at 10.0.0.7"))
        }
    }

    #[tokio::test]
    async fn health_is_503_naming_a_failing_component() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: Down,
            index: MemoryJobIndex::default(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: text_bound(),
            health_cache: HealthCache::default(),
            cache: NoCache,
        };
        let resp = app.handle(request_with("GET", "/health", b"", &[])).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = json_body(&resp);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["failing"], serde_json::json!(["sqs"]));
        assert_eq!(body["components"]["sqs"]["status"], "down");
        assert_eq!(body["components"]["sqs"]["error"], "unavailable");
        // Internals (addresses) stay in the log.
        assert!(!String::from_utf8_lossy(resp.body().as_ref()).contains("10.0.0.7"));
    }

    #[tokio::test]
    async fn health_reports_each_component() {
        let resp = app(false).handle(request("GET", "/health", "", None)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = json_body(&resp);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["failing"], serde_json::json!([]));
        assert_eq!(body["components"]["postgres"]["pgvector"], "memory");
        for c in ["postgres", "dynamodb", "sqs"] {
            assert_eq!(body["components"][c]["status"], "ok");
            assert_eq!(body["components"][c]["timeout_ms"], 2000);
            assert!(body["components"][c]["latency_ms"].is_number());
        }
    }

    /// A queue that counts its health probes.
    #[derive(Default)]
    struct CountingQueue {
        pings: std::sync::atomic::AtomicUsize,
    }
    impl TaskQueue for CountingQueue {
        async fn send(
            &self,
            _: &shared::domain::TaskMessage,
            _: &shared::domain::Routing,
        ) -> Result<()> {
            Ok(())
        }
        async fn ping(&self) -> Result<()> {
            self.pings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    // Paused virtual time: the clock moves only by `advance`.
    #[tokio::test(start_paused = true)]
    async fn health_probes_once_per_window_and_again_after_it() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: CountingQueue::default(),
            index: MemoryJobIndex::default(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: text_bound(),
            health_cache: HealthCache::default(),
            cache: NoCache,
        };
        let pings = || app.queue.pings.load(std::sync::atomic::Ordering::SeqCst);
        let health = || app.handle(request_with("GET", "/health", b"", &[]));

        let first = health().await;
        assert_eq!(pings(), 1);
        tokio::time::advance(HEALTH_CACHE_TTL - Duration::from_millis(1)).await;
        let second = health().await;
        assert_eq!(pings(), 1, "a call within the window probes nothing");
        // The same answer, byte for byte, with the same headers.
        assert_eq!(second.status(), first.status());
        assert_eq!(second.headers(), first.headers());
        assert_eq!(second.body().as_ref(), first.body().as_ref());
        assert_eq!(json_body(&second)["status"], "ok");

        tokio::time::advance(Duration::from_millis(1)).await;
        let third = health().await;
        assert_eq!(pings(), 2, "the window is over: probe again");
        assert_eq!(third.status(), 200);
        let _ = health().await;
        assert_eq!(pings(), 2, "and the new answer starts a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_degraded_answer_is_kept_for_the_window_too() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: Down,
            index: MemoryJobIndex::default(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: text_bound(),
            health_cache: HealthCache::default(),
            cache: NoCache,
        };
        let first = app.handle(request_with("GET", "/health", b"", &[])).await;
        let second = app.handle(request_with("GET", "/health", b"", &[])).await;
        assert_eq!(first.status(), 503);
        assert_eq!(second.status(), 503);
        assert_eq!(second.body().as_ref(), first.body().as_ref());
    }

    #[tokio::test]
    async fn a_zero_window_probes_on_every_call() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: CountingQueue::default(),
            index: MemoryJobIndex::default(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: text_bound(),
            health_cache: HealthCache::new(Duration::ZERO),
            cache: NoCache,
        };
        for _ in 0..3 {
            let resp = app.handle(request_with("GET", "/health", b"", &[])).await;
            assert_eq!(resp.status(), 200);
        }
        assert_eq!(app.queue.pings.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unknown_route_is_404_problem() {
        let resp = app(false).handle(request("GET", "/nope", "", None)).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
}
