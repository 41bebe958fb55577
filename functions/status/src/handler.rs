//! The status function: `GET /jobs/match/status/{task_id}` and
//! `GET /jobs/match/tasks` (the caller's tasks, newest first, paged with an
//! opaque cursor). A task is visible only to its owner: another caller's task,
//! an unknown id and an expired task all answer 404, so task ids reveal nothing.

use base64::Engine;
use chrono::Utc;
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use shared::auth::{Caller, Verifier};
use shared::domain::{DEFAULT_LIMIT, MAX_LIMIT};
use shared::error::{Error, FieldError, Result};
use shared::http::{self, TaskBody, STATUS_PATH};
use shared::ports::{PageCursor, TaskLister, TaskReader};

const TASKS: &str = "/jobs/match/tasks";

pub struct App<S> {
    pub store: S,
    pub verifier: Verifier,
}

/// What a cursor holds; base64url-encoded JSON, opaque to clients. The owner
/// is not in it: pages are always read for the caller of the token.
#[derive(Serialize, Deserialize)]
struct CursorBody {
    c: String,
    t: String,
}

fn encode_cursor(c: &PageCursor) -> String {
    let body = CursorBody {
        c: c.created_at.clone(),
        t: c.task_id.clone(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&body).unwrap_or_default())
}

fn decode_cursor(s: &str) -> Option<PageCursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let body: CursorBody = serde_json::from_slice(&bytes).ok()?;
    let valid_time = chrono::DateTime::parse_from_rfc3339(&body.c).is_ok();
    let valid_id = shared::domain::is_task_id(&body.t);
    (valid_time && valid_id).then_some(PageCursor {
        created_at: body.c,
        task_id: body.t,
    })
}

impl<S: TaskReader + TaskLister> App<S> {
    pub async fn handle(&self, req: Request) -> Response<Body> {
        http::respond(self.route(&req).await)
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>> {
        if req.method() != Method::GET {
            return Err(Error::NoRoute(format!(
                "{} {}",
                req.method(),
                req.uri().path()
            )));
        }
        let caller = http::caller(&self.verifier, req.headers()).await?;
        if req.uri().path().trim_end_matches('/') == TASKS {
            self.list(req, &caller).await
        } else {
            self.status(req, &caller).await
        }
    }

    /// `GET /jobs/match/tasks?limit=&cursor=`
    async fn list(&self, req: &Request, caller: &Caller) -> Result<Response<Body>> {
        let params = req.query_string_parameters();
        let mut errors = Vec::new();
        let limit = match params.first("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        format!("must be an integer between 1 and {MAX_LIMIT}"),
                    ));
                    DEFAULT_LIMIT
                }
            },
        };
        let cursor = match params.first("cursor") {
            None => None,
            Some(v) => {
                let c = decode_cursor(v);
                if c.is_none() {
                    errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor this API returned",
                    ));
                }
                c
            }
        };
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let page = self
            .store
            .list(&caller.0, Utc::now(), limit, cursor.as_ref())
            .await?;
        let tasks: Vec<TaskBody> = page
            .tasks
            .iter()
            .filter(|t| t.owner == caller.0)
            .map(TaskBody::summary)
            .collect();
        let body = json!({
            "tasks": tasks,
            "next_cursor": page.next.as_ref().map(encode_cursor),
        });
        Ok(http::json(StatusCode::OK, &body))
    }

    /// `GET /jobs/match/status/{task_id}`
    async fn status(&self, req: &Request, caller: &Caller) -> Result<Response<Body>> {
        let task_id = task_id(req)
            .filter(|id| shared::domain::is_task_id(id))
            .ok_or_else(|| Error::NotFound("no such task".into()))?;
        let not_found = || Error::NotFound(format!("no task {task_id}"));
        let task = self
            .store
            .get(&task_id, Utc::now())
            .await?
            .filter(|t| t.owner == caller.0)
            .ok_or_else(not_found)?;
        let mut resp: Response<Body> = http::json(StatusCode::OK, &TaskBody::status(&task));
        if !task.status.is_finished() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
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
        .or_else(|| {
            req.uri()
                .path()
                .strip_prefix(STATUS_PATH)
                .map(str::to_owned)
        })
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
            text: None,
            skills: None,
            filters: Default::default(),
            limit: 20,
            callback: None,
        };
        Task::pending(id.into(), owner.into(), request, Utc::now(), ttl)
    }

    fn get(id: &str, sub: &str, with_param: bool) -> Request {
        let token = shared::auth::mint_hs256(SECRET, sub, 60).expect("token");
        let req = lambda_http::http::Request::builder()
            .uri(format!("{STATUS_PATH}{id}"))
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
        let long = "x".repeat(65);
        let resp = app.handle(get(&long, "alice", true)).await;
        assert_eq!(resp.status(), 404);
    }

    fn list(sub: &str, query: &str) -> Request {
        let token = shared::auth::mint_hs256(SECRET, sub, 60).expect("token");
        let req = lambda_http::http::Request::builder()
            .uri(format!("{TASKS}?{query}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::Empty)
            .expect("request");
        let params: HashMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        req.with_query_string_parameters(params)
    }

    fn body(resp: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(resp.body().as_ref()).expect("json")
    }

    /// alice has 5 live tasks a second apart and one expired; bob has one.
    fn listing_app() -> App<MemoryTaskStore> {
        let store = MemoryTaskStore::default();
        {
            let mut tasks = store.tasks.lock().expect("lock");
            let now = Utc::now();
            for i in 0..5 {
                let mut t = task(&format!("a{i}"), "alice", 3600);
                t.created_at = (now - chrono::Duration::seconds(10 - i)).into();
                tasks.insert(t.task_id.clone(), t);
            }
            tasks.insert("old".into(), task("old", "alice", -1));
            tasks.insert("b0".into(), task("b0", "bob", 3600));
        }
        App {
            store,
            verifier: Verifier::hs256(SECRET, 0),
        }
    }

    #[tokio::test]
    async fn listing_pages_own_tasks_newest_first() {
        let app = listing_app();
        let mut seen = Vec::new();
        let mut query = "limit=2".to_string();
        loop {
            let resp = app.handle(list("alice", &query)).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let b = body(&resp);
            let page = b["tasks"].as_array().expect("tasks");
            assert!(page.len() <= 2);
            for t in page {
                assert_eq!(
                    t["links"]["status"],
                    format!("{STATUS_PATH}{}", t["task_id"].as_str().expect("id"))
                );
                assert!(t.get("result").is_none());
                seen.push(t["task_id"].as_str().expect("id").to_owned());
            }
            match b["next_cursor"].as_str() {
                Some(c) => query = format!("limit=2&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seen, ["a4", "a3", "a2", "a1", "a0"]);
        let b = body(&app.handle(list("bob", "")).await);
        assert_eq!(b["tasks"].as_array().map(Vec::len), Some(1));
        assert_eq!(b["tasks"][0]["task_id"], "b0");
        assert!(b["next_cursor"].is_null());
    }

    #[tokio::test]
    async fn listing_rejects_bad_limits_and_cursors() {
        let app = listing_app();
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("cursor=not-a-cursor", "cursor"),
            ("cursor=e30", "cursor"),
        ] {
            let resp = app.handle(list("alice", query)).await;
            assert_eq!(resp.status(), 422, "{query}");
            assert_eq!(resp.headers()["content-type"], "application/problem+json");
            assert_eq!(body(&resp)["errors"][0]["field"], field, "{query}");
        }
        let resp = app.handle(list("alice", "limit=100")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(body(&resp)["tasks"].as_array().map(Vec::len), Some(5));
    }
}
