//! `GET /health` over the real adapters (local stack): 200 with every
//! component when all is up; 503 naming each failing component when a table
//! is missing or an endpoint accepts connections and never answers, and then
//! the answer still comes, cut by the 2 s probe timeout.

use api::handler::App;
use api::health::HEALTH_TIMEOUT;
use lambda_http::{Body, Request};
use serde_json::{json, Value};
use shared::adapters::db_connect::{password_pool, PoolSize};
use shared::adapters::dynamo::DynamoTaskStore;
use shared::adapters::memory::MemoryQuota;
use shared::adapters::postgres::PgJobIndex;
use shared::adapters::sqs::SqsTaskQueue;
use shared::auth::Verifier;

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| {
        panic!("{key} is not set: run `make up` and export .local/env (make test does both)")
    })
}

/// Accepts TCP connections and never answers: a hung dependency.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    addr
}

fn get_health() -> Request {
    lambda_http::http::Request::builder()
        .uri("/health")
        .body(Body::Empty)
        .expect("request")
}

/// Health takes nothing from the quota: any bucket will do.
fn quota() -> MemoryQuota {
    MemoryQuota::new(shared::quota::Policy::new(1.0, 1).expect("policy"))
}

async fn health<S, Q, J>(app: &App<S, Q, J, MemoryQuota>) -> (u16, Value)
where
    S: shared::ports::TaskStore + shared::ports::IdempotentTaskStore + shared::ports::TaskCanceller,
    Q: shared::ports::TaskQueue,
    J: shared::ports::JobIndex,
{
    let resp = app.handle(get_health()).await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = serde_json::from_slice(resp.body().as_ref()).expect("json");
    (resp.status().as_u16(), body)
}

#[tokio::test]
async fn all_up_is_200_with_each_component() {
    let aws = shared::aws::load().await.expect("an HTTPS client");
    let app = App {
        store: DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), env("TASKS_TABLE")),
        queue: SqsTaskQueue::new(aws_sdk_sqs::Client::new(&aws), env("QUEUE_URL")),
        index: PgJobIndex::new(
            password_pool(&env("DATABASE_URL"), PoolSize::new(1)).expect("pool"),
            20_000,
        ),
        quota: quota(),
        verifier: Verifier::hs256(b"unused", 0),
        task_ttl_secs: 60,
        legacy_text_wait: std::time::Duration::from_millis(300),
        text_bound: embed::tokenizer::TextBound::bundled(2_048).expect("the bundled tokenizer"),
        health_cache: Default::default(),
        callbacks: shared::callback::CallbackPolicy::new(""),
        cache: shared::ports::NoCache,
    };
    let (status, body) = health(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["failing"], json!([]));
    assert_eq!(body["components"]["postgres"]["pgvector"], "0.8.6");
    for c in ["postgres", "dynamodb", "sqs"] {
        assert_eq!(body["components"][c]["status"], "ok", "{body}");
        assert_eq!(body["components"][c]["timeout_ms"], 2000);
        assert!(body["components"][c]["latency_ms"].as_f64().is_some());
    }
}

#[tokio::test]
async fn missing_and_hung_dependencies_are_503_and_named() {
    let aws = shared::aws::load().await.expect("an HTTPS client");
    let hole = black_hole().await;
    // SQS through an endpoint that never answers.
    let hung_sqs = aws_sdk_sqs::config::Builder::from(&aws)
        .endpoint_url(format!("http://{hole}"))
        .build();
    let app = App {
        store: DynamoTaskStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            "no-such-table-for-health",
        ),
        queue: SqsTaskQueue::new(
            aws_sdk_sqs::Client::from_conf(hung_sqs),
            format!("http://{hole}/000000000000/q"),
        ),
        index: PgJobIndex::new(
            password_pool(
                &format!("postgres://postgres@{hole}/jobmatch"),
                PoolSize::new(1),
            )
            .expect("pool"),
            20_000,
        ),
        quota: quota(),
        verifier: Verifier::hs256(b"unused", 0),
        task_ttl_secs: 60,
        legacy_text_wait: std::time::Duration::from_millis(300),
        text_bound: embed::tokenizer::TextBound::bundled(2_048).expect("the bundled tokenizer"),
        health_cache: Default::default(),
        callbacks: shared::callback::CallbackPolicy::new(""),
        cache: shared::ports::NoCache,
    };
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["failing"], json!(["postgres", "dynamodb", "sqs"]));
    let timed_out = format!("no answer within {} ms", HEALTH_TIMEOUT.as_millis());
    assert_eq!(body["components"]["postgres"]["error"], timed_out.as_str());
    assert_eq!(body["components"]["sqs"]["error"], timed_out.as_str());
    // A missing table answers at once, with a reason but no internals.
    assert_eq!(body["components"]["dynamodb"]["error"], "unavailable");
    for c in ["postgres", "dynamodb", "sqs"] {
        assert_eq!(body["components"][c]["status"], "down");
    }
    assert!(
        !body.to_string().contains(&hole),
        "addresses stay in the log"
    );
}
