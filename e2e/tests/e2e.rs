//! End-to-end: HTTP through the local gateway to `cargo lambda watch`, the
//! SQS poller invoking the worker, PostgreSQL and moto underneath. Needs the
//! local stack (`make up`; `make test` starts it) and `.local/env` exported.

use std::time::{Duration, Instant};

use jobmatch_cli::generate::family_of_job_id;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};

struct Stack {
    http: Client,
    api: String,
    secret: String,
    db: PgPool,
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| {
        panic!("{key} is not set: run `make up` and export .local/env (make test does both)")
    })
}

async fn stack() -> Stack {
    Stack {
        http: Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
        api: env("API_URL").trim_end_matches('/').to_owned(),
        secret: env("JWT_SECRET"),
        db: PgPool::connect(&env("DATABASE_URL"))
            .await
            .expect("database"),
    }
}

impl Stack {
    fn token(&self, sub: &str) -> String {
        shared::auth::mint_hs256(self.secret.as_bytes(), sub, 600).expect("token")
    }

    async fn post(&self, path: &str, sub: Option<&str>, body: &str) -> Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.api))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sub) = sub {
            req = req.bearer_auth(self.token(sub));
        }
        req.send().await.expect("POST")
    }

    async fn get(&self, path: &str, sub: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(self.token(sub))
            .send()
            .await
            .expect("GET")
    }

    /// Submits a match and polls its status until it is finished.
    async fn run_async(&self, sub: &str, body: &Value) -> (Value, Duration) {
        let started = Instant::now();
        let resp = self.post("/jobs/match", Some(sub), &body.to_string()).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(resp.headers()["retry-after"], "1");
        let location = resp.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let accepted: Value = resp.json().await.expect("json");
        assert_eq!(accepted["status"], "pending");
        assert_eq!(
            location,
            format!(
                "/jobs/match/status/{}",
                accepted["task_id"].as_str().expect("id")
            )
        );
        assert_eq!(accepted["links"]["status"], location);
        let give_up = Instant::now() + Duration::from_secs(90);
        loop {
            let resp = self.get(&location, sub).await;
            assert_eq!(resp.status(), StatusCode::OK);
            let status: Value = resp.json().await.expect("json");
            match status["status"].as_str() {
                Some("completed" | "failed") => return (status, started.elapsed()),
                Some("pending" | "processing") => {}
                other => panic!("unexpected status {other:?}: {status}"),
            }
            assert!(Instant::now() < give_up, "task never finished: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The plan the matcher (`jobmatch_nearest`, the stack's production
    /// planner) takes for this caller's profile and filters.
    async fn plan_for(&self, sub: &str, filters: &Value, limit: i64) -> String {
        sqlx::query_scalar("SELECT plan::text FROM jobmatch_nearest(NULL, $1, $2, $3) LIMIT 1")
            .bind(sub)
            .bind(filters)
            .bind((5 * limit).clamp(100, 1000) as i32)
            .fetch_one(&self.db)
            .await
            .expect("plan")
    }

    /// The exact ranking of DESIGN.md, computed in SQL with index scans off.
    async fn exact_ranking(
        &self,
        sub: &str,
        limit: i64,
        filter_sql: &str,
    ) -> Vec<(String, f64, f64)> {
        let candidates = (5 * limit).clamp(100, 1000);
        let mut tx = self.db.begin().await.expect("tx");
        sqlx::query("SET LOCAL enable_indexscan = off")
            .execute(&mut *tx)
            .await
            .expect("set");
        let sql = format!(
            "WITH p AS (SELECT embedding, skills FROM profiles WHERE user_id = $1),
                  c AS (SELECT j.id, j.skills, p.skills AS pskills, 1 - (j.embedding <=> p.embedding) AS similarity
                        FROM jobs j, p WHERE true {filter_sql}
                        ORDER BY j.embedding <=> p.embedding, j.id LIMIT $2)
             SELECT id, similarity,
                    0.8 * similarity + 0.2 * cardinality(ARRAY(SELECT unnest(skills) INTERSECT SELECT unnest(pskills)))::float8
                        / greatest(1, cardinality(skills)) AS score
             FROM c ORDER BY score DESC, id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sub)
            .bind(candidates)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .expect("exact query");
        rows.iter()
            .map(|r| (r.get("id"), r.get("similarity"), r.get("score")))
            .collect()
    }
}

/// A match's similarity and score are those the exact SQL computes for its job.
fn assert_same_figures(m: &Value, similarity: f64, score: f64) {
    assert!(
        (m["similarity"].as_f64().expect("similarity") - similarity).abs() < 1e-6,
        "{m}"
    );
    assert!(
        (m["score"].as_f64().expect("score") - score).abs() < 1e-6,
        "{m}"
    );
}

fn assert_same_ranking(matches: &Value, exact: &[(String, f64, f64)]) {
    let matches = matches.as_array().expect("matches");
    let got: Vec<&str> = matches
        .iter()
        .map(|m| m["job_id"].as_str().expect("job_id"))
        .collect();
    let want: Vec<&str> = exact.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(got, want, "ranking differs from the exact SQL ranking");
    for (m, (_, similarity, score)) in matches.iter().zip(exact) {
        assert_same_figures(m, *similarity, *score);
    }
}

/// On the HNSW path the ranking is approximate: most of the exact top rows,
/// and every row's figures exactly those of its job.
fn assert_close_ranking(matches: &Value, exact: &[(String, f64, f64)], min_recall: f64) {
    let matches = matches.as_array().expect("matches");
    assert_eq!(matches.len(), exact.len(), "full rows");
    let found = matches
        .iter()
        .filter(|m| exact.iter().any(|(id, _, _)| m["job_id"] == id.as_str()))
        .count();
    let recall = found as f64 / exact.len() as f64;
    assert!(recall >= min_recall, "recall {recall} < {min_recall}");
    for m in matches {
        if let Some((_, similarity, score)) =
            exact.iter().find(|(id, _, _)| m["job_id"] == id.as_str())
        {
            assert_same_figures(m, *similarity, *score);
        }
    }
    let scores: Vec<f64> = matches
        .iter()
        .map(|m| m["score"].as_f64().expect("score"))
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "ranked by score: {scores:?}"
    );
}

fn percentile(mut samples: Vec<f64>, p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test]
async fn async_match_ranks_exactly_and_legacy_agrees() {
    let s = stack().await;
    // The stack runs the production planner: 6,000 demo jobs are past the
    // derived exact gate (19 x sqrt(6000) = 1,472 rows), so the
    // unfiltered match goes through HNSW and is held to a recall; a match
    // the planner sends to the exact scan is held to the exact ranking.
    let cases = [
        (json!({"limit": 10}), ""),
        (
            json!({"limit": 5, "filters": {"remote": true, "employment_types": ["full_time", "contract"]}}),
            "AND j.remote AND j.employment_type IN ('full_time', 'contract')",
        ),
        (
            json!({"limit": 20, "filters": {"min_salary": 120000, "posted_within_days": 90}}),
            "AND coalesce(j.salary_max, j.salary_min) >= 120000 AND j.posted_at >= now() - interval '90 days'",
        ),
    ];
    for (body, filter_sql) in cases {
        let (status, took) = s.run_async("demo-user", &body).await;
        assert_eq!(status["status"], "completed", "{status}");
        assert_eq!(status["attempts"], 1);
        assert!(status["started_at"].is_string() && status["completed_at"].is_string());
        let result = &status["result"];
        let limit = body["limit"].as_i64().expect("limit");
        let exact = s.exact_ranking("demo-user", limit, filter_sql).await;
        assert_eq!(result["count"].as_u64(), Some(exact.len() as u64));
        assert_eq!(
            exact.len() as i64,
            limit,
            "demo data has enough jobs for {body}"
        );
        let plan = s.plan_for("demo-user", &body["filters"], limit).await;
        if body.get("filters").is_none() {
            assert_eq!(plan, "hnsw", "the unfiltered demo match");
        }
        match plan.as_str() {
            "exact" => assert_same_ranking(&result["matches"], &exact),
            _ => assert_close_ranking(&result["matches"], &exact, 0.9),
        }
        println!("e2e: {body} ran the {plan} plan");
        // Every match explains itself with the skills it shares with the profile.
        assert!(result["matches"]
            .as_array()
            .expect("matches")
            .iter()
            .any(|m| !m["matched_skills"].as_array().expect("skills").is_empty()));

        let resp = s
            .post("/jobs/match/legacy", Some("demo-user"), &body.to_string())
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let legacy: Value = resp.json().await.expect("json");
        assert_eq!(legacy["status"], "completed");
        assert_eq!(
            legacy["result"]["matches"], result["matches"],
            "legacy differs for {body}"
        );
        println!(
            "e2e: {body} completed in {:.0} ms (POST to completed, polling every 100 ms)",
            took.as_secs_f64() * 1000.0
        );
    }
}

#[tokio::test]
async fn inline_embedding_finds_its_own_job() {
    let s = stack().await;
    let row = sqlx::query(
        "SELECT id, embedding::text AS e, skills FROM jobs WHERE id LIKE 'job-%' ORDER BY id LIMIT 1 OFFSET 123",
    )
    .fetch_one(&s.db)
    .await
    .expect("a demo job");
    let id: String = row.get("id");
    let embedding: Vec<f64> = serde_json::from_str(row.get::<&str, _>("e")).expect("vector text");
    let skills: Vec<String> = row.get("skills");
    let body = json!({"embedding": embedding, "skills": skills, "limit": 3});
    let (status, _) = s.run_async("someone-without-profile", &body).await;
    assert_eq!(status["status"], "completed", "{status}");
    let top = &status["result"]["matches"][0];
    assert_eq!(top["job_id"], id.as_str());
    assert!((top["similarity"].as_f64().expect("similarity") - 1.0).abs() < 1e-5);
    assert!(
        (top["score"].as_f64().expect("score") - 1.0).abs() < 1e-5,
        "all skills matched: {top}"
    );
}

#[tokio::test]
async fn missing_profile_ends_failed_with_a_reason() {
    let s = stack().await;
    let sub = format!("no-profile-{}", uuid::Uuid::new_v4());
    let (status, _) = s.run_async(&sub, &json!({"limit": 3})).await;
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["error"]["code"], "profile_not_found");
    assert!(status["error"]["message"]
        .as_str()
        .expect("message")
        .contains("profile"));
    assert!(status.get("result").is_none());
}

#[tokio::test]
async fn bad_input_gets_problem_json() {
    let s = stack().await;
    let problem = |resp: &Response| {
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    };
    let resp = s
        .post("/jobs/match", Some("demo-user"), "{\"limit\": ")
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    problem(&resp);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], 400);
    assert!(body["detail"]
        .as_str()
        .expect("detail")
        .contains("malformed JSON"));

    let resp = s.post("/jobs/match", None, "{}").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    problem(&resp);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .starts_with("Bearer"));

    let resp = s
        .http
        .post(format!("{}/jobs/match", s.api))
        .bearer_auth("not.a.token")
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("invalid_token"));

    let resp = s
        .post("/jobs/match", Some("demo-user"), r#"{"limit": 0}"#)
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["errors"][0]["field"], "limit");

    let resp = s
        .get("/jobs/match/status/does-not-exist", "demo-user")
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    problem(&resp);

    // Another caller's task is not found either.
    let resp = s
        .post("/jobs/match", Some("demo-user"), r#"{"limit": 1}"#)
        .await;
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(
        s.get(&location, "mallory").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get(&location, "demo-user").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn health_reports_every_component() {
    let s = stack().await;
    let resp = s
        .http
        .get(format!("{}/health", s.api))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["components"]["postgres"]["pgvector"], "0.8.6");
    for c in ["postgres", "dynamodb", "sqs"] {
        assert_eq!(body["components"][c]["status"], "ok", "{body}");
        assert!(body["components"][c]["latency_ms"].is_number());
    }
}

/// POST /jobs/match does no database work: it writes the task to DynamoDB,
/// then sends its message to SQS, so its latency should sit near the sum of
/// the two writes. Figures are printed; the run compares them with the
/// writes made directly.
#[tokio::test]
async fn post_latency_tracks_the_slower_write() {
    let s = stack().await;
    let aws = shared::aws::load().await.expect("an HTTPS client");
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let table = env("TASKS_TABLE");
    // Probe messages go to a queue of their own so that no worker sees them.
    let queue = sqs
        .create_queue()
        .queue_name(format!("latency-probe-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .expect("probe queue")
        .queue_url
        .expect("queue url");
    let runs = 30;
    let (mut post, mut put, mut send) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let resp = s
            .post("/jobs/match", Some("demo-user"), r#"{"limit": 1}"#)
            .await;
        post.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(resp.status(), StatusCode::ACCEPTED);

        let t = Instant::now();
        dynamo
            .put_item()
            .table_name(&table)
            .item(
                "task_id",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("latency-probe-{i}")),
            )
            .item(
                "expires_at",
                aws_sdk_dynamodb::types::AttributeValue::N("0".into()),
            )
            .send()
            .await
            .expect("put");
        put.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        sqs.send_message()
            .queue_url(&queue)
            .message_body("latency-probe")
            .send()
            .await
            .expect("send");
        send.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    sqs.delete_queue()
        .queue_url(&queue)
        .send()
        .await
        .expect("delete probe queue");
    let (p50_post, p50_put, p50_send) = (
        percentile(post.clone(), 0.5),
        percentile(put, 0.5),
        percentile(send, 0.5),
    );
    println!(
        "e2e figures ({runs} runs): POST /jobs/match p50 {p50_post:.1} ms, p90 {:.1} ms (through gateway + cargo lambda watch); \
         PutItem p50 {p50_put:.1} ms; SendMessage p50 {p50_send:.1} ms; ratio POST/(PutItem + SendMessage) {:.2}",
        percentile(post, 0.9),
        p50_post / (p50_put + p50_send)
    );
}

#[tokio::test]
async fn text_matches_find_their_family_first_and_legacy_agrees() {
    let s = stack().await;
    let cases = [
        (
            "Registered nurse with six years of experience in intensive care and on a \
             surgical ward: medication, IV lines, patient assessment and shift handovers.",
            "nursing",
        ),
        (
            "I build batch and streaming data pipelines: Airflow schedules, Spark jobs, \
             dbt models and a Snowflake warehouse that analysts query every morning.",
            "data-engineering",
        ),
        (
            "backend engineer: Go and Rust services, PostgreSQL, REST and gRPC APIs",
            "backend",
        ),
        (
            "Brand and packaging designer. Typography, print production, Illustrator and \
             InDesign; I have designed logos and visual identities for small companies.",
            "graphic-design",
        ),
    ];
    for (text, want) in cases {
        let body = json!({"text": text, "limit": 10});
        let (status, took) = s.run_async("text-e2e", &body).await;
        assert_eq!(status["status"], "completed", "{status}");
        let matches = status["result"]["matches"].as_array().expect("matches");
        assert_eq!(matches.len(), 10);
        let families: Vec<&str> = matches
            .iter()
            .map(|m| family_of_job_id(m["job_id"].as_str().expect("id")).unwrap_or_default())
            .collect();
        assert_eq!(families[0], want, "{text:.40}: {families:?}");
        let hits = families.iter().filter(|f| **f == want).count();
        assert!(
            hits >= 7,
            "{text:.40}: only {hits} of 10 in {want}: {families:?}"
        );
        // Without skills in the request, nothing is matched on skills.
        assert!(matches
            .iter()
            .all(|m| m["matched_skills"].as_array().is_some_and(Vec::is_empty)));

        let resp = s
            .post("/jobs/match/legacy", Some("text-e2e"), &body.to_string())
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let legacy: Value = resp.json().await.expect("json");
        assert_eq!(
            legacy["result"]["matches"], status["result"]["matches"],
            "legacy differs for {text:.40}"
        );
        println!(
            "e2e: text ({want}) completed in {:.0} ms (POST to completed, polling every 100 ms)",
            took.as_secs_f64() * 1000.0
        );
    }
    // Skills beside the text explain the matches.
    let body = json!({"text": cases[2].0, "skills": ["PostgreSQL", "Go"], "limit": 5});
    let (status, _) = s.run_async("text-e2e", &body).await;
    assert!(status["result"]["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .any(|m| !m["matched_skills"].as_array().expect("skills").is_empty()));
}

#[tokio::test]
async fn bad_text_is_a_422_naming_the_field_and_stores_nothing() {
    let s = stack().await;
    let sub = format!("bad-text-{}", uuid::Uuid::new_v4().simple());
    let embedding: Vec<f32> = vec![0.05; 384];
    let bodies = [
        json!({"text": ""}),
        json!({"text": "  \n\t "}),
        json!({"text": "x".repeat(20_001)}),
        json!({"text": 42}),
        json!({"text": ["nurse"]}),
        json!({"text": "nurse", "embedding": embedding}),
    ];
    for path in ["/jobs/match", "/jobs/match/legacy"] {
        for body in &bodies {
            let resp = s.post(path, Some(&sub), &body.to_string()).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {body:.60}"
            );
            assert_eq!(resp.headers()["content-type"], "application/problem+json");
            let problem: Value = resp.json().await.expect("json");
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .filter_map(|e| e["field"].as_str())
                .collect();
            assert_eq!(fields, ["text"], "{path} {body:.60}: {problem}");
        }
    }
    let listed: Value = s
        .get("/jobs/match/tasks", &sub)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["tasks"],
        json!([]),
        "a rejected request stored a task"
    );
}
