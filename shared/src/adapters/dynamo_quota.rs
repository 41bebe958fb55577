//! The quota's buckets on DynamoDB (`crate::quota`), in a table of their own
//! (`QUOTA_TABLE`, key `caller`): one item per caller holding its tat (µs)
//! and a TTL. A take is a conditional UpdateItem; its condition is the
//! bucket's arithmetic, so that concurrent instances never admit more than
//! the bucket holds, and a refusal writes nothing.
//!
//! Two cases, two conditions (an update expression has no `max`):
//! - a full bucket (no item, or its tat passed) starts over from now:
//!   `SET tat = now + interval`;
//! - a bucket in use with room: `SET tat = tat + interval`.
//!
//! The full case is tried first: it is the state of a caller within its rate,
//! so their take is one write. A caller in a burst pays two (the first
//! condition fails and returns the tat); a refused one pays one.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ports::QuotaStore;
use crate::quota::{Policy, RateLimit};

const COMPONENT: &str = "quota store";
/// The key attribute (template.yaml QuotaTable, infra/local/stack.py).
pub const KEY: &str = "caller";
const TAT: &str = "tat";
/// Each failed condition means another instance took a token in between,
/// or the item was deleted; three rounds cover both happening at once.
const MAX_ROUNDS: usize = 3;

#[derive(Clone, Debug)]
pub struct DynamoQuota {
    client: Client,
    table: String,
    policy: Policy,
}

type Item = HashMap<String, AttributeValue>;

/// A conditional update's outcome: the item after it, or (condition failed)
/// the item as it was.
type Outcome = std::result::Result<Option<Item>, Option<Item>>;

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn tat_of(item: Option<&Item>) -> Result<Option<i64>> {
    match item.and_then(|i| i.get(TAT)) {
        None => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| Error::Internal(format!("quota bucket: tat {v:?} is not an integer"))),
        Some(other) => Err(Error::Internal(format!(
            "quota bucket: tat is {other:?}, not a number"
        ))),
    }
}

impl DynamoQuota {
    pub fn new(client: Client, table: impl Into<String>, policy: Policy) -> DynamoQuota {
        DynamoQuota {
            client,
            table: table.into(),
            policy,
        }
    }

    async fn update(
        &self,
        caller: &str,
        expression: &str,
        condition: &str,
        values: &[(&str, i64)],
    ) -> Result<Outcome> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(caller.to_owned()))
            .update_expression(expression)
            .condition_expression(condition)
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in values {
            req = req.expression_attribute_values(*name, n(*value));
        }
        match req.send().await {
            Ok(out) => Ok(Ok(out.attributes)),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(e) => Ok(Err(e.item)),
                other => Err(Error::unavailable(COMPONENT, DisplayErrorContext(other))),
            },
        }
    }
}

impl QuotaStore for DynamoQuota {
    async fn take(&self, caller: &str, now: DateTime<Utc>) -> Result<RateLimit> {
        let p = &self.policy;
        let now_us = now.timestamp_micros();
        let limit = p.limit(now_us);
        let expires_at = p.expires_at(now_us);
        let refused = |tat| Err(Error::QuotaExceeded(p.state(tat, now_us)));
        for _ in 0..MAX_ROUNDS {
            let fresh = p.fresh(now_us);
            match self
                .update(
                    caller,
                    "SET tat = :fresh, expires_at = :expires",
                    "attribute_not_exists(tat) OR tat <= :now",
                    &[
                        (":fresh", fresh),
                        (":expires", expires_at),
                        (":now", now_us),
                    ],
                )
                .await?
            {
                Ok(_) => return Ok(p.state(fresh, now_us)),
                Err(old) => match tat_of(old.as_ref())? {
                    Some(tat) if tat > limit => return refused(tat),
                    // Room for one more: the second case below.
                    Some(_) => {}
                    // Deleted in between: start over.
                    None => continue,
                },
            }
            match self
                .update(
                    caller,
                    "SET tat = tat + :interval, expires_at = :expires",
                    "tat > :now AND tat <= :limit",
                    &[
                        (":interval", p.interval_us()),
                        (":expires", expires_at),
                        (":now", now_us),
                        (":limit", limit),
                    ],
                )
                .await?
            {
                Ok(new) => {
                    let tat = tat_of(new.as_ref())?.ok_or_else(|| {
                        Error::Internal("quota bucket: the update returned no tat".into())
                    })?;
                    return Ok(p.state(tat, now_us));
                }
                Err(old) => match tat_of(old.as_ref())? {
                    Some(tat) if tat > limit => return refused(tat),
                    // Deleted in between: start over.
                    _ => continue,
                },
            }
        }
        Err(Error::unavailable(
            COMPONENT,
            format!("the bucket of {caller} changed under {MAX_ROUNDS} rounds of writes"),
        ))
    }
}
