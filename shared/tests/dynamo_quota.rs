//! The quota's buckets on DynamoDB against the local moto server: the burst,
//! the refill, the cap, concurrent takes, a refusal that writes nothing, one
//! caller's bucket beside another's, and a store that cannot be reached.
//! Each take is given its `now`, so no test waits on the clock.

mod common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use chrono::{DateTime, Duration, Utc};
use shared::adapters::dynamo_quota::{DynamoQuota, KEY};
use shared::error::Error;
use shared::ports::QuotaStore;
use shared::quota::{Policy, RateLimit};

struct Table {
    client: aws_sdk_dynamodb::Client,
    name: String,
}

async fn table() -> Table {
    let client = aws_sdk_dynamodb::Client::new(&common::local_aws().await);
    let name = common::unique("quota-test");
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(KEY)
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create table");
    Table { client, name }
}

impl Table {
    fn quota(&self, rate: f64, burst: u32) -> DynamoQuota {
        DynamoQuota::new(
            self.client.clone(),
            &self.name,
            Policy::new(rate, burst).expect("policy"),
        )
    }

    /// The bucket's item as stored: (tat, expires_at).
    async fn item(&self, caller: &str) -> Option<(i64, i64)> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key(KEY, AttributeValue::S(caller.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        let item = out.item?;
        let number = |name: &str| -> i64 {
            item[name]
                .as_n()
                .expect("a number")
                .parse()
                .expect("an integer")
        };
        Some((number("tat"), number("expires_at")))
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000 + secs, 0).expect("time")
}

async fn refused(quota: &DynamoQuota, caller: &str, now: DateTime<Utc>) -> RateLimit {
    match quota.take(caller, now).await {
        Err(Error::QuotaExceeded(limit)) => limit,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_burst_then_a_refusal_that_writes_nothing_then_the_refill() {
    let t = table().await;
    // One a second, five at once.
    let quota = t.quota(1.0, 5);
    for left in (0..5).rev() {
        let limit = quota.take("alice", at(0)).await.expect("admitted");
        assert_eq!(
            limit,
            RateLimit {
                quota: 5,
                window_secs: 5,
                remaining: left,
                reset_secs: 1
            }
        );
    }
    let before = t.item("alice").await.expect("a bucket");
    assert_eq!(
        before.0,
        at(5).timestamp_micros(),
        "empty: full again in 5 s"
    );
    assert!(before.1 >= at(5).timestamp(), "kept at least until full");
    let limit = refused(&quota, "alice", at(0)).await;
    assert_eq!((limit.remaining, limit.reset_secs), (0, 1));
    assert_eq!(
        t.item("alice").await,
        Some(before),
        "a refusal writes nothing"
    );

    // 1 s later, one token is back; half a second after that, none yet.
    let limit = quota.take("alice", at(1)).await.expect("refilled");
    assert_eq!(limit.remaining, 0);
    let limit = refused(&quota, "alice", at(1) + Duration::milliseconds(500)).await;
    assert_eq!(limit.reset_secs, 1);
    // Idle for an hour: five again, not 3,600.
    for left in (0..5).rev() {
        let limit = quota.take("alice", at(3_600)).await.expect("admitted");
        assert_eq!(limit.remaining, left);
    }
    refused(&quota, "alice", at(3_600)).await;
}

#[tokio::test]
async fn concurrent_takes_never_admit_more_than_the_bucket_holds() {
    let t = table().await;
    let quota = t.quota(1.0, 5);
    let takes = futures::future::join_all((0..20).map(|_| quota.take("carol", at(0)))).await;
    let admitted = takes.iter().filter(|r| r.is_ok()).count();
    let refusals = takes
        .iter()
        .filter(|r| matches!(r, Err(Error::QuotaExceeded(_))))
        .count();
    assert_eq!((admitted, refusals), (5, 15), "{takes:?}");
    let mut remaining: Vec<u32> = takes
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|l| l.remaining)
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, [0, 1, 2, 3, 4], "each token taken once");
}

#[tokio::test]
async fn one_callers_empty_bucket_leaves_anothers_full() {
    let t = table().await;
    let quota = t.quota(0.5, 2);
    quota.take("dave", at(0)).await.expect("1");
    quota.take("dave", at(0)).await.expect("2");
    let limit = refused(&quota, "dave", at(0)).await;
    // One each 2 s: the next in 2 s.
    assert_eq!(
        (limit.quota, limit.window_secs, limit.reset_secs),
        (2, 4, 2)
    );
    let erin = quota.take("erin", at(0)).await.expect("erin's own bucket");
    assert_eq!(erin.remaining, 1);
    assert!(
        t.item("frank").await.is_none(),
        "no item for a caller never seen"
    );
}

#[tokio::test]
async fn an_item_deleted_by_its_ttl_is_a_full_bucket() {
    let t = table().await;
    let quota = t.quota(1.0, 3);
    quota.take("gina", at(0)).await.expect("admitted");
    let (_, expires_at) = t.item("gina").await.expect("a bucket");
    // DynamoDB deletes the item some time after expires_at; by then it is full.
    t.client
        .delete_item()
        .table_name(&t.name)
        .key(KEY, AttributeValue::S("gina".into()))
        .send()
        .await
        .expect("delete");
    let at_expiry = DateTime::from_timestamp(expires_at, 0).expect("time");
    let limit = quota.take("gina", at_expiry).await.expect("admitted");
    assert_eq!(limit.remaining, 2);
}

#[tokio::test]
async fn a_missing_table_is_unavailable_so_the_request_fails_closed() {
    let t = table().await;
    let quota = DynamoQuota::new(
        t.client.clone(),
        "no-such-quota-table",
        Policy::new(1.0, 5).expect("policy"),
    );
    match quota.take("hank", at(0)).await {
        Err(e @ Error::Unavailable { .. }) => assert_eq!(e.status(), 503),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
