//! The DynamoDB task store against the local moto server: conditional
//! transitions, fencing, leases and expiry.

mod common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use chrono::Utc;
use shared::adapters::dynamo::DynamoTaskStore;
use shared::domain::{MatchResult, Task, TaskError, TaskStatus};
use shared::error::ErrorCode;
use shared::ports::{Claim, Fence, TaskReader, TaskWriter};

async fn store() -> DynamoTaskStore {
    let client = aws_sdk_dynamodb::Client::new(&common::local_aws().await);
    let table = common::unique("tasks-test");
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("task_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("task_id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create table");
    DynamoTaskStore::new(client, table)
}

fn pending(id: &str, ttl: i64) -> Task {
    Task::pending(
        id.into(),
        "alice".into(),
        common::request(5),
        Utc::now(),
        ttl,
    )
}

fn lease(ms: i64) -> i64 {
    Utc::now().timestamp_millis() + ms
}

#[tokio::test]
async fn create_then_get_round_trips_and_duplicates_are_refused() {
    let store = store().await;
    let mut task = pending("t1", 3600);
    task.request.skills = Some(vec!["rust".into()]);
    task.request.embedding = Some(common::axis(3, 0.5));
    store.create(&task).await.expect("create");
    let read = store
        .get("t1", Utc::now())
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read, task);
    assert!(
        store.create(&task).await.is_err(),
        "second create must fail"
    );
    assert_eq!(store.get("nope", Utc::now()).await.expect("get"), None);
}

#[tokio::test]
async fn lifecycle_is_fenced_by_conditional_writes() {
    let store = store().await;
    store.create(&pending("t1", 3600)).await.expect("create");

    let Claim::Claimed(task) = store
        .claim("t1", Utc::now(), lease(30_000))
        .await
        .expect("claim")
    else {
        panic!("first claim must succeed");
    };
    assert_eq!(task.status, TaskStatus::Processing);
    assert_eq!(task.attempts, 1);
    assert!(task.started_at.is_some());

    // A live lease keeps a second delivery out.
    assert_eq!(
        store
            .claim("t1", Utc::now(), lease(30_000))
            .await
            .expect("claim"),
        Claim::Busy
    );

    // A stale attempt cannot complete; the owner of the lease can.
    let result = MatchResult {
        matches: vec![],
        count: 0,
        query_ms: 1.5,
        cached: false,
        computed_at: Some(shared::domain::Timestamp::now()),
    };
    assert!(!store
        .complete("t1", Fence::Attempt(7), &result, Utc::now())
        .await
        .expect("complete"));
    assert!(store
        .complete("t1", Fence::Attempt(1), &result, Utc::now())
        .await
        .expect("complete"));

    // A finished task is never taken again nor overwritten.
    assert_eq!(
        store
            .claim("t1", Utc::now(), lease(30_000))
            .await
            .expect("claim"),
        Claim::Finished(TaskStatus::Completed)
    );
    let error = TaskError {
        code: ErrorCode::Internal,
        message: "y".into(),
    };
    assert!(!store
        .fail("t1", Fence::Attempt(1), &error, Utc::now())
        .await
        .expect("fail"));
    let done = store
        .get("t1", Utc::now())
        .await
        .expect("get")
        .expect("present");
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.result, Some(result));
    assert_eq!(done.lease_until, None);
    assert!(done.completed_at.is_some());
}

#[tokio::test]
async fn expired_or_released_lease_lets_a_redelivery_take_the_task() {
    let store = store().await;
    store.create(&pending("t1", 3600)).await.expect("create");
    // A lease already in the past, as if the worker crashed.
    assert!(matches!(
        store
            .claim("t1", Utc::now(), lease(-1))
            .await
            .expect("claim"),
        Claim::Claimed(_)
    ));
    let Claim::Claimed(task) = store
        .claim("t1", Utc::now(), lease(30_000))
        .await
        .expect("claim")
    else {
        panic!("an expired lease must be taken again");
    };
    assert_eq!(task.attempts, 2);
    store.release("t1", 2, Utc::now()).await.expect("release");
    let Claim::Claimed(task) = store
        .claim("t1", Utc::now(), lease(30_000))
        .await
        .expect("claim")
    else {
        panic!("a released lease must be taken again");
    };
    assert_eq!(task.attempts, 3);
}

#[tokio::test]
async fn pending_fence_and_expiry() {
    let store = store().await;
    store.create(&pending("t1", 3600)).await.expect("create");
    let error = TaskError {
        code: ErrorCode::EnqueueFailed,
        message: "m".into(),
    };
    assert!(store
        .fail("t1", Fence::Pending, &error, Utc::now())
        .await
        .expect("fail"));
    let failed = store
        .get("t1", Utc::now())
        .await
        .expect("get")
        .expect("present");
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.error, Some(error.clone()));

    // Expired but not yet deleted by TTL: absent everywhere.
    store.create(&pending("old", -10)).await.expect("create");
    assert_eq!(store.get("old", Utc::now()).await.expect("get"), None);
    assert_eq!(
        store
            .claim("old", Utc::now(), lease(30_000))
            .await
            .expect("claim"),
        Claim::Missing
    );
    // No terminal write reaches it either: the dead-letter consumer's fence
    // (Unfinished) nor the api's (Pending).
    for fence in [Fence::Unfinished, Fence::Pending] {
        assert!(
            !store
                .fail("old", fence, &error, Utc::now())
                .await
                .expect("fail"),
            "{fence:?} closed an expired task"
        );
    }
    assert_eq!(
        store
            .claim("ghost", Utc::now(), lease(30_000))
            .await
            .expect("claim"),
        Claim::Missing
    );
    store.ping().await.expect("ping");
}
