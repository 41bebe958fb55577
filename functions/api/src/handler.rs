//! The api function's routes: `POST /jobs/match` (accept a task),
//! `POST /jobs/match/legacy` (match inline) and `GET /health`. Generic over the
//! ports so that unit tests run without AWS.

use std::time::{Duration, Instant};

use chrono::Utc;
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use shared::auth::{Caller, Verifier};
use shared::error::{Error, Result};
use shared::ports::{JobIndex, TaskQueue, TaskStore};
use shared::request::parse_match_request;
use shared::service;

/// Everything a request needs, built once per container.
pub struct App<S, Q, J> {
    pub store: S,
    pub queue: Q,
    pub index: J,
    pub verifier: Verifier,
    pub task_ttl_secs: i64,
}

const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

impl<S: TaskStore, Q: TaskQueue, J: JobIndex> App<S, Q, J> {
    /// Routes a request; every error becomes a problem+json response here.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let result = match (req.method(), req.uri().path().trim_end_matches('/')) {
            (&Method::POST, "/jobs/match") => self.submit(&req).await,
            (&Method::POST, "/jobs/match/legacy") => self.legacy(&req).await,
            (&Method::GET, "/health") => Ok(self.health().await),
            (method, path) => Err(Error::NoRoute(format!("{method} {path}"))),
        };
        result.unwrap_or_else(|err| {
            if err.status() >= 500 {
                tracing::error!(error = %err, "request failed");
            }
            err.to_response().map(Body::from)
        })
    }

    fn caller(&self, req: &Request) -> Result<Caller> {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(self.verifier.caller_from_header(header)?)
    }

    async fn submit(&self, req: &Request) -> Result<Response<Body>> {
        let caller = self.caller(req)?;
        let request = parse_match_request(req.body().as_ref())?;
        let task = service::submit(
            &self.store,
            &self.queue,
            &caller.0,
            request,
            Utc::now(),
            self.task_ttl_secs,
        )
        .await?;
        let status_url = format!("/jobs/match/status/{}", task.task_id);
        let expires_at = chrono::DateTime::from_timestamp(task.expires_at, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let body = json!({
            "task_id": task.task_id,
            "status": task.status,
            "created_at": task.created_at,
            "expires_at": expires_at,
            "links": {"status": status_url},
        });
        let mut resp = json_response(StatusCode::ACCEPTED, &body);
        let headers = resp.headers_mut();
        if let Ok(location) = status_url.parse() {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        Ok(resp)
    }

    async fn legacy(&self, req: &Request) -> Result<Response<Body>> {
        let caller = self.caller(req)?;
        let request = parse_match_request(req.body().as_ref())?;
        let result = service::run_match(&self.index, &caller.0, &request).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"status": "completed", "result": result}),
        ))
    }

    /// Checks each dependency concurrently, each within its own timeout.
    async fn health(&self) -> Response<Body> {
        let (postgres, dynamodb, sqs) = tokio::join!(
            check(self.index.pgvector_version()),
            check(self.store.ping()),
            check(self.queue.ping()),
        );
        let component = |(outcome, ms): (Result<Option<String>>, f64)| match outcome {
            Ok(pgvector) => {
                let mut c = json!({"status": "ok", "latency_ms": ms});
                if let Some(v) = pgvector {
                    c["pgvector"] = json!(v);
                }
                c
            }
            Err(e) => json!({"status": "down", "latency_ms": ms, "error": e.problem().detail}),
        };
        let healthy = [&postgres.0, &dynamodb.0, &sqs.0].iter().all(|r| r.is_ok());
        let body = json!({
            "status": if healthy { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "components": {
                "postgres": component(postgres),
                "dynamodb": component(dynamodb),
                "sqs": component(sqs),
            },
        });
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(status, &body)
    }
}

/// Runs one health probe within the timeout; returns its outcome and latency.
async fn check<T: HealthDetail>(
    probe: impl std::future::Future<Output = Result<T>>,
) -> (Result<Option<String>>, f64) {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
        Ok(r) => r.map(HealthDetail::detail),
        Err(_) => Err(Error::Internal("timed out".into())),
    };
    let ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    (outcome, ms)
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

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::adapters::memory::{MemoryJobIndex, MemoryQueue, MemoryTaskStore};
    use shared::domain::TaskStatus;

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
        }
    }

    fn request(method: &str, path: &str, body: &str, token: Option<&str>) -> Request {
        let mut b = lambda_http::http::Request::builder()
            .method(method)
            .uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::from(body.to_owned())).expect("request")
    }

    fn token(sub: &str) -> String {
        shared::auth::mint_hs256(SECRET, sub, 60).expect("token")
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
    async fn health_reports_each_component() {
        let resp = app(false).handle(request("GET", "/health", "", None)).await;
        assert_eq!(resp.status(), 200);
        let body = json_body(&resp);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["components"]["postgres"]["pgvector"], "memory");
        assert_eq!(body["components"]["sqs"]["status"], "ok");
    }

    #[tokio::test]
    async fn unknown_route_is_404_problem() {
        let resp = app(false).handle(request("GET", "/nope", "", None)).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
}
