//! The quota per caller through the api handler over the real DynamoDB and
//! SQS adapters (moto, from `.local/env`), on tables and a queue of this
//! test's own: one caller's burst of QUOTA_BURST + 20, async and legacy
//! mixed, is refused in part, nothing is written or sent for a refusal, and
//! another caller is served meanwhile. (e2e/tests/quota.rs does the same
//! through the local stack's gateway.)

use std::time::{Duration, Instant};

use api::handler::App;
use api::health::HealthCache;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::adapters::dynamo::{DynamoTaskStore, OWNER_INDEX};
use shared::adapters::dynamo_quota::{DynamoQuota, KEY};
use shared::adapters::memory::MemoryJobIndex;
use shared::adapters::sqs::SqsTaskQueue;
use shared::auth::Verifier;
use shared::ports::{NoCache, TaskLister};
use shared::quota::Policy;

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
const BURST: u32 = 10;
/// One request each 2 s: a few come back while the burst runs.
const RATE: f64 = 0.5;

fn unique(prefix: &str) -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key")
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute")
}

type QuotaApp = App<DynamoTaskStore, SqsTaskQueue, MemoryJobIndex, DynamoQuota>;

/// The api over its own tasks table (with the owner index), quota table and queue.
async fn app() -> (QuotaApp, aws_sdk_sqs::Client, String) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1"),
        "AWS_ENDPOINT_URL must be the local moto server (export .local/env): {endpoint:?}"
    );
    let aws = shared::aws::load().await.expect("an HTTPS client");
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let tasks = unique("quota-api-tasks");
    dynamodb
        .create_table()
        .table_name(&tasks)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute("task_id"))
        .attribute_definitions(string_attribute("owner"))
        .attribute_definitions(string_attribute("created_at"))
        .key_schema(key("task_id", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(OWNER_INDEX)
                .key_schema(key("owner", KeyType::Hash))
                .key_schema(key("created_at", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .send()
        .await
        .expect("tasks table");
    let buckets = unique("quota-api-buckets");
    dynamodb
        .create_table()
        .table_name(&buckets)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(KEY))
        .key_schema(key(KEY, KeyType::Hash))
        .send()
        .await
        .expect("quota table");
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("quota-api-queue"))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue url");
    let app = App {
        store: DynamoTaskStore::new(dynamodb.clone(), tasks),
        queue: SqsTaskQueue::new(sqs.clone(), queue_url.clone()),
        index: MemoryJobIndex::default(),
        quota: DynamoQuota::new(dynamodb, buckets, Policy::new(RATE, BURST).expect("policy")),
        verifier: Verifier::hs256(SECRET, 0),
        task_ttl_secs: 600,
        legacy_text_wait: Duration::from_millis(300),
        text_bound: embed::tokenizer::TextBound::bundled(2_048).expect("the bundled tokenizer"),
        health_cache: HealthCache::default(),
        callbacks: shared::callback::CallbackPolicy::new(""),
        cache: NoCache,
    };
    (app, sqs, queue_url)
}

fn post(path: &str, sub: &str, body: &str) -> Request {
    let token = shared::auth::mint_hs256(SECRET, sub, 600).expect("token");
    lambda_http::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body.to_owned()))
        .expect("request")
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in a {}", resp.status()))
        .to_str()
        .expect("ascii")
}

#[tokio::test]
async fn a_burst_past_the_quota_writes_nothing_for_the_refused_and_spares_another_caller() {
    let (app, sqs, queue_url) = app().await;
    let mut embedding = vec![0.0f32; shared::domain::EMBEDDING_DIM];
    embedding[0] = 1.0;
    let legacy_body = json!({"embedding": embedding, "limit": 3}).to_string();
    let paths: Vec<&str> = (0..BURST + 20)
        .map(|i| {
            if i % 5 == 4 {
                "/jobs/match/legacy"
            } else {
                "/jobs/match"
            }
        })
        .collect();
    let started = Instant::now();
    let burst = futures::future::join_all(paths.iter().map(|path| {
        let body = if *path == "/jobs/match" {
            "{}"
        } else {
            legacy_body.as_str()
        };
        app.handle(post(path, "alice", body))
    }));
    let (answers, bob) = tokio::join!(burst, app.handle(post("/jobs/match", "bob", "{}")));
    let elapsed = started.elapsed().as_secs_f64();

    let (mut accepted_async, mut accepted_legacy, mut refused) = (0, 0, 0);
    for (path, resp) in paths.iter().zip(&answers) {
        assert_eq!(header(resp, "ratelimit-policy"), r#""match";q=10;w=20"#);
        match resp.status().as_u16() {
            202 => accepted_async += 1,
            200 => accepted_legacy += 1,
            429 => {
                refused += 1;
                assert_eq!(header(resp, "content-type"), "application/problem+json");
                let retry = header(resp, "retry-after");
                assert_eq!(
                    header(resp, "ratelimit"),
                    format!(r#""match";r=0;t={retry}"#)
                );
                let wait: u64 = retry.parse().expect("delay-seconds");
                assert!((1..=2).contains(&wait), "one token each 2 s: {wait}");
            }
            other => panic!("{path} answered {other}: {:?}", resp.body()),
        }
    }
    let accepted = accepted_async + accepted_legacy;
    let most = BURST as usize + (RATE * elapsed).ceil() as usize + 1;
    println!(
        "quota through the handler: {accepted_async} async and {accepted_legacy} legacy \
         accepted, {refused} refused in {elapsed:.2} s"
    );
    assert!(
        accepted >= BURST as usize,
        "a full bucket admits its burst: {accepted}"
    );
    assert!(accepted <= most, "{accepted} accepted, at most {most}");
    assert!(refused >= 1);

    // Bob's own bucket: full, whatever alice did.
    assert_eq!(bob.status(), 202);
    assert_eq!(header(&bob, "ratelimit"), r#""match";r=9;t=2"#);

    // Written and sent: alice's accepted async requests and bob's, nothing more.
    let page = app
        .store
        .list("alice", Utc::now(), 100, None)
        .await
        .expect("owner index");
    assert_eq!(page.tasks.len(), accepted_async);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("queue attributes");
    let queued: usize = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .expect("count")
        .parse()
        .expect("a number");
    assert_eq!(queued, accepted_async + 1);
}
