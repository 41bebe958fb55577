//! Idempotent creation and the owner listing of the DynamoDB task store,
//! against the local moto server: concurrent duplicates make one task, expired
//! tasks free their key, pages come newest first and only for their owner.

mod common;

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
    DynamoTaskStore::new(client, table)
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
