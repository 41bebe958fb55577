//! The status function: `GET /jobs/match/status/{task_id}`, visible only to the
//! task's owner. Another caller's task, an unknown id and an expired task all
//! answer 404, so that task ids reveal nothing.

use chrono::Utc;
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use shared::auth::Verifier;
use shared::error::{Error, Result};
use shared::ports::TaskStore;

const PREFIX: &str = "/jobs/match/status/";

pub struct App<S> {
    pub store: S,
    pub verifier: Verifier,
}

impl<S: TaskStore> App<S> {
    pub async fn handle(&self, req: Request) -> Response<Body> {
        self.status(&req).await.unwrap_or_else(|err| {
            if err.status() >= 500 {
                tracing::error!(error = %err, "request failed");
            }
            err.to_response().map(Body::from)
        })
    }

    async fn status(&self, req: &Request) -> Result<Response<Body>> {
        if req.method() != Method::GET {
            return Err(Error::NoRoute(format!(
                "{} {}",
                req.method(),
                req.uri().path()
            )));
        }
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = self.verifier.caller_from_header(header)?;
        let task_id =
            task_id(req).ok_or_else(|| Error::NotFound("no task id in the path".into()))?;
        let not_found = || Error::NotFound(format!("no task {task_id}"));
        let task = self
            .store
            .get(&task_id, Utc::now())
            .await?
            .filter(|t| t.owner == caller.0)
            .ok_or_else(not_found)?;
        let mut body = json!({
            "task_id": task.task_id,
            "status": task.status,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
            "expires_at": chrono::DateTime::from_timestamp(task.expires_at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "attempts": task.attempts,
        });
        if let Some(t) = task.started_at {
            body["started_at"] = json!(t);
        }
        if let Some(t) = task.completed_at {
            body["completed_at"] = json!(t);
        }
        if let Some(r) = &task.result {
            body["result"] = json!(r);
        }
        if let Some(e) = &task.error {
            body["error"] = json!(e);
        }
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = StatusCode::OK;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        if !task.status.is_finished() {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        Ok(resp)
    }
}

/// The `{task_id}` path parameter; when invoked without API Gateway (no path
/// parameters), the last segment of the path.
fn task_id(req: &Request) -> Option<String> {
    req.path_parameters()
        .first("task_id")
        .map(str::to_owned)
        .or_else(|| req.uri().path().strip_prefix(PREFIX).map(str::to_owned))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::adapters::memory::MemoryTaskStore;
    use shared::domain::{MatchRequest, Task};
    use std::collections::HashMap;

    const SECRET: &[u8] = b"unit-secret";

    fn app_with(task: Task) -> App<MemoryTaskStore> {
        let store = MemoryTaskStore::default();
        store
            .tasks
            .lock()
            .expect("lock")
            .insert(task.task_id.clone(), task);
        App {
            store,
            verifier: Verifier::hs256(SECRET, 0),
        }
    }

    fn task(id: &str, owner: &str, ttl: i64) -> Task {
        let request = MatchRequest {
            embedding: None,
            skills: None,
            filters: Default::default(),
            limit: 20,
        };
        Task::pending(id.into(), owner.into(), request, Utc::now(), ttl)
    }

    fn get(id: &str, sub: &str, with_param: bool) -> Request {
        let token = shared::auth::mint_hs256(SECRET, sub, 60).expect("token");
        let req = lambda_http::http::Request::builder()
            .uri(format!("{PREFIX}{id}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::Empty)
            .expect("request");
        if with_param {
            req.with_path_parameters(HashMap::from([("task_id".to_string(), id.to_string())]))
        } else {
            req
        }
    }

    #[tokio::test]
    async fn owner_sees_pending_task_with_retry_after() {
        let app = app_with(task("t1", "alice", 3600));
        for with_param in [true, false] {
            let resp = app.handle(get("t1", "alice", with_param)).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["retry-after"], "1");
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_ref()).expect("json");
            assert_eq!(body["task_id"], "t1");
            assert_eq!(body["status"], "pending");
            assert_eq!(body["attempts"], 0);
            assert!(body.get("result").is_none());
        }
    }

    #[tokio::test]
    async fn other_callers_unknown_and_expired_tasks_are_404() {
        let app = app_with(task("t1", "alice", 3600));
        assert_eq!(app.handle(get("t1", "mallory", true)).await.status(), 404);
        assert_eq!(app.handle(get("nope", "alice", true)).await.status(), 404);
        let app = app_with(task("old", "alice", -1));
        let resp = app.handle(get("old", "alice", true)).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
}
