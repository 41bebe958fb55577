//! The api function's routes: `POST /jobs/match` (accept a task, optionally
//! idempotent with `Idempotency-Key`), `POST /jobs/match/legacy` (match inline;
//! with `text`, through the worker), `POST /jobs/match/{task_id}/cancel` (the
//! owner ends a pending or processing task) and `GET /health` (no token; its
//! checks are in `crate::health`). The two match routes take from the
//! caller's quota. Generic over the ports so that unit tests run without AWS.

use std::time::{Duration, Instant};

use chrono::Utc;
use embed::tokenizer::TextBound;
use lambda_http::http::{header, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use shared::auth::{Caller, Verifier};
use shared::callback::{CallbackPolicy, Refused};
use shared::domain::{MatchRequest, MatchResult, QuerySource, Task, TaskError, TaskStatus};
use shared::error::{Error, FieldError, Result};
use shared::http;
use shared::idempotency;
use shared::ports::{
    Cancel, IdempotentTaskStore, JobIndex, MatchCache, NoCache, NoModel, QuotaStore, TaskCanceller,
    TaskQueue, TaskStore,
};
use shared::request::{check_content_type, parse_match_request};
use shared::service;

use crate::health::HealthCache;

/// Everything a request needs, built once per container.
pub struct App<S, Q, J, R, C = NoCache> {
    pub store: S,
    pub queue: Q,
    pub index: J,
    /// The callers' buckets (DESIGN.md "Fair use"), taken from before any
    /// write of a match request.
    pub quota: R,
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
    /// Which `callback.url`s a request may name (DESIGN.md "Cancel and
    /// completion callbacks"); the delivery checks them again.
    pub callbacks: CallbackPolicy,
}

/// How long the submit-time check of a callback's host waits for DNS; an
/// answer later than this leaves the check to the delivery.
const CALLBACK_RESOLVE_TIMEOUT: Duration = Duration::from_millis(500);

/// The api's routes (template.yaml's `HttpApi` events of `ApiFunction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Submit,
    Legacy,
    Cancel,
    Health,
}

impl Route {
    const ALL: [Route; 4] = [Route::Submit, Route::Legacy, Route::Cancel, Route::Health];

    /// The HttpApi route key: the method and the path, `{task_id}` for the
    /// one path parameter.
    fn key(self) -> &'static str {
        match self {
            Route::Submit => "POST /jobs/match",
            Route::Legacy => "POST /jobs/match/legacy",
            Route::Cancel => "POST /jobs/match/{task_id}/cancel",
            Route::Health => "GET /health",
        }
    }

    /// Whether `path` is this route's: the same segments, `{task_id}` one
    /// non-empty segment.
    fn matches(self, method: &str, path: &str) -> bool {
        let Some((want_method, want_path)) = self.key().split_once(' ') else {
            return false;
        };
        let (want, got): (Vec<&str>, Vec<&str>) =
            (want_path.split('/').collect(), path.split('/').collect());
        method == want_method
            && want.len() == got.len()
            && want
                .iter()
                .zip(&got)
                .all(|(w, g)| w == g || (*w == "{task_id}" && !g.is_empty()))
    }

    /// The route a request is for: its method and path exactly (no
    /// trailing slash, no other spelling), and, behind API Gateway, the
    /// route the gateway matched. Route throttles are per route key
    /// (`RouteSettings`): a spelling that reached the `$default` route was
    /// counted against its limits, not the route's, and serving it would
    /// open the legacy route to `$default`'s rate. It is a 404 instead.
    fn of(req: &Request) -> Option<Route> {
        let (method, path) = (req.method().as_str(), req.uri().path());
        let route = Route::ALL.into_iter().find(|r| r.matches(method, path))?;
        match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => {
                (ctx.route_key.as_deref() == Some(route.key())).then_some(route)
            }
            // Invoked directly (tests, `cargo lambda invoke`): no gateway limits to keep.
            _ => Some(route),
        }
    }
}

impl<S, Q, J, R, C> App<S, Q, J, R, C>
where
    S: TaskStore + IdempotentTaskStore + TaskCanceller,
    Q: TaskQueue,
    J: JobIndex,
    R: QuotaStore,
    C: MatchCache,
{
    /// Routes a request; every error becomes a problem+json response here.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        http::respond(match Route::of(&req) {
            Some(Route::Submit) => self.submit(&req).await,
            Some(Route::Legacy) => self.legacy(&req).await,
            Some(Route::Cancel) => self.cancel(&req).await,
            Some(Route::Health) => Ok(self.health().await),
            None => Err(Error::NoRoute(format!(
                "{} {}",
                req.method(),
                req.uri().path()
            ))),
        })
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
        self.check_callback(&request).await?;
        Ok((caller, request))
    }

    /// A `callback.url` this deployment would never call is a 422 now: its
    /// scheme, an address literal, or a name that resolves to a forbidden
    /// address. A name that does not resolve in time is left to the
    /// delivery, which checks every URL again anyway.
    async fn check_callback(&self, request: &MatchRequest) -> Result<()> {
        let Some(callback) = &request.callback else {
            return Ok(());
        };
        let refuse =
            |message: String| Error::Validation(vec![FieldError::new("callback.url", message)]);
        let url = self.callbacks.check(&callback.url).map_err(refuse)?;
        match self
            .callbacks
            .check_resolved(&url, CALLBACK_RESOLVE_TIMEOUT)
            .await
        {
            Ok(()) => Ok(()),
            Err(Refused::Forbidden(why)) => Err(refuse(why)),
            Err(Refused::Unresolved(why)) => {
                tracing::info!(reason = %why, "callback host not resolved at submit; checked at delivery");
                Ok(())
            }
        }
    }

    /// `POST /jobs/match/{task_id}/cancel`: the owner's pending or
    /// processing task ends `cancelled` (200 with it); an ended one is a 409
    /// and stays; another caller's or an unknown one is a 404. The body is
    /// not read.
    async fn cancel(&self, req: &Request) -> Result<Response<Body>> {
        let caller = http::caller(&self.verifier, req.headers()).await?;
        let task_id = cancel_task_id(req.uri().path())
            .ok_or_else(|| Error::NotFound("no such task".into()))?;
        match self.store.cancel(task_id, &caller.0, Utc::now()).await? {
            Cancel::Cancelled(task) => {
                shared::telemetry::Counter::TasksCancelled.increment();
                Ok(http::json(StatusCode::OK, &http::TaskBody::status(&task)))
            }
            Cancel::Finished(task) => Err(Error::TaskFinished {
                task_id: task.task_id.clone(),
                status: task.status.as_str(),
            }),
            Cancel::Missing => Err(Error::NotFound("no such task".into())),
        }
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
        // A replay that needs no write is answered before the quota: it
        // costs a read, no work (docs/api.md "Quota").
        let replay = match key {
            Some(key) => idempotency::replay(&self.store, &caller.0, key, &request, now).await?,
            None => None,
        };
        let limit = match replay {
            Some(_) => None,
            None => Some(self.quota.take(&caller.0, now).await?),
        };
        let (task, replayed) = match (replay, key) {
            (Some(s), _) => (s.task, s.replayed),
            (None, Some(key)) => {
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
            (None, None) => {
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
        let mut resp: Response<Body> =
            http::json(StatusCode::ACCEPTED, &http::TaskBody::accepted(&task));
        let headers = resp.headers_mut();
        if let Ok(location) = http::status_path(&task.task_id).parse() {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        if replayed {
            headers.insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
        }
        if let Some(limit) = limit {
            http::add_rate_limit(&mut resp, &limit);
        }
        Ok(resp)
    }

    async fn legacy(&self, req: &Request) -> Result<Response<Body>> {
        let (caller, request) = self.caller_and_request(req).await?;
        let limit = self.quota.take(&caller.0, Utc::now()).await?;
        let result = match request.source() {
            // This function loads no model: the worker embeds the text, as
            // for the async path, so both rank alike.
            QuerySource::Text(_) => self.legacy_through_worker(&caller, request).await?,
            QuerySource::Embedding(_) | QuerySource::Profile => {
                service::run_match(
                    &self.index,
                    &NoModel,
                    &self.cache,
                    &caller.0,
                    &request,
                    &service::Always,
                )
                .await?
            }
        };
        let mut resp = http::json(
            StatusCode::OK,
            &json!({"status": "completed", "result": result}),
        );
        http::add_rate_limit(&mut resp, &limit);
        Ok(resp)
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
                Some(Task {
                    status: TaskStatus::Cancelled,
                    ..
                }) => return Err(Error::Cancelled(task.task_id)),
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
}

/// The task id of a cancel's path, `/jobs/match/{task_id}/cancel`
/// (nothing to percent-decode: a task id is letters, digits and dashes).
fn cancel_task_id(path: &str) -> Option<&str> {
    path.strip_prefix("/jobs/match/")?
        .strip_suffix("/cancel")
        .filter(|id| shared::domain::is_task_id(id))
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use shared::adapters::memory::{MemoryJobIndex, MemoryQueue, MemoryQuota, MemoryTaskStore};
    use shared::domain::TaskStatus;
    use shared::error::ErrorCode;
    use shared::ports::{Fence, TaskWriter};

    pub(crate) const SECRET: &[u8] = b"unit-secret";

    pub(crate) type TestApp = App<MemoryTaskStore, MemoryQueue, MemoryJobIndex, MemoryQuota>;

    /// A bucket no unit test but the quota's own empties: 1,000 at once.
    pub(crate) fn quota() -> MemoryQuota {
        MemoryQuota::new(shared::quota::Policy::new(1.0, 1_000).expect("policy"))
    }

    pub(crate) fn app(queue_down: bool) -> TestApp {
        App {
            store: MemoryTaskStore::default(),
            queue: MemoryQueue {
                down: queue_down,
                ..Default::default()
            },
            index: MemoryJobIndex::default(),
            quota: quota(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: text_bound(),
            health_cache: HealthCache::default(),
            callbacks: shared::callback::CallbackPolicy::new(""),
            cache: NoCache,
        }
    }

    pub(crate) fn request(method: &str, path: &str, body: &str, token: Option<&str>) -> Request {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        request_with(method, path, body.as_bytes(), &headers)
    }

    pub(crate) fn request_with(
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Request {
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
    pub(crate) fn text_bound() -> TextBound {
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

    pub(crate) fn json_body(resp: &Response<Body>) -> serde_json::Value {
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

    async fn submitted(app: &TestApp, sub: &str, body: &str) -> String {
        let resp = app
            .handle(request("POST", "/jobs/match", body, Some(&token(sub))))
            .await;
        assert_eq!(resp.status(), 202, "{:?}", resp.body());
        json_body(&resp)["task_id"]
            .as_str()
            .expect("task id")
            .to_owned()
    }

    /// The worker's result write of attempt 1 (an empty result): whether it landed.
    async fn complete_first_attempt(app: &TestApp, id: &str) -> bool {
        let result = MatchResult {
            matches: vec![],
            count: 0,
            query_ms: 1.0,
            cached: false,
            computed_at: None,
        };
        app.store
            .complete(id, Fence::Attempt(1), &result, Utc::now())
            .await
            .expect("complete")
    }

    fn cancel(id: &str, sub: &str) -> Request {
        request(
            "POST",
            &format!("/jobs/match/{id}/cancel"),
            "",
            Some(&token(sub)),
        )
    }

    #[tokio::test]
    async fn the_owner_cancels_a_pending_or_processing_task_and_a_late_result_is_dropped() {
        let app = app(false);
        let pending = submitted(&app, "alice", r#"{"text":"rust engineer"}"#).await;
        let resp = app.handle(cancel(&pending, "alice")).await;
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
        let body = json_body(&resp);
        assert_eq!(body["task_id"], pending.as_str());
        assert_eq!(body["status"], "cancelled");
        assert!(
            body.get("error").is_none() && body.get("result").is_none(),
            "{body}"
        );
        assert!(body["completed_at"].is_string(), "{body}");
        let task = app.store.tasks.lock().expect("lock")[&pending].clone();
        assert_eq!(task.status, TaskStatus::Cancelled);
        assert_eq!(task.request.text, None, "an ended task keeps no text");

        let running = submitted(&app, "alice", "{}").await;
        let claimed = app
            .store
            .claim(&running, Utc::now(), Utc::now().timestamp_millis() + 60_000)
            .await
            .expect("claim");
        assert!(matches!(claimed, shared::ports::Claim::Claimed(_)));
        let resp = app.handle(cancel(&running, "alice")).await;
        assert_eq!(json_body(&resp)["status"], "cancelled");
        let wrote = complete_first_attempt(&app, &running).await;
        assert!(!wrote, "the worker's result write fails its fence");
        let task = app.store.tasks.lock().expect("lock")[&running].clone();
        assert_eq!((task.status, task.result), (TaskStatus::Cancelled, None));
    }

    #[tokio::test]
    async fn a_cancel_of_an_ended_task_is_409_and_of_anothers_or_unknown_404() {
        let app = app(false);
        let id = submitted(&app, "alice", "{}").await;
        assert_eq!(app.handle(cancel(&id, "alice")).await.status(), 200);
        let b = assert_problem(
            &app.handle(cancel(&id, "alice")).await,
            409,
            "/problems/task-finished",
        );
        assert!(
            b["detail"]
                .as_str()
                .expect("detail")
                .contains("`cancelled`"),
            "{b}"
        );

        let done = submitted(&app, "alice", "{}").await;
        app.store
            .claim(&done, Utc::now(), i64::MAX)
            .await
            .expect("claim");
        assert!(complete_first_attempt(&app, &done).await);
        let b = assert_problem(
            &app.handle(cancel(&done, "alice")).await,
            409,
            "/problems/task-finished",
        );
        assert!(
            b["detail"]
                .as_str()
                .expect("detail")
                .contains("`completed`"),
            "{b}"
        );
        let task = app.store.tasks.lock().expect("lock")[&done].clone();
        assert_eq!(task.status, TaskStatus::Completed);
        assert!(task.result.is_some(), "a finished task stays as it was");

        let other = submitted(&app, "alice", "{}").await;
        assert_problem(
            &app.handle(cancel(&other, "mallory")).await,
            404,
            "/problems/not-found",
        );
        let unknown = "0190c6a4-0000-7000-8000-000000000000";
        assert_problem(
            &app.handle(cancel(unknown, "alice")).await,
            404,
            "/problems/not-found",
        );
        let bad = request(
            "POST",
            "/jobs/match/a%2Fb/cancel",
            "",
            Some(&token("alice")),
        );
        assert_problem(&app.handle(bad).await, 404, "/problems/not-found");
        let anonymous = request("POST", &format!("/jobs/match/{other}/cancel"), "", None);
        assert_eq!(app.handle(anonymous).await.status(), 401);
        let task = app.store.tasks.lock().expect("lock")[&other].clone();
        assert_eq!(task.status, TaskStatus::Pending, "nobody else ended it");
    }

    #[tokio::test]
    async fn a_callback_url_the_service_would_never_call_is_422_naming_it() {
        let app = app(false);
        for url in [
            "http://example.com/hook",
            "https://10.0.0.1/hook",
            "https://[::1]/hook",
            "http://169.254.169.254/latest/meta-data/",
            "https://localhost/hook",
        ] {
            let body = serde_json::json!({"callback": {"url": url}}).to_string();
            let resp = app
                .handle(request("POST", "/jobs/match", &body, Some(&token("alice"))))
                .await;
            let b = assert_problem(&resp, 422, "/problems/invalid-request");
            assert_eq!(b["errors"][0]["field"], "callback.url", "{url}: {b}");
        }
        for (body, field) in [
            (r#"{"callback": "https://example.com"}"#, "callback"),
            (r#"{"callback": {}}"#, "callback.url"),
            (r#"{"callback": {"url": 7}}"#, "callback.url"),
            (
                r#"{"callback": {"url": "https://example.com", "secret": "x"}}"#,
                "callback.secret",
            ),
        ] {
            let resp = app
                .handle(request("POST", "/jobs/match", body, Some(&token("alice"))))
                .await;
            let b = assert_problem(&resp, 422, "/problems/invalid-request");
            assert_eq!(b["errors"][0]["field"], field, "{body}: {b}");
        }
        assert!(app.store.tasks.lock().expect("lock").is_empty());
        // A public name is taken (resolved now if DNS answers, and at
        // delivery in any case) and kept with the task.
        let id = submitted(
            &app,
            "alice",
            r#"{"callback": {"url": "https://example.com/hook"}}"#,
        )
        .await;
        let task = app.store.tasks.lock().expect("lock")[&id].clone();
        assert_eq!(
            task.request.callback.map(|c| c.url).as_deref(),
            Some("https://example.com/hook")
        );
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
    async fn complete_when_queued(app: &TestApp) {
        finish_when_queued(app, None).await;
    }

    /// Plays the worker: completes the first pending task it finds, or
    /// fails it with `error`.
    async fn finish_when_queued(app: &TestApp, error: Option<TaskError>) {
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
        // The task carried the text for the worker (the api embedded
        // nothing); ended, it keeps the text's digest only.
        let tasks = app.store.tasks.lock().expect("lock").clone();
        let task = tasks.values().next().expect("task");
        assert_eq!(task.request.text, None);
        assert_eq!(task.text_chars, Some(10));

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
        let pending: Vec<(String, Option<String>)> = app
            .store
            .tasks
            .lock()
            .expect("lock")
            .values()
            .filter(|t| t.status == TaskStatus::Pending)
            .map(|t| (t.task_id.clone(), t.request.text.clone()))
            .collect();
        assert_eq!(pending.len(), 1);
        assert!(detail.contains(&pending[0].0), "{detail}");
        assert_eq!(pending[0].1.as_deref(), Some("ward nurse"));
    }

    #[tokio::test]
    async fn a_legacy_text_whose_task_failed_is_503_only_when_a_retry_may_pass() {
        for (code, status) in [
            (ErrorCode::DependencyUnavailable, 503),
            (ErrorCode::DeadLettered, 500),
            (ErrorCode::Internal, 500),
            (ErrorCode::Unknown, 500),
        ] {
            let app = app(false);
            let call = app.handle(request(
                "POST",
                "/jobs/match/legacy",
                r#"{"text":"ward nurse","limit":3}"#,
                Some(&token("alice")),
            ));
            let error = TaskError {
                code,
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

    /// An app whose callers may send `burst` match requests, then one each
    /// 1,000 s: none comes back while a test runs.
    fn app_with_burst(burst: u32) -> TestApp {
        TestApp {
            quota: MemoryQuota::new(shared::quota::Policy::new(0.001, burst).expect("policy")),
            ..app(false)
        }
    }

    fn embedding_body() -> String {
        let mut e = vec![0.0f32; shared::domain::EMBEDDING_DIM];
        e[0] = 1.0;
        json!({"embedding": e, "limit": 3}).to_string()
    }

    fn rate_limit(resp: &Response<Body>) -> &str {
        resp.headers()["ratelimit"].to_str().expect("ascii")
    }

    #[tokio::test]
    async fn async_and_legacy_share_the_quota_and_a_refusal_stores_nothing() {
        let app = app_with_burst(3);
        let alice = token("alice");
        let post = |path: &str, body: &str| request("POST", path, body, Some(&alice));

        let first = app.handle(post("/jobs/match", "{}")).await;
        assert_eq!(first.status(), 202);
        assert_eq!(rate_limit(&first), r#""match";r=2;t=1000"#);
        assert_eq!(first.headers()["ratelimit-policy"], r#""match";q=3;w=3000"#);
        let legacy = app
            .handle(post("/jobs/match/legacy", &embedding_body()))
            .await;
        assert_eq!(legacy.status(), 200);
        assert_eq!(rate_limit(&legacy), r#""match";r=1;t=1000"#);
        let third = app.handle(post("/jobs/match", "{}")).await;
        assert_eq!(third.status(), 202);
        assert!(rate_limit(&third).starts_with(r#""match";r=0;t="#));

        for (path, body) in [
            ("/jobs/match", "{}".to_owned()),
            ("/jobs/match/legacy", embedding_body()),
            ("/jobs/match/legacy", r#"{"text":"ward nurse"}"#.to_owned()),
        ] {
            let refused = app.handle(post(path, &body)).await;
            let b = assert_problem(&refused, 429, "/problems/quota-exceeded");
            let retry: u64 = refused.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("delay-seconds");
            assert!((990..=1000).contains(&retry), "{retry}");
            assert_eq!(rate_limit(&refused), format!(r#""match";r=0;t={retry}"#));
            assert_eq!(
                refused.headers()["ratelimit-policy"],
                r#""match";q=3;w=3000"#
            );
            assert!(
                b["detail"].as_str().expect("detail").contains("quota"),
                "{b}"
            );
        }
        // The two accepted tasks, nothing of the refusals.
        assert_eq!(app.store.tasks.lock().expect("lock").len(), 2);
        assert_eq!(app.queue.sent.lock().expect("lock").len(), 2);

        // Another caller's bucket is their own.
        let bob = app
            .handle(request("POST", "/jobs/match", "{}", Some(&token("bob"))))
            .await;
        assert_eq!(bob.status(), 202);
        assert_eq!(rate_limit(&bob), r#""match";r=2;t=1000"#);
    }

    #[tokio::test]
    async fn a_replay_takes_nothing_from_the_quota_and_a_new_key_does() {
        let app = app_with_burst(1);
        let body = r#"{"limit":5}"#;
        let first = app.handle(keyed(body, "alice", "order-1")).await;
        assert_eq!(first.status(), 202);
        // The bucket is empty now; the replay is answered all the same.
        let again = app.handle(keyed(body, "alice", "order-1")).await;
        assert_eq!(again.status(), 202);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert!(again.headers().get("ratelimit").is_none(), "took nothing");
        assert_eq!(json_body(&again)["task_id"], json_body(&first)["task_id"]);
        // A conflict is found by the same read: 422, not 429.
        let other = app
            .handle(keyed(r#"{"limit":6}"#, "alice", "order-1"))
            .await;
        assert_problem(&other, 422, "/problems/idempotency-key-reused");
        let new_key = app.handle(keyed(body, "alice", "order-2")).await;
        assert_problem(&new_key, 429, "/problems/quota-exceeded");
        assert_eq!(app.store.tasks.lock().expect("lock").len(), 1);
        assert_eq!(app.queue.sent.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn requests_refused_as_invalid_take_nothing_from_the_quota() {
        let app = app_with_burst(1);
        let bad = app
            .handle(request("POST", "/jobs/match", "{", Some(&token("alice"))))
            .await;
        assert_eq!(bad.status(), 400);
        let bad = app
            .handle(request(
                "POST",
                "/jobs/match/legacy",
                r#"{"limit":0}"#,
                Some(&token("alice")),
            ))
            .await;
        assert_eq!(bad.status(), 422);
        let ok = app
            .handle(request("POST", "/jobs/match", "{}", Some(&token("alice"))))
            .await;
        assert_eq!(ok.status(), 202);
    }

    #[tokio::test]
    async fn a_quota_store_that_is_down_fails_the_request_closed() {
        let app = TestApp {
            quota: MemoryQuota {
                down: true,
                ..quota()
            },
            ..app(false)
        };
        for (path, body) in [
            ("/jobs/match", "{}".to_owned()),
            ("/jobs/match/legacy", embedding_body()),
        ] {
            let resp = app
                .handle(request("POST", path, &body, Some(&token("alice"))))
                .await;
            assert_problem(&resp, 503, "/problems/dependency-unavailable");
            assert_eq!(resp.headers()["retry-after"], "1");
        }
        assert!(app.store.tasks.lock().expect("lock").is_empty());
        assert!(app.queue.sent.lock().expect("lock").is_empty());
        // Health does not take from the quota.
        let health = app.handle(request("GET", "/health", "", None)).await;
        assert_eq!(health.status(), 200);
    }

    #[tokio::test]
    async fn unknown_route_is_404_problem() {
        let resp = app(false).handle(request("GET", "/nope", "", None)).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }

    /// What API Gateway sends the api for a route key (payload 2.0), as
    /// `lambda_http` reads it.
    fn via_gateway(method: &str, path: &str, route_key: &str, body: &str) -> Request {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": "",
            "headers": {
                "content-type": "application/json",
                "authorization": format!("Bearer {}", token("alice")),
            },
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "api",
                "domainName": "api.example",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "192.0.2.1", "userAgent": "t"},
                "requestId": "r",
                "routeKey": route_key,
                "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000",
                "timeEpoch": 0,
            },
            "body": body,
            "isBase64Encoded": false,
        });
        lambda_http::request::from_str(&event.to_string()).expect("a payload 2.0 event")
    }

    /// A path served is its route's exactly: a trailing slash or another
    /// spelling, and anything API Gateway matched to `$default` (whose
    /// throttle is not the route's), is a 404 and nothing is written.
    #[tokio::test]
    async fn only_a_route_exactly_as_declared_is_served() {
        let app = app(false);
        let alice = token("alice");
        for (method, path) in [
            ("POST", "/jobs/match/"),
            ("POST", "/jobs/match/legacy/"),
            ("POST", "/jobs/match//legacy"),
            ("POST", "/Jobs/match"),
            ("GET", "/health/"),
        ] {
            let resp = app.handle(request(method, path, "{}", Some(&alice))).await;
            let body = assert_problem(&resp, 404, "/problems/not-found");
            assert_eq!(
                body["detail"],
                format!("no route for {method} {path}"),
                "{path}"
            );
            let routed = app
                .handle(via_gateway(method, path, "$default", "{}"))
                .await;
            assert_problem(&routed, 404, "/problems/not-found");
        }
        // Had the gateway matched a spelling to the legacy route itself, its
        // throttle applied; still only the declared path is served.
        let resp = app
            .handle(via_gateway(
                "POST",
                "/jobs/match/legacy/",
                "POST /jobs/match/legacy",
                "{}",
            ))
            .await;
        assert_problem(&resp, 404, "/problems/not-found");
        // The exact path through `$default` (never so on AWS, where a full
        // match wins) is not served either.
        let resp = app
            .handle(via_gateway("POST", "/jobs/match", "$default", "{}"))
            .await;
        assert_problem(&resp, 404, "/problems/not-found");
        assert!(app.store.tasks.lock().expect("lock").is_empty());
        assert!(app.queue.sent.lock().expect("lock").is_empty());
        // The route as declared, under its own key, is served.
        let resp = app
            .handle(via_gateway(
                "POST",
                "/jobs/match",
                "POST /jobs/match",
                r#"{"limit":5}"#,
            ))
            .await;
        assert_eq!(resp.status(), 202, "{:?}", resp.body());
        let resp = app
            .handle(via_gateway("GET", "/health", "GET /health", ""))
            .await;
        assert_ne!(resp.status(), 404);
    }
}
