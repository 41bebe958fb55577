//! Idempotent creation and the owner listing of the DynamoDB task store,
//! against the local moto server: concurrent duplicates make one task, expired
//! tasks free their key, pages come newest first and only for their owner.

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use chrono::{Duration, Utc};
use shared::adapters::dynamo::{DynamoTaskStore, OWNER_INDEX};
use shared::adapters::memory::MemoryQueue;
use shared::domain::{Task, TaskError, TaskStatus};
use shared::error::ErrorCode;
use shared::idempotency;
use shared::ports::{Fence, TaskLister, TaskReader, TaskWriter};

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key")
}

/// A fresh table shaped like the real one (template.yaml): the owner GSI included.
async fn store() -> DynamoTaskStore {
    table().await.0
}

/// The store, its client and its table's name, to read raw items.
async fn table() -> (DynamoTaskStore, aws_sdk_dynamodb::Client, String) {
    let client = aws_sdk_dynamodb::Client::new(&common::local_aws().await);
    let table = common::unique("tasks-idem");
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("task_id"))
        .attribute_definitions(attr("owner"))
        .attribute_definitions(attr("created_at"))
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
                .expect("gsi"),
        )
        .send()
        .await
        .expect("create table");
    (DynamoTaskStore::new(client.clone(), &table), client, table)
}

#[tokio::test]
async fn concurrent_duplicates_create_exactly_one_task() {
    let store = store().await;
    let queue = MemoryQueue::default();
    let now = Utc::now();
    let attempts = 24;
    let runs = (0..attempts).map(|_| {
        idempotency::submit(
            &store,
            &queue,
            "alice",
            "pay-42",
            common::request(5),
            now,
            3600,
        )
    });
    let outcomes = futures::future::join_all(runs).await;
    let submitted: Vec<_> = outcomes
        .into_iter()
        .map(|o| o.expect("every duplicate is answered"))
        .collect();
    let created = submitted.iter().filter(|s| !s.replayed).count();
    assert_eq!(created, 1, "exactly one request created the task");
    let id = &submitted[0].task.task_id;
    assert!(submitted.iter().all(|s| &s.task.task_id == id));
    assert_eq!(
        queue.sent.lock().expect("lock").len(),
        1,
        "only the creator enqueued"
    );
    let page = store
        .list("alice", Utc::now(), 100, None)
        .await
        .expect("list");
    assert_eq!(page.tasks.len(), 1);
    println!("idempotency: {attempts} concurrent duplicates against moto -> 1 task, 1 message");
}

#[tokio::test]
async fn conflicting_body_and_other_callers_are_told_apart() {
    let store = store().await;
    let queue = MemoryQueue::default();
    let now = Utc::now();
    let first = idempotency::submit(&store, &queue, "alice", "k", common::request(5), now, 3600)
        .await
        .expect("created");
    let err = idempotency::submit(&store, &queue, "alice", "k", common::request(6), now, 3600)
        .await
        .expect_err("other body");
    assert_eq!(err.status(), 422);
    assert_eq!(err.code(), ErrorCode::IdempotencyKeyReused);
    let bob = idempotency::submit(&store, &queue, "bob", "k", common::request(5), now, 3600)
        .await
        .expect("bob");
    assert!(!bob.replayed);
    assert_ne!(bob.task.task_id, first.task.task_id);
    // The stored request round-trips through DynamoDB equal, so a replay matches.
    let again = idempotency::submit(&store, &queue, "alice", "k", common::request(5), now, 3600)
        .await
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(again.task, first.task);
}

#[tokio::test]
async fn an_expired_task_frees_its_key() {
    let store = store().await;
    let queue = MemoryQueue::default();
    let long_ago = Utc::now() - Duration::seconds(600);
    let old = idempotency::submit(
        &store,
        &queue,
        "alice",
        "k",
        common::request(5),
        long_ago,
        60,
    )
    .await
    .expect("old");
    assert!(store
        .get(&old.task.task_id, Utc::now())
        .await
        .expect("get")
        .is_none());
    let new = idempotency::submit(
        &store,
        &queue,
        "alice",
        "k",
        common::request(9),
        Utc::now(),
        3600,
    )
    .await
    .expect("the key is free again");
    assert!(!new.replayed);
    assert_eq!(new.task.task_id, old.task.task_id);
    let stored = store
        .get(&new.task.task_id, Utc::now())
        .await
        .expect("get")
        .expect("live");
    assert_eq!(stored.request.limit, 9);
}

/// A task whose message could not be sent was answered 503: the client's
/// retry with the same key and body writes a new task and queues it. A task
/// that failed after it was accepted is replayed as it is.
#[tokio::test]
async fn a_retry_after_a_503_runs_and_a_failed_task_replays() {
    let store = store().await;
    let now = Utc::now();
    let down = MemoryQueue {
        down: true,
        ..Default::default()
    };
    idempotency::submit(&store, &down, "alice", "k", common::request(5), now, 3600)
        .await
        .expect_err("queue down: 503");
    let up = MemoryQueue::default();
    let err = idempotency::submit(&store, &up, "alice", "k", common::request(6), now, 3600)
        .await
        .expect_err("another body");
    assert_eq!(err.status(), 422, "the same key with another body");
    let retry = idempotency::submit(&store, &up, "alice", "k", common::request(5), now, 3600)
        .await
        .expect("the retry is accepted");
    assert!(!retry.replayed);
    assert_eq!(up.sent.lock().expect("lock").len(), 1);
    let stored = store
        .get(&retry.task.task_id, now)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(stored.status, TaskStatus::Pending);
    assert_eq!(stored.error, None);

    let error = TaskError {
        code: ErrorCode::Internal,
        message: "boom".into(),
    };
    assert!(store
        .fail(&retry.task.task_id, Fence::Pending, &error, now)
        .await
        .expect("fail"));
    let again = idempotency::submit(&store, &up, "alice", "k", common::request(5), now, 3600)
        .await
        .expect("replayed");
    assert!(again.replayed);
    assert_eq!(again.task.status, TaskStatus::Failed);
    assert_eq!(up.sent.lock().expect("lock").len(), 1, "not queued again");
}

#[tokio::test]
async fn listing_is_newest_first_paged_and_per_owner() {
    let store = store().await;
    let base = Utc::now() - Duration::seconds(100);
    let mut ids = Vec::new();
    for i in 0..7 {
        let t = Task::pending(
            format!("task-{i}"),
            "alice".into(),
            common::request(5),
            base + Duration::seconds(i),
            3600,
        );
        store.create(&t).await.expect("create");
        ids.push(t.task_id);
    }
    // Expired, and someone else's: never listed for alice.
    let expired = Task::pending("gone".into(), "alice".into(), common::request(5), base, 10);
    store.create(&expired).await.expect("create");
    let bobs = Task::pending("bobs".into(), "bob".into(), common::request(5), base, 3600);
    store.create(&bobs).await.expect("create");

    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = store
            .list("alice", Utc::now(), 3, cursor.as_ref())
            .await
            .expect("page");
        assert!(page.tasks.len() <= 3);
        assert!(page.tasks.iter().all(|t| t.owner == "alice"));
        seen.extend(page.tasks.iter().map(|t| t.task_id.clone()));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "alice's live tasks, newest first, each once");
    let bob = store.list("bob", Utc::now(), 100, None).await.expect("bob");
    assert_eq!(bob.tasks.len(), 1);
    assert_eq!(bob.tasks[0].task_id, "bobs");
    assert!(bob.next.is_none());
}

/// A resume is kept while its task may run; once the task ends only its
/// SHA-256 and length stay, in the item and in the owner index, and an
/// idempotent replay still tells the same body from another.
#[tokio::test]
async fn an_ended_task_keeps_only_its_texts_digest() {
    let (store, client, table) = table().await;
    let queue = MemoryQueue::default();
    let now = Utc::now();
    let resume = "ICU nurse, 6 years";
    let digest = "f79e38922e6d5584a74d4d7c7bcae48ef6e13f578a945eefe3d7a06f070fa611";
    let with_text = |text: &str| shared::domain::MatchRequest {
        text: Some(text.into()),
        ..common::request(5)
    };
    let raw = |id: String| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            let item = client
                .get_item()
                .table_name(table)
                .key("task_id", AttributeValue::S(id))
                .consistent_read(true)
                .send()
                .await
                .expect("get item")
                .item
                .expect("the item");
            let request = item["request"].as_m().expect("request map").clone();
            (item, request)
        }
    };
    let indexed = || {
        let (client, table) = (client.clone(), table.clone());
        async move {
            client
                .query()
                .table_name(table)
                .index_name(OWNER_INDEX)
                .key_condition_expression("#owner = :owner")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", AttributeValue::S("alice".into()))
                .send()
                .await
                .expect("query the owner index")
                .items
                .unwrap_or_default()
        }
    };
    let mut ids = Vec::new();
    for key in ["completes", "fails"] {
        let task = idempotency::submit(&store, &queue, "alice", key, with_text(resume), now, 3600)
            .await
            .expect("created")
            .task;
        let (item, request) = raw(task.task_id.clone()).await;
        assert_eq!(
            request["text"].as_s().map(String::as_str),
            Ok(resume),
            "kept while pending"
        );
        assert_eq!(item["text_sha256"].as_s().map(String::as_str), Ok(digest));
        assert_eq!(item["text_chars"].as_n().map(String::as_str), Ok("18"));
        ids.push(task.task_id);
    }
    let shared::ports::Claim::Claimed(_) = store
        .claim(&ids[0], now, now.timestamp_millis() + 30_000)
        .await
        .expect("claim")
    else {
        panic!("claimed");
    };
    let result = shared::domain::MatchResult {
        matches: vec![],
        count: 0,
        query_ms: 1.0,
        cached: false,
        computed_at: Some(shared::domain::Timestamp::now()),
    };
    assert!(store
        .complete(&ids[0], Fence::Attempt(1), &result, now)
        .await
        .expect("complete"));
    let error = TaskError {
        code: ErrorCode::DeadLettered,
        message: "x".into(),
    };
    assert!(store
        .fail(&ids[1], Fence::Unfinished, &error, now)
        .await
        .expect("fail"));

    for id in &ids {
        let (item, request) = raw(id.clone()).await;
        assert!(!request.contains_key("text"), "{id}: {request:?}");
        assert_eq!(
            request["limit"].as_n().map(String::as_str),
            Ok("5"),
            "the rest stays"
        );
        assert_eq!(item["text_sha256"].as_s().map(String::as_str), Ok(digest));
        assert_eq!(item["text_chars"].as_n().map(String::as_str), Ok("18"));
        let task = store.get(id, now).await.expect("get").expect("live");
        assert!(task.status.is_finished());
        assert_eq!(task.request.text, None);
        assert_eq!(task.text_chars, Some(18));
    }
    let entries = indexed().await;
    assert_eq!(entries.len(), 2);
    for entry in &entries {
        let request = entry["request"].as_m().expect("request map");
        assert!(!request.contains_key("text"), "the index: {entry:?}");
        assert_eq!(entry["text_sha256"].as_s().map(String::as_str), Ok(digest));
    }
    let listed = store.list("alice", now, 10, None).await.expect("list");
    assert!(listed.tasks.iter().all(|t| t.request.text.is_none()));

    let again = idempotency::submit(
        &store,
        &queue,
        "alice",
        "completes",
        with_text(resume),
        now,
        3600,
    )
    .await
    .expect("the same body replays");
    assert!(again.replayed);
    assert_eq!(again.task.task_id, ids[0]);
    let other = idempotency::submit(
        &store,
        &queue,
        "alice",
        "completes",
        with_text("ICU nurse, 7 years"),
        now,
        3600,
    )
    .await
    .expect_err("another text of the same length");
    assert_eq!(other.status(), 422);
}
