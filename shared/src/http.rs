//! The HTTP edge of the api and status functions: JSON and problem+json
//! responses, the bearer token, the contract's timestamps, and the one
//! mapping of errors to responses. Built on the `http` crate's types, which
//! lambda_http re-exports, so that no Lambda crate enters `shared`.

use ::http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use ::http::{Response, StatusCode};
use serde::Serialize;

use crate::auth::{Caller, Verifier};
use crate::domain::{MatchResult, Task, TaskError, TaskStatus, Timestamp};
use crate::error::{AuthError, Error, Result};
use crate::quota::RateLimit;

pub const JSON: &str = "application/json";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A JSON response. Never cached: a task's state changes from one call to
/// the next.
pub fn json<B: From<String>>(status: StatusCode, body: &impl Serialize) -> Response<B> {
    let text = match serde_json::to_string(body) {
        Ok(text) => text,
        Err(e) => return error_response(&Error::Internal(format!("encoding a response: {e}"))),
    };
    let mut resp = Response::new(B::from(text));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A route's response, or its error's.
pub fn respond<B: From<String>>(result: Result<Response<B>>) -> Response<B> {
    result.unwrap_or_else(|err| error_response(&err))
}

/// The problem+json response (RFC 9457) for an error. Server errors are
/// logged here with their details, which the body leaves out.
pub fn error_response<B: From<String>>(err: &Error) -> Response<B> {
    let problem = err.problem();
    if problem.status >= 500 {
        tracing::error!(error = %err, "request failed");
    }
    let mut builder = Response::builder()
        .status(problem.status)
        .header(CONTENT_TYPE, PROBLEM_JSON);
    if let Error::Unauthorized(reason) = err {
        builder = builder.header(WWW_AUTHENTICATE, www_authenticate(reason));
    }
    if let Error::Unavailable { .. } | Error::StillRunning { .. } | Error::OutOfTime(_) = err {
        builder = builder.header(RETRY_AFTER, "1");
    }
    if let Error::QuotaExceeded(limit) = err {
        // Retry-After is the RateLimit field's `t`: the draft wants it no
        // earlier than the end of the effective window.
        builder = builder.header(RETRY_AFTER, limit.reset_secs);
        for (name, value) in rate_limit_fields(limit) {
            builder = builder.header(name, value);
        }
    }
    let body = serde_json::to_string(&problem).unwrap_or_default();
    builder
        .body(B::from(body))
        .unwrap_or_else(|_| Response::new(B::from(String::new())))
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11)
/// for a caller's quota.
fn rate_limit_fields(limit: &RateLimit) -> [(&'static str, String); 2] {
    [
        ("ratelimit-policy", limit.policy_field()),
        ("ratelimit", limit.limit_field()),
    ]
}

/// Adds the quota's `RateLimit-Policy` and `RateLimit` to an answer that took
/// from it, so that clients can pace themselves before a 429.
pub fn add_rate_limit<B>(resp: &mut Response<B>, limit: &RateLimit) {
    for (name, value) in rate_limit_fields(limit) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, value);
        }
    }
}

/// RFC 6750 challenge; a request without a token gets no error code.
fn www_authenticate(reason: &AuthError) -> String {
    match reason {
        AuthError::MissingToken => r#"Bearer realm="jobmatch""#.to_owned(),
        other => format!(
            r#"Bearer realm="jobmatch", error="invalid_token", error_description="{}""#,
            other.to_string().replace('"', "'")
        ),
    }
}

/// The token of `Authorization: Bearer <token>` (RFC 6750); the scheme is
/// case-insensitive (RFC 7235).
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::MissingToken)?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MissingToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

/// The caller of a request, from its bearer token: `Unauthorized` (401) or,
/// when the JWKS cannot be fetched, `Unavailable` (503).
pub async fn caller(verifier: &Verifier, headers: &HeaderMap) -> Result<Caller> {
    verifier.caller(bearer(headers)?).await
}

/// A Unix time as the contract writes it (`expires_at`): RFC 3339 in UTC,
/// whole seconds; `None` out of chrono's range.
pub fn rfc3339_secs(epoch_secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(epoch_secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Where a task's status is read: `GET {STATUS_PATH}{task_id}`.
pub const STATUS_PATH: &str = "/jobs/match/status/";

/// The status URL of a task (`Location`, `links.status`).
pub fn status_path(task_id: &str) -> String {
    format!("{STATUS_PATH}{task_id}")
}

/// A task as the API answers it (DESIGN.md "HTTP contract"), the one body
/// for the three answers that carry a task; each constructor picks its
/// fields, and those it leaves out are absent from the JSON, never `null`.
/// `status` is the task's own enum, so a new status needs nothing here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskBody<'a> {
    task_id: &'a str,
    status: TaskStatus,
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<Timestamp>,
    /// `null` only for an epoch outside chrono's range (never written).
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a MatchResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a TaskError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Links>,
}

/// Where to follow a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Links {
    status: String,
}

impl<'a> TaskBody<'a> {
    /// `GET /jobs/match/status/{task_id}`: everything the task has.
    pub fn status(task: &'a Task) -> TaskBody<'a> {
        TaskBody {
            task_id: &task.task_id,
            status: task.status,
            created_at: task.created_at,
            updated_at: Some(task.updated_at),
            expires_at: rfc3339_secs(task.expires_at),
            attempts: Some(task.attempts),
            started_at: task.started_at,
            completed_at: task.completed_at,
            result: task.result.as_ref(),
            error: task.error.as_ref(),
            links: None,
        }
    }

    /// The 202 of `POST /jobs/match` (a replay shows the task's current
    /// status): the id, the times and where to poll.
    pub fn accepted(task: &'a Task) -> TaskBody<'a> {
        TaskBody {
            updated_at: None,
            attempts: None,
            links: Some(Links {
                status: status_path(&task.task_id),
            }),
            ..TaskBody::bare(task)
        }
    }

    /// A task of `GET /jobs/match/tasks`: its state, not its result.
    pub fn summary(task: &'a Task) -> TaskBody<'a> {
        TaskBody {
            links: Some(Links {
                status: status_path(&task.task_id),
            }),
            ..TaskBody::bare(task)
        }
    }

    /// The state without the outcome.
    fn bare(task: &'a Task) -> TaskBody<'a> {
        TaskBody {
            started_at: None,
            completed_at: None,
            result: None,
            error: None,
            ..TaskBody::status(task)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldError;

    fn body(resp: &Response<String>) -> serde_json::Value {
        serde_json::from_str(resp.body()).expect("problem body is JSON")
    }

    #[test]
    fn validation_lists_fields() {
        let err = Error::Validation(vec![FieldError::new("limit", "must be 1..100")]);
        let resp: Response<String> = error_response(&err);
        assert_eq!(resp.status(), 422);
        assert_eq!(resp.headers()[CONTENT_TYPE], PROBLEM_JSON);
        let b = body(&resp);
        assert_eq!(b["status"], 422);
        assert_eq!(b["type"], "/problems/invalid-request");
        assert_eq!(b["errors"][0]["field"], "limit");
    }

    #[test]
    fn unauthorized_names_reason_in_challenge_and_detail() {
        let resp: Response<String> = error_response(&Error::from(AuthError::Expired));
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="jobmatch", error="invalid_token", error_description="token expired""#
        );
        assert_eq!(body(&resp)["detail"], "token expired");
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let resp: Response<String> =
            error_response(&Error::Internal("db password is hunter2".into()));
        assert_eq!(resp.status(), 500);
        assert!(!resp.body().contains("hunter2"));
        let resp: Response<String> =
            error_response(&Error::unavailable("postgres", "conn refused at 10.0.0.1"));
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[RETRY_AFTER], "1");
        assert!(!resp.body().contains("10.0.0.1"));
    }

    #[test]
    fn a_quota_refusal_carries_retry_after_and_the_rate_limit_fields() {
        let limit = RateLimit {
            quota: 20,
            window_secs: 10,
            remaining: 0,
            reset_secs: 3,
        };
        let resp: Response<String> = error_response(&Error::QuotaExceeded(limit));
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
        assert_eq!(resp.headers()["ratelimit-policy"], r#""match";q=20;w=10"#);
        assert_eq!(resp.headers()["ratelimit"], r#""match";r=0;t=3"#);
        let b = body(&resp);
        assert_eq!(b["type"], "/problems/quota-exceeded");
        assert_eq!(b["status"], 429);
        assert!(b["detail"].as_str().expect("detail").contains("3 s"), "{b}");

        let mut ok: Response<String> = json(StatusCode::ACCEPTED, &serde_json::json!({}));
        add_rate_limit(
            &mut ok,
            &RateLimit {
                remaining: 19,
                reset_secs: 1,
                ..limit
            },
        );
        assert_eq!(ok.headers()["ratelimit"], r#""match";r=19;t=1"#);
        assert_eq!(ok.headers()["ratelimit-policy"], r#""match";q=20;w=10"#);
        assert!(ok.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn json_is_never_cached() {
        let resp: Response<String> = json(StatusCode::ACCEPTED, &serde_json::json!({"a": 1}));
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()[CONTENT_TYPE], JSON);
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(resp.body(), r#"{"a":1}"#);
    }

    fn with_authorization(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(v) = value {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(v).expect("header"));
        }
        headers
    }

    #[tokio::test]
    async fn header_needs_bearer_scheme() {
        const SECRET: &[u8] = b"unit-secret";
        let v = Verifier::hs256(SECRET, 0);
        for header in [None, Some("Basic abc"), Some("Bearer "), Some("Bearer")] {
            assert!(matches!(
                caller(&v, &with_authorization(header)).await,
                Err(Error::Unauthorized(AuthError::MissingToken))
            ));
        }
        let t = crate::auth::mint_hs256(SECRET, "carol", 60).expect("mint");
        let headers = with_authorization(Some(&format!("bearer {t}")));
        assert_eq!(bearer(&headers), Ok(t.as_str()));
        assert_eq!(
            caller(&v, &headers).await.ok(),
            Some(Caller("carol".into()))
        );
    }

    mod task_body {
        use super::*;
        use crate::domain::{EmploymentType, JobMatch, MatchRequest};
        use crate::error::ErrorCode;
        use chrono::TimeZone;
        use serde_json::{json, Value};

        fn at(secs: u32) -> chrono::DateTime<chrono::Utc> {
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 29, 10, 0, secs)
                .single()
                .expect("a time")
                + chrono::Duration::milliseconds(250)
        }

        fn pending() -> Task {
            Task::pending(
                "t-1".into(),
                "alice".into(),
                MatchRequest::default(),
                at(0),
                3600,
            )
        }

        fn completed() -> Task {
            let mut task = pending();
            task.status = TaskStatus::Completed;
            task.attempts = 1;
            task.started_at = Some(at(1).into());
            task.completed_at = Some(at(2).into());
            task.updated_at = at(2).into();
            task.result = Some(MatchResult {
                matches: vec![JobMatch {
                    job_id: "job-1".into(),
                    title: "Rust engineer".into(),
                    company: "Acme".into(),
                    location: "Berlin".into(),
                    remote: true,
                    employment_type: EmploymentType::FullTime,
                    salary_min: Some(90_000),
                    salary_max: None,
                    posted_at: at(0),
                    similarity: 0.5,
                    score: 0.6,
                    matched_skills: vec!["rust".into()],
                }],
                count: 1,
                query_ms: 3.25,
                cached: false,
                computed_at: Some(at(2).into()),
            });
            task
        }

        fn failed() -> Task {
            let mut task = pending();
            task.status = TaskStatus::Failed;
            task.attempts = 3;
            task.started_at = Some(at(1).into());
            task.updated_at = at(5).into();
            task.completed_at = Some(at(5).into());
            task.error = Some(TaskError {
                code: ErrorCode::DependencyUnavailable,
                message: "postgres was unavailable on every attempt".into(),
            });
            task
        }

        fn to_json(body: &TaskBody) -> Value {
            serde_json::to_value(body).expect("encode")
        }

        #[test]
        fn a_pending_task_has_no_outcome_fields_at_all() {
            let task = pending();
            let text = serde_json::to_string(&TaskBody::status(&task)).expect("encode");
            assert_eq!(
                text,
                r#"{"task_id":"t-1","status":"pending","created_at":"2026-11-29T10:00:00.250Z","updated_at":"2026-11-29T10:00:00.250Z","expires_at":"2026-11-29T11:00:00Z","attempts":0}"#
            );
        }

        #[test]
        fn a_completed_task_shows_its_times_and_result() {
            let task = completed();
            assert_eq!(
                to_json(&TaskBody::status(&task)),
                json!({
                    "task_id": "t-1",
                    "status": "completed",
                    "created_at": "2026-11-29T10:00:00.250Z",
                    "updated_at": "2026-11-29T10:00:02.250Z",
                    "expires_at": "2026-11-29T11:00:00Z",
                    "attempts": 1,
                    "started_at": "2026-11-29T10:00:01.250Z",
                    "completed_at": "2026-11-29T10:00:02.250Z",
                    "result": {
                        "matches": [{
                            "job_id": "job-1", "title": "Rust engineer", "company": "Acme",
                            "location": "Berlin", "remote": true, "employment_type": "full_time",
                            "salary_min": 90000, "salary_max": null,
                            "posted_at": "2026-11-29T10:00:00.250Z",
                            "similarity": 0.5, "score": 0.6, "matched_skills": ["rust"],
                        }],
                        "count": 1, "query_ms": 3.25, "cached": false,
                        "computed_at": "2026-11-29T10:00:02.250Z",
                    },
                })
            );
        }

        #[test]
        fn a_failed_task_shows_its_error_and_no_result() {
            let task = failed();
            assert_eq!(
                to_json(&TaskBody::status(&task)),
                json!({
                    "task_id": "t-1",
                    "status": "failed",
                    "created_at": "2026-11-29T10:00:00.250Z",
                    "updated_at": "2026-11-29T10:00:05.250Z",
                    "expires_at": "2026-11-29T11:00:00Z",
                    "attempts": 3,
                    "started_at": "2026-11-29T10:00:01.250Z",
                    "completed_at": "2026-11-29T10:00:05.250Z",
                    "error": {
                        "code": "dependency_unavailable",
                        "message": "postgres was unavailable on every attempt",
                    },
                })
            );
        }

        #[test]
        fn accepted_and_summary_show_the_state_and_where_to_poll() {
            let task = completed();
            assert_eq!(
                to_json(&TaskBody::accepted(&task)),
                json!({
                    "task_id": "t-1",
                    "status": "completed",
                    "created_at": "2026-11-29T10:00:00.250Z",
                    "expires_at": "2026-11-29T11:00:00Z",
                    "links": {"status": "/jobs/match/status/t-1"},
                })
            );
            assert_eq!(
                to_json(&TaskBody::summary(&task)),
                json!({
                    "task_id": "t-1",
                    "status": "completed",
                    "created_at": "2026-11-29T10:00:00.250Z",
                    "updated_at": "2026-11-29T10:00:02.250Z",
                    "expires_at": "2026-11-29T11:00:00Z",
                    "attempts": 1,
                    "links": {"status": "/jobs/match/status/t-1"},
                })
            );
        }

        fn keys(bodies: &[Value]) -> Vec<String> {
            let mut keys: Vec<String> = bodies
                .iter()
                .flat_map(|b| b.as_object().expect("an object").keys().cloned())
                .collect();
            keys.sort();
            keys.dedup();
            keys
        }

        fn strings(v: &Value) -> Vec<String> {
            let mut s: Vec<String> = match v {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                Value::Object(m) => m.keys().cloned().collect(),
                _ => Vec::new(),
            };
            s.sort();
            s
        }

        /// openapi.yaml's three task schemas have exactly these bodies'
        /// fields: required the pending task's, properties all of them.
        #[test]
        fn openapi_states_each_answer_s_fields() {
            let doc: Value =
                serde_norway::from_str(include_str!("../../openapi.yaml")).expect("openapi.yaml");
            let schemas = &doc["components"]["schemas"];
            type View = fn(&Task) -> Value;
            let views: [(&str, View); 3] = [
                ("TaskStatus", |t| to_json(&TaskBody::status(t))),
                ("Accepted", |t| to_json(&TaskBody::accepted(t))),
                ("TaskSummary", |t| to_json(&TaskBody::summary(t))),
            ];
            for (name, view) in views {
                let pending = view(&pending());
                let every = [pending.clone(), view(&completed()), view(&failed())];
                assert_eq!(
                    strings(&schemas[name]["required"]),
                    keys(&[pending]),
                    "{name}: required"
                );
                assert_eq!(
                    strings(&schemas[name]["properties"]),
                    keys(&every),
                    "{name}: properties"
                );
            }
        }
    }

    #[test]
    fn timestamps_are_utc_to_the_second() {
        assert_eq!(
            rfc3339_secs(1_724_709_600).as_deref(),
            Some("2024-08-26T22:00:00Z")
        );
        assert_eq!(rfc3339_secs(i64::MAX), None);
    }
}
