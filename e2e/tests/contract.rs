//! The HTTP contract end to end, through the local gateway and `cargo lambda
//! watch`: 401 reasons and challenges, 413/415/400/422 on both match routes,
//! idempotency keys under concurrency, and the task listing. Needs the local
//! stack and `.local/env` exported (`make test` does both).

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{json, Value};

struct Api {
    http: Client,
    base: String,
    secret: String,
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| {
        panic!("{key} is not set: run `make up` and export .local/env (make test does both)")
    })
}

fn api() -> Api {
    Api {
        http: Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
        base: env("API_URL").trim_end_matches('/').to_owned(),
        secret: env("JWT_SECRET"),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl Api {
    fn sign(&self, claims: &Value) -> String {
        // jsonwebtoken's crypto is the one the functions install (ring).
        shared::jwt_crypto::install();
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .expect("token")
    }

    fn token(&self, sub: &str) -> String {
        self.sign(&json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + 600}))
    }

    fn post(&self, path: &str, sub: &str, body: &str) -> RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token(sub))
            .header("content-type", "application/json")
            .body(body.to_owned())
    }

    fn get(&self, path: &str, sub: &str) -> RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token(sub))
    }
}

async fn send(req: RequestBuilder) -> Response {
    req.send().await.expect("request")
}

/// Asserts a problem+json answer and returns its body.
async fn problem(resp: Response, status: u16, kind: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["type"], kind, "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

#[tokio::test]
async fn bad_tokens_get_401_with_the_reason() {
    let api = api();
    let now = chrono::Utc::now().timestamp();
    let none = {
        use base64::Engine;
        let e = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            e(json!({"alg": "none"})),
            e(json!({"sub": "a", "exp": now + 60}))
        )
    };
    let cases = [
        (
            api.sign(&json!({"sub": "a", "exp": now - 120})),
            "token expired",
        ),
        (
            api.sign(&json!({"sub": "a"})),
            "missing required claim `exp`",
        ),
        (api.sign(&json!({"exp": now + 60})), "missing subject"),
        (
            api.sign(&json!({"sub": "a", "exp": now + 600, "nbf": now + 300})),
            "token not yet valid",
        ),
        (
            encode(
                &Header::new(Algorithm::HS256),
                &json!({"sub": "a", "exp": now + 60}),
                &EncodingKey::from_secret(b"not-the-secret-of-this-stack-at-all"),
            )
            .expect("token"),
            "bad signature",
        ),
        (none, "unsupported algorithm"),
        ("garbage".to_string(), "malformed token"),
    ];
    for path in ["/jobs/match", "/jobs/match/tasks"] {
        for (token, reason) in &cases {
            let req = if path == "/jobs/match" {
                api.http.post(format!("{}{path}", api.base)).body("{}")
            } else {
                api.http.get(format!("{}{path}", api.base))
            };
            let resp = send(req.bearer_auth(token)).await;
            assert_eq!(
                resp.headers()["www-authenticate"],
                format!(
                    r#"Bearer realm="jobmatch", error="invalid_token", error_description="{reason}""#
                )
                .as_str()
            );
            let body = problem(resp, 401, "/problems/unauthorized").await;
            assert_eq!(body["detail"], *reason);
        }
    }
    // `id` stands in for `sub`.
    let resp = send(
        api.http
            .get(format!("{}/jobs/match/tasks", api.base))
            .bearer_auth(api.sign(&json!({"id": unique("by-id"), "exp": now + 60}))),
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn bad_bodies_get_413_415_400_422_on_both_routes() {
    let api = api();
    for path in ["/jobs/match", "/jobs/match/legacy"] {
        let big = format!(r#"{{"skills":["{}"]}}"#, "x".repeat(64 * 1024));
        problem(
            send(api.post(path, "demo-user", &big)).await,
            413,
            "/problems/payload-too-large",
        )
        .await;

        let resp = send(
            api.post(path, "demo-user", "limit=5")
                .header("content-type", "application/x-www-form-urlencoded"),
        )
        .await;
        problem(resp, 415, "/problems/unsupported-media-type").await;

        for bad in [r#"{"limit": "#, "[1,2]", "\"text\""] {
            let body = problem(
                send(api.post(path, "demo-user", bad)).await,
                400,
                "/problems/malformed-json",
            )
            .await;
            assert!(body["detail"].as_str().expect("detail").contains("JSON"));
        }

        let mut embedding = vec![json!(0.1); 384];
        embedding[3] = json!("0.5");
        let body = json!({
            "embedding": embedding,
            "limt": 5,
            "skills": ["x".repeat(65)],
            "filters": {"employment_types": ["gig"], "posted_within_days": 0, "min_salary": -1,
                        "locations": vec!["Berlin"; 51], "exclude_job_ids": vec!["j"; 1001]},
            "limit": 101,
        });
        let problem_body = problem(
            send(api.post(path, "demo-user", &body.to_string())).await,
            422,
            "/problems/invalid-request",
        )
        .await;
        let fields: Vec<&str> = problem_body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["field"].as_str().expect("field"))
            .collect();
        assert_eq!(
            fields,
            [
                "limt",
                "embedding",
                "skills",
                "filters.locations",
                "filters.employment_types",
                "filters.min_salary",
                "filters.posted_within_days",
                "filters.exclude_job_ids",
                "limit"
            ],
            "{problem_body}"
        );
        let overflow = format!(r#"{{"embedding":[1e999{}]}}"#, ",0.1".repeat(383));
        let b = problem(
            send(api.post(path, "demo-user", &overflow)).await,
            422,
            "/problems/invalid-request",
        )
        .await;
        assert_eq!(b["errors"][0]["field"], "embedding");
    }
}

#[tokio::test]
async fn idempotency_keys_make_one_task_per_caller_and_body() {
    let api = api();
    let owner = unique("idem");
    let key = unique("key");
    let body = r#"{"limit": 3, "skills": ["Rust", "aws"], "embedding": null}"#;
    // `embedding: null` is out of contract: send a valid body.
    let body = body.replace(r#", "embedding": null"#, "");
    let runs = 8;
    let answers = futures::future::join_all((0..runs).map(|_| {
        send(
            api.post("/jobs/match", &owner, &body)
                .header("idempotency-key", &key),
        )
    }))
    .await;
    let mut ids = Vec::new();
    let mut replayed = 0;
    for resp in answers {
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["content-type"], "application/json");
        if resp.headers().get("idempotent-replayed").is_some() {
            replayed += 1;
        }
        let b: Value = resp.json().await.expect("json");
        ids.push(b["task_id"].as_str().expect("id").to_owned());
    }
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(replayed, runs - 1, "one creator, the rest replays");

    // The same body, differently written, is the same request.
    let resp = send(
        api.post(
            "/jobs/match",
            &owner,
            r#"{"skills": ["AWS", "rust"], "limit": 3}"#,
        )
        .header("idempotency-key", &key),
    )
    .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    let b: Value = resp.json().await.expect("json");
    assert_eq!(b["task_id"], ids[0].as_str());

    let resp = send(
        api.post("/jobs/match", &owner, r#"{"limit": 4}"#)
            .header("idempotency-key", &key),
    )
    .await;
    problem(resp, 422, "/problems/idempotency-key-reused").await;

    let other = send(
        api.post("/jobs/match", &unique("idem-other"), &body)
            .header("idempotency-key", &key),
    )
    .await;
    assert_eq!(other.status(), 202);
    let b: Value = other.json().await.expect("json");
    assert_ne!(b["task_id"], ids[0].as_str());

    let resp = send(
        api.post("/jobs/match", &owner, &body)
            .header("idempotency-key", ""),
    )
    .await;
    let b = problem(resp, 422, "/problems/invalid-request").await;
    assert_eq!(b["errors"][0]["field"], "Idempotency-Key");

    // One task for the owner, whatever the number of requests.
    let list: Value = send(api.get("/jobs/match/tasks", &owner))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["tasks"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["tasks"][0]["task_id"], ids[0].as_str());
}

#[tokio::test]
async fn listing_pages_the_callers_own_tasks_newest_first() {
    let api = api();
    let owner = unique("lister");
    let mut created = Vec::new();
    for limit in 1..=5 {
        let resp =
            send(api.post("/jobs/match", &owner, &json!({"limit": limit}).to_string())).await;
        assert_eq!(resp.status(), 202);
        let b: Value = resp.json().await.expect("json");
        created.push(b["task_id"].as_str().expect("id").to_owned());
        // created_at has millisecond precision: keep the order unambiguous.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut path = "/jobs/match/tasks?limit=2".to_string();
    for _ in 0..10 {
        let resp = send(api.get(&path, &owner)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let page: Value = resp.json().await.expect("json");
        let tasks = page["tasks"].as_array().expect("tasks");
        assert!(tasks.len() <= 2);
        for t in tasks {
            let id = t["task_id"].as_str().expect("id");
            assert_eq!(t["links"]["status"], format!("/jobs/match/status/{id}"));
            assert!(t["created_at"].is_string() && t["status"].is_string());
            seen.push(id.to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/jobs/match/tasks?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, created);

    // Nobody else sees them.
    let page: Value = send(api.get("/jobs/match/tasks?limit=100", &unique("stranger")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["tasks"], json!([]));
    assert!(page["next_cursor"].is_null());

    for (query, field) in [("limit=0", "limit"), ("cursor=%25%25", "cursor")] {
        let resp = send(api.get(&format!("/jobs/match/tasks?{query}"), &owner)).await;
        let b = problem(resp, 422, "/problems/invalid-request").await;
        assert_eq!(b["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn health_needs_no_token_and_reports_timeouts() {
    let api = api();
    let resp = send(api.http.get(format!("{}/health", api.base))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["failing"], json!([]));
    for c in ["postgres", "dynamodb", "sqs"] {
        assert_eq!(body["components"][c]["timeout_ms"], 2000, "{body}");
    }
}

/// What no route matches reaches the api through HttpApi's `$default` route
/// and is a problem+json 404 (HttpApi's own answer would be
/// `{"message":"Not Found"}`), with or without a token.
#[tokio::test]
async fn unknown_routes_and_methods_are_problem_404s() {
    let api = api();
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/jobs/match"),
        ("DELETE", "/jobs/match/status/some-task"),
        ("GET", "/jobs/match/status/"),
        ("PUT", "/health"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}{path}", api.base);
        for authorised in [true, false] {
            let mut req = api.http.request(method.clone(), &url);
            if authorised {
                req = req.bearer_auth(api.token("alice"));
            }
            let body = problem(send(req).await, 404, "/problems/not-found").await;
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains(path.trim_end_matches('/')),
                "{method} {path}: {body}"
            );
        }
    }
}

/// Another spelling of a match route (a trailing slash) reaches the local
/// gateway's `$default` route, whose throttle is not the route's; the api
/// refuses it with a problem+json 404 and stores nothing, so that a slash
/// cannot take the legacy route out of its own limit.
#[tokio::test]
async fn a_trailing_slash_is_not_its_route() {
    let api = api();
    let caller = unique("slash");
    for (method, path) in [
        (reqwest::Method::POST, "/jobs/match/"),
        (reqwest::Method::POST, "/jobs/match/legacy/"),
        (reqwest::Method::POST, "/jobs/match//legacy"),
        (reqwest::Method::GET, "/health/"),
    ] {
        let req = api
            .http
            .request(method.clone(), format!("{}{path}", api.base))
            .bearer_auth(api.token(&caller))
            .header("content-type", "application/json")
            .body(r#"{"limit": 5}"#);
        let body = problem(send(req).await, 404, "/problems/not-found").await;
        assert_eq!(
            body["detail"],
            format!("no route for {method} {path}"),
            "{body}"
        );
    }
    let listed = send(api.get("/jobs/match/tasks", &caller)).await;
    assert_eq!(listed.status().as_u16(), 200);
    let listed: Value = listed.json().await.expect("json");
    assert_eq!(listed["tasks"], json!([]), "nothing stored: {listed}");
}
