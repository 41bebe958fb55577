//! The catalogue function (DESIGN.md "Catalogue operations"), an admin's
//! routes: `POST /jobs` stores the body in the ingest bucket (the same
//! pipeline as S3) and answers 202 with the ingest; `GET` and `DELETE
//! /jobs/{job_id}`; `GET /ingests/{ingest_id}`. Every route needs a scope
//! (`jobs:read` for the GETs, `jobs:write` for the rest) or the
//! deployment's admin group.

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use shared::auth::{Verifier, SCOPE_JOBS_READ, SCOPE_JOBS_WRITE};
use shared::catalogue::{self, Ingest, INCOMING_PREFIX, MAX_POSTED_JOBS};
use shared::error::{Error, FieldError, Result};
use shared::http;
use shared::ports::{IngestStore, JobAdmin, ObjectStore};

/// Largest `POST /jobs` body: API Gateway may pass a JSON Lines body
/// base64-encoded (4/3 larger), and Lambda's request event, headers
/// included, stops at 6 MB.
pub const MAX_POST_BYTES: usize = 4_000_000;
const JOBS: &str = "/jobs/";
const INGESTS: &str = "/ingests/";
/// Where `POST /jobs` bodies are stored, under `incoming/`.
const POSTED_PREFIX: &str = "api/";

pub struct App<S, J, O> {
    pub ingests: S,
    pub jobs: J,
    pub objects: O,
    /// The ingest bucket's name, for the ingest's id and `source`.
    pub bucket: String,
    pub verifier: Verifier,
    /// `cognito:groups` membership that stands for both scopes.
    pub admin_group: Option<String>,
}

enum Route {
    Post,
    GetJob(String),
    DeleteJob(String),
    GetIngest(String),
}

impl Route {
    fn of(req: &Request) -> Option<Route> {
        let path = req.uri().path().trim_end_matches('/');
        let param = |name: &str, prefix: &str| {
            req.path_parameters()
                .first(name)
                .map(str::to_owned)
                .or_else(|| path.strip_prefix(prefix).map(str::to_owned))
                .filter(|p| !p.is_empty() && !p.contains('/'))
        };
        // `/jobs/match` is the match route's path: no posting is reached
        // there (its other methods are no route, for anyone).
        let job_param =
            |name: &str| param(name, JOBS).filter(|id| id != catalogue::RESERVED_JOB_ID);
        match *req.method() {
            Method::POST if path == "/jobs" => Some(Route::Post),
            Method::GET if path.starts_with(JOBS) => job_param("job_id").map(Route::GetJob),
            Method::DELETE if path.starts_with(JOBS) => job_param("job_id").map(Route::DeleteJob),
            Method::GET if path.starts_with(INGESTS) => {
                param("ingest_id", INGESTS).map(Route::GetIngest)
            }
            _ => None,
        }
    }

    fn scope(&self) -> &'static str {
        match self {
            Route::GetJob(_) | Route::GetIngest(_) => SCOPE_JOBS_READ,
            Route::Post | Route::DeleteJob(_) => SCOPE_JOBS_WRITE,
        }
    }
}

impl<S: IngestStore, J: JobAdmin, O: ObjectStore> App<S, J, O> {
    pub async fn handle(&self, req: Request) -> Response<Body> {
        http::respond(self.route(&req).await)
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>> {
        let route = Route::of(req)
            .ok_or_else(|| Error::NoRoute(format!("{} {}", req.method(), req.uri().path())))?;
        let token = http::bearer(req.headers())?;
        let (_caller, grants) = self.verifier.principal(token).await?;
        grants.require(route.scope(), self.admin_group.as_deref())?;
        match route {
            Route::Post => self.post(req).await,
            Route::GetJob(id) => {
                let job = match valid_job_id(&id) {
                    true => self.jobs.get(&id).await?,
                    false => None,
                };
                let job = job.ok_or_else(|| Error::NotFound(format!("no posting {id}")))?;
                Ok(http::json(StatusCode::OK, &job))
            }
            Route::DeleteJob(id) => {
                if !(valid_job_id(&id) && self.jobs.delete(&id).await?) {
                    return Err(Error::NotFound(format!("no posting {id}")));
                }
                let mut resp = Response::new(Body::Empty);
                *resp.status_mut() = StatusCode::NO_CONTENT;
                Ok(resp)
            }
            Route::GetIngest(id) => {
                let ingest = match catalogue::is_ingest_id(&id) {
                    true => self.ingests.get(&id).await?,
                    false => None,
                };
                let ingest = ingest.ok_or_else(|| Error::NotFound(format!("no ingest {id}")))?;
                Ok(http::json(StatusCode::OK, &ingest.body()))
            }
        }
    }

    /// `POST /jobs`: a JSON array or JSON Lines of at most 1,000 postings,
    /// stored as one `.jsonl` object; each line is judged by the ingest.
    async fn post(&self, req: &Request) -> Result<Response<Body>> {
        let body = req.body().as_ref();
        if body.len() > MAX_POST_BYTES {
            return Err(Error::PayloadTooLarge(MAX_POST_BYTES));
        }
        check_content_type(req)?;
        let lines = to_json_lines(body)?;
        let key = format!(
            "{INCOMING_PREFIX}{POSTED_PREFIX}{}.jsonl",
            uuid::Uuid::now_v7()
        );
        let version = self
            .objects
            .put(&key, lines, "application/x-ndjson")
            .await?;
        let ingest = Ingest::pending(
            catalogue::ingest_id(&self.bucket, &key, &version),
            Ingest::source_of(&self.bucket, &key, &version),
        );
        // The ingest may have made it first, from the object's notification.
        let ingest = self.ingests.create(&ingest).await?;
        let mut resp = http::json(StatusCode::ACCEPTED, &ingest.body());
        let location = HeaderValue::from_str(&format!("{INGESTS}{}", ingest.ingest_id))
            .map_err(|e| Error::Internal(format!("location: {e}")))?;
        resp.headers_mut().insert(header::LOCATION, location);
        Ok(resp)
    }
}

fn valid_job_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= catalogue::MAX_ID_BYTES && !id.contains('\0')
}

/// JSON for an array, JSON Lines otherwise; other declared types are 415.
fn check_content_type(req: &Request) -> Result<()> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value
        .to_str()
        .map_err(|_| Error::UnsupportedMediaType("the content type is not valid ASCII".into()))?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json"
        | "application/x-ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "text/plain" => Ok(()),
        other => Err(Error::UnsupportedMediaType(format!(
            "POST /jobs takes application/json (an array of postings) or \
             application/x-ndjson (JSON Lines), not {other}"
        ))),
    }
}

/// The body as JSON Lines: an array's elements one a line (their line
/// breaks, which JSON allows only between tokens, become spaces), or the
/// lines as sent. At most [`MAX_POSTED_JOBS`] postings, and at least one.
fn to_json_lines(body: &[u8]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(body).map_err(|e| {
        Error::MalformedJson(format!(
            "the body is not UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let (lines, count) = if text.trim_start().starts_with('[') {
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)
            .map_err(|e| Error::MalformedJson(format!("the body is not a JSON array: {e}")))?;
        let mut out = Vec::with_capacity(body.len());
        for item in &items {
            out.extend(
                item.get()
                    .bytes()
                    .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
            );
            out.push(b'\n');
        }
        (out, items.len())
    } else {
        let count = text.lines().filter(|l| !l.trim().is_empty()).count();
        (body.to_vec(), count)
    };
    if count == 0 {
        return Err(Error::Validation(vec![FieldError::new(
            "body",
            "holds no posting",
        )]));
    }
    if count > MAX_POSTED_JOBS {
        return Err(Error::Validation(vec![FieldError::new(
            "body",
            format!("holds {count} postings; at most {MAX_POSTED_JOBS} a request (or put a file in the ingest bucket)"),
        )]));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::adapters::memory::{MemoryIngestStore, MemoryJobs, MemoryObjects};
    use shared::catalogue::IngestStatus;
    use shared::ports::HashedJob;

    const SECRET: &[u8] = b"unit-secret";

    fn app() -> App<MemoryIngestStore, MemoryJobs, MemoryObjects> {
        App {
            ingests: MemoryIngestStore::default(),
            jobs: MemoryJobs::default(),
            objects: MemoryObjects::default(),
            bucket: "bucket".into(),
            verifier: Verifier::hs256(SECRET, 0),
            admin_group: Some("admins".into()),
        }
    }

    fn request(method: &str, path: &str, scope: Option<&str>, body: &str) -> Request {
        let token = shared::auth::mint_hs256_scoped(SECRET, "ops", scope, 60).unwrap();
        lambda_http::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    fn problem(resp: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(resp.body().as_ref()).unwrap()
    }

    fn posting(id: &str) -> String {
        format!(
            r#"{{"id":"{id}","title":"t","company":"c","location":"l","remote":true,"employment_type":"contract","salary_min":null,"salary_max":null,"skills":[],"description":"d","posted_at":"2026-01-01T00:00:00Z"}}"#
        )
    }

    #[tokio::test]
    async fn every_route_needs_its_scope_and_names_it() {
        let app = app();
        for (method, path, needs) in [
            ("POST", "/jobs", "jobs:write"),
            ("GET", "/jobs/j1", "jobs:read"),
            ("DELETE", "/jobs/j1", "jobs:write"),
            (
                "GET",
                "/ingests/ing_00000000000000000000000000000000",
                "jobs:read",
            ),
        ] {
            for scope in [
                None,
                Some("openid"),
                Some(if needs == "jobs:read" {
                    "jobs:write"
                } else {
                    "jobs:read"
                }),
            ] {
                let resp = app
                    .handle(request(method, path, scope, &posting("j1")))
                    .await;
                assert_eq!(resp.status(), 403, "{method} {path} with {scope:?}");
                let p = problem(&resp);
                assert_eq!(p["type"], "/problems/forbidden");
                assert!(
                    p["detail"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("`{needs}`")),
                    "{p}"
                );
            }
        }
        assert!(
            app.objects.objects.lock().unwrap().is_empty(),
            "nothing stored"
        );
        let mut unauthenticated = request("GET", "/jobs/j1", Some("jobs:read"), "");
        unauthenticated.headers_mut().remove("authorization");
        assert_eq!(app.handle(unauthenticated).await.status(), 401);
        // The match route's path is no posting, with or without a token.
        for scope in [None, Some("jobs:read jobs:write")] {
            for method in ["GET", "DELETE"] {
                let resp = app.handle(request(method, "/jobs/match", scope, "")).await;
                assert_eq!(resp.status(), 404, "{method} /jobs/match");
            }
        }
    }

    #[tokio::test]
    async fn a_post_stores_one_jsonl_object_and_answers_the_pending_ingest() {
        let app = app();
        let body = format!("[\n{},\n{}\n]", posting("a"), posting("b"));
        let resp = app
            .handle(request("POST", "/jobs", Some("jobs:write"), &body))
            .await;
        assert_eq!(resp.status(), 202);
        let ingest = problem(&resp);
        let id = ingest["ingest_id"].as_str().unwrap().to_owned();
        assert_eq!(
            resp.headers()["location"],
            format!("/ingests/{id}").as_str()
        );
        assert_eq!(ingest["status"], "pending");
        assert_eq!(ingest["counts"]["received"], 0);
        let (key, versions) = {
            let objects = app.objects.objects.lock().unwrap();
            let (key, versions) = objects.iter().next().unwrap();
            (key.clone(), versions.clone())
        };
        assert!(
            key.starts_with("incoming/api/") && key.ends_with(".jsonl"),
            "{key}"
        );
        let stored = String::from_utf8(versions[0].1.clone()).unwrap();
        assert_eq!(stored, format!("{}\n{}\n", posting("a"), posting("b")));
        assert_eq!(id, catalogue::ingest_id("bucket", &key, "v1"));

        let resp = app
            .handle(request(
                "GET",
                &format!("/ingests/{id}"),
                Some("jobs:read"),
                "",
            ))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(problem(&resp)["ingest_id"], id.as_str());
        assert_eq!(
            app.ingests.ingests.lock().unwrap()[&id].status,
            IngestStatus::Pending
        );
    }

    #[tokio::test]
    async fn a_bad_post_is_a_problem_and_stores_nothing() {
        let app = app();
        let many: String = (0..=MAX_POSTED_JOBS)
            .map(|i| posting(&i.to_string()) + "\n")
            .collect();
        let big = "x".repeat(MAX_POST_BYTES + 1);
        for (body, status, says) in [
            (big.as_str(), 413, "larger than"),
            (many.as_str(), 422, "at most 1000"),
            ("  \n", 422, "no posting"),
            ("[]", 422, "no posting"),
            ("[{\"id\": ", 400, "not a JSON array"),
        ] {
            let resp = app
                .handle(request("POST", "/jobs", Some("jobs:write"), body))
                .await;
            assert_eq!(resp.status(), status, "{says}");
            assert!(
                problem(&resp).to_string().contains(says),
                "{}",
                problem(&resp)
            );
        }
        let mut xml = request("POST", "/jobs", Some("jobs:write"), &posting("a"));
        xml.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/xml"));
        assert_eq!(app.handle(xml).await.status(), 415);
        assert!(app.objects.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn get_answers_the_posting_without_its_embedding_and_delete_removes_it() {
        let app = app();
        let mut job = shared::catalogue::parse_job(&posting("j1")).unwrap();
        job.embedding = Some(vec![0.5; 384]);
        app.jobs.rows.lock().unwrap().insert(
            "j1".into(),
            HashedJob {
                job,
                content_hash: [0; 32],
            },
        );
        let resp = app
            .handle(request("GET", "/jobs/j1", Some("jobs:read"), ""))
            .await;
        assert_eq!(resp.status(), 200);
        let body = problem(&resp);
        assert_eq!(body["id"], "j1");
        assert!(body.get("embedding").is_none(), "{body}");

        let resp = app
            .handle(request("DELETE", "/jobs/j1", Some("jobs:write"), ""))
            .await;
        assert_eq!(resp.status(), 204);
        for (method, scope) in [("GET", "jobs:read"), ("DELETE", "jobs:write")] {
            let resp = app
                .handle(request(method, "/jobs/j1", Some(scope), ""))
                .await;
            assert_eq!(resp.status(), 404, "{method}");
        }
    }

    #[tokio::test]
    async fn the_admin_group_stands_for_the_scopes() {
        let app = app();
        let token = {
            use jsonwebtoken::{encode, EncodingKey, Header};
            shared::jwt_crypto::install();
            let claims = serde_json::json!({"sub": "ops", "exp": chrono::Utc::now().timestamp() + 60, "cognito:groups": ["admins"]});
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap()
        };
        let req = lambda_http::http::Request::builder()
            .method("GET")
            .uri("/ingests/ing_00000000000000000000000000000000")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::Empty)
            .unwrap();
        assert_eq!(app.handle(req).await.status(), 404, "allowed, and absent");
    }
}
