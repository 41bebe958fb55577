//! The task store on DynamoDB. Every state change is a conditional write, so a
//! duplicate or late delivery can neither run a task twice nor undo its end.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{MatchResult, Task, TaskError, TaskStatus, Timestamp, EMBEDDING_DIM};
use crate::error::{Error, ErrorCode, Result};
use crate::ports::{
    Cancel, Claim, Fence, IdempotentTaskStore, PageCursor, TaskCanceller, TaskLister, TaskPage,
    TaskReader, TaskWriter,
};

const COMPONENT: &str = "dynamodb";
/// The GSI on `owner` + `created_at` (template.yaml, infra/local/stack.py).
pub const OWNER_INDEX: &str = "owner-created_at";
/// A listing page reads at most this many index pages (expired items are
/// skipped), so that it always answers promptly.
const MAX_QUERY_ROUNDS: usize = 5;

/// The state changes the store writes. Each knows its update expression and
/// the placeholders it uses for DynamoDB's reserved words (`result`,
/// `error`, `text`; `#status` is always named, as every condition reads it).
/// A task that ends loses its request's text: only its digest stays
/// (`Task::text_sha256`), in the table and so in the owner index, which
/// projects every attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Update {
    /// `pending` (or `processing` with an expired lease) → `processing`.
    Claim,
    Complete,
    Fail,
    /// Gives the lease back.
    Release,
    /// `pending` or `processing` → `cancelled`, by the owner.
    Cancel,
}

impl Update {
    fn expression(self) -> &'static str {
        match self {
            Update::Claim => {
                "SET #status = :processing, attempts = if_not_exists(attempts, :zero) + :one, \
                 started_at = :now, updated_at = :now, lease_until = :lease"
            }
            Update::Complete => {
                "SET #status = :completed, #result = :result, completed_at = :now, \
                 updated_at = :now REMOVE lease_until, #request.#text"
            }
            Update::Fail => {
                "SET #status = :failed, #error = :error, completed_at = :now, updated_at = :now \
                 REMOVE lease_until, #request.#text"
            }
            Update::Release => "SET lease_until = :released, updated_at = :now",
            Update::Cancel => {
                "SET #status = :cancelled, completed_at = :now, updated_at = :now \
                 REMOVE lease_until, #request.#text"
            }
        }
    }

    /// The placeholders besides `#status`, with the attributes they stand for.
    fn names(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // In the order of their names, as the test below reads them.
            Update::Complete => &[("#request", REQUEST), ("#result", RESULT), ("#text", TEXT)],
            Update::Fail => &[("#error", "error"), ("#request", REQUEST), ("#text", TEXT)],
            Update::Cancel => &[("#request", REQUEST), ("#text", TEXT)],
            Update::Claim | Update::Release => &[],
        }
    }

    /// The placeholders its condition uses besides `#status` (`owner` is a
    /// reserved word).
    fn condition_names(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Update::Cancel => &[("#owner", "owner")],
            Update::Claim | Update::Complete | Update::Fail | Update::Release => &[],
        }
    }
}

#[derive(Clone, Debug)]
pub struct DynamoTaskStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn unavailable(err: impl std::error::Error) -> Error {
    Error::unavailable(COMPONENT, DisplayErrorContext(err))
}

fn attr(value: &impl Serialize) -> Result<AttributeValue> {
    serde_dynamo::to_attribute_value(value).map_err(|e| Error::Internal(format!("encode: {e}")))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn now_ts(now: DateTime<Utc>) -> Result<AttributeValue> {
    attr(&Timestamp::from(now))
}

/// The task's attributes holding its request and its result, and the
/// request's embedding.
const REQUEST: &str = "request";
const RESULT: &str = "result";
const EMBEDDING: &str = "embedding";
/// The request's text, dropped when the task ends.
const TEXT: &str = "text";

/// The two large values of a task are stored in a compact form:
/// - the request's embedding packed, 384 little-endian f32 in one binary
///   attribute (1,536 bytes) instead of a list of 384 numbers (about 2.5
///   kB), so every write of the task costs fewer write units;
/// - the result as its JSON text, one string attribute instead of a map of
///   about 150 typed values, a document written once and read whole.
///
/// moto, the local DynamoDB, which answers one request at a time and so
/// bounds the local stack under load, parsed, copied and serialised those
/// values element by element (timed in-process, moto 5.2.5): the three
/// writes of a task 190 → 69 ms under cProfile with the embedding packed;
/// completing 6.0 → 4.0 ms and a GetItem of a completed task 12.5 → 2.3 ms
/// with the result as text. Both forms decode, so earlier tasks still read.
fn encode(task: &Task) -> Result<Item> {
    let mut item: Item =
        serde_dynamo::to_item(task).map_err(|e| Error::Internal(format!("encode task: {e}")))?;
    if let (Some(AttributeValue::M(request)), Some(embedding)) =
        (item.get_mut(REQUEST), task.request.embedding.as_deref())
    {
        request.insert(EMBEDDING.to_owned(), packed(embedding));
    }
    if let Some(result) = &task.result {
        item.insert(RESULT.to_owned(), result_text(result)?);
    }
    Ok(item)
}

fn packed(embedding: &[f32]) -> AttributeValue {
    let bytes: Vec<u8> = embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
    AttributeValue::B(Blob::new(bytes))
}

fn result_text(result: &MatchResult) -> Result<AttributeValue> {
    serde_json::to_string(result)
        .map(AttributeValue::S)
        .map_err(|e| Error::Internal(format!("encode result: {e}")))
}

/// An item as its task, in either form of each large value: the compact
/// ones are taken out here, the earlier ones are left to serde. Also how
/// the callbacks' function reads a task from the table's stream.
pub fn decode(mut item: Item) -> Result<Task> {
    let bad = |what: String| Error::Internal(format!("decode task: {what}"));
    let packed = match item.get_mut(REQUEST) {
        Some(AttributeValue::M(request)) => take_if(request, EMBEDDING, AttributeValue::is_b),
        _ => None,
    };
    let text = take_if(&mut item, RESULT, AttributeValue::is_s);
    let mut task: Task = serde_dynamo::from_item(item).map_err(|e| bad(e.to_string()))?;
    if let Some(AttributeValue::B(bytes)) = packed {
        let bytes = bytes.into_inner();
        if bytes.len() != EMBEDDING_DIM * 4 {
            return Err(bad(format!("a packed embedding of {} bytes", bytes.len())));
        }
        let embedding = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        task.request.embedding = Some(embedding);
    }
    if let Some(AttributeValue::S(text)) = text {
        task.result = Some(serde_json::from_str(&text).map_err(|e| bad(format!("result: {e}")))?);
    }
    Ok(task)
}

/// Removes `key` from `map` when its value is of the wanted form.
fn take_if(map: &mut Item, key: &str, form: fn(&AttributeValue) -> bool) -> Option<AttributeValue> {
    if map.get(key).is_some_and(form) {
        map.remove(key)
    } else {
        None
    }
}

impl DynamoTaskStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoTaskStore {
        DynamoTaskStore {
            client,
            table: table.into(),
        }
    }

    async fn get_item(&self, task_id: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("task_id", s(task_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// A conditional update; `Ok(None)` when the condition failed, with the old
    /// item when DynamoDB returns it.
    async fn update(
        &self,
        task_id: &str,
        update: Update,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        return_new: bool,
    ) -> Result<std::result::Result<Option<Item>, Option<Item>>> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("task_id", s(task_id))
            .update_expression(update.expression())
            .condition_expression(condition)
            // Every condition names the status.
            .expression_attribute_names("#status", "status")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (placeholder, name) in update.names().iter().chain(update.condition_names()) {
            req = req.expression_attribute_names(*placeholder, *name);
        }
        if return_new {
            req = req.return_values(ReturnValue::AllNew);
        }
        for (name, value) in values {
            req = req.expression_attribute_values(name, value);
        }
        match req.send().await {
            Ok(out) => Ok(Ok(out.attributes)),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(e) => Ok(Err(e.item)),
                other => Err(unavailable(other)),
            },
        }
    }

    fn fence_condition(fence: Fence) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
        match fence {
            Fence::Pending => ("#status = :pending", vec![(":pending", s("pending"))]),
            Fence::Attempt(attempt) => (
                "#status = :processing AND attempts = :attempt",
                vec![(":processing", s("processing")), (":attempt", n(attempt))],
            ),
            Fence::Unfinished => (
                "#status IN (:pending, :processing)",
                vec![(":pending", s("pending")), (":processing", s("processing"))],
            ),
        }
    }

    async fn finish(
        &self,
        task_id: &str,
        fence: Fence,
        update: Update,
        mut values: Vec<(&str, AttributeValue)>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (fence_condition, fence_values) = Self::fence_condition(fence);
        // An expired task is absent (DESIGN: "treated as absent"), even
        // before DynamoDB's TTL deletes it.
        let condition = format!("expires_at > :now_secs AND ({fence_condition})");
        values.extend(fence_values);
        values.push((":now", now_ts(now)?));
        values.push((":now_secs", n(now.timestamp())));
        Ok(self
            .update(task_id, update, &condition, values, false)
            .await?
            .is_ok())
    }
}

impl TaskReader for DynamoTaskStore {
    async fn get(&self, task_id: &str, now: DateTime<Utc>) -> Result<Option<Task>> {
        match self.get_item(task_id).await? {
            Some(item) => Ok(Some(decode(item)?).filter(|t| !t.is_expired(now))),
            None => Ok(None),
        }
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

impl TaskWriter for DynamoTaskStore {
    async fn create(&self, task: &Task) -> Result<()> {
        let item = encode(task)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(task_id)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim(&self, task_id: &str, now: DateTime<Utc>, lease_until_ms: i64) -> Result<Claim> {
        let outcome = self
            .update(
                task_id,
                Update::Claim,
                "attribute_exists(task_id) AND expires_at > :now_secs AND \
                 (#status = :pending OR (#status = :processing AND lease_until < :now_ms))",
                vec![
                    (":processing", s("processing")),
                    (":pending", s("pending")),
                    (":zero", n(0)),
                    (":one", n(1)),
                    (":now", now_ts(now)?),
                    (":lease", n(lease_until_ms)),
                    (":now_secs", n(now.timestamp())),
                    (":now_ms", n(now.timestamp_millis())),
                ],
                true,
            )
            .await?;
        let old = match outcome {
            Ok(Some(new)) => return Ok(Claim::Claimed(Box::new(decode(new)?))),
            Ok(None) => return Err(Error::Internal("claim returned no item".into())),
            Err(Some(old)) => old,
            // Some DynamoDB emulations return no old item; read it.
            Err(None) => match self.get_item(task_id).await? {
                Some(old) => old,
                None => return Ok(Claim::Missing),
            },
        };
        let task = decode(old)?;
        Ok(if task.is_expired(now) {
            Claim::Missing
        } else if task.status.is_finished() {
            Claim::Finished(task.status)
        } else {
            Claim::Busy
        })
    }

    async fn complete(
        &self,
        task_id: &str,
        fence: Fence,
        result: &MatchResult,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.finish(
            task_id,
            fence,
            Update::Complete,
            vec![
                (":completed", s(TaskStatus::Completed.as_str())),
                (":result", result_text(result)?),
            ],
            now,
        )
        .await
    }

    async fn fail(
        &self,
        task_id: &str,
        fence: Fence,
        error: &TaskError,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.finish(
            task_id,
            fence,
            Update::Fail,
            vec![
                (":failed", s(TaskStatus::Failed.as_str())),
                (":error", attr(error)?),
            ],
            now,
        )
        .await
    }

    async fn release(&self, task_id: &str, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        self.finish(
            task_id,
            Fence::Attempt(attempt),
            Update::Release,
            vec![(":released", n(0))],
            now,
        )
        .await
        .map(|_| ())
    }
}

impl TaskCanceller for DynamoTaskStore {
    async fn cancel(&self, task_id: &str, owner: &str, now: DateTime<Utc>) -> Result<Cancel> {
        let outcome = self
            .update(
                task_id,
                Update::Cancel,
                "attribute_exists(task_id) AND #owner = :owner AND expires_at > :now_secs \
                 AND #status IN (:pending, :processing)",
                vec![
                    (":cancelled", s(TaskStatus::Cancelled.as_str())),
                    (":pending", s(TaskStatus::Pending.as_str())),
                    (":processing", s(TaskStatus::Processing.as_str())),
                    (":owner", s(owner)),
                    (":now", now_ts(now)?),
                    (":now_secs", n(now.timestamp())),
                ],
                true,
            )
            .await?;
        let old = match outcome {
            Ok(Some(new)) => return Ok(Cancel::Cancelled(Box::new(decode(new)?))),
            Ok(None) => return Err(Error::Internal("cancel returned no item".into())),
            Err(Some(old)) => Some(old),
            // Some DynamoDB emulations return no old item; read it.
            Err(None) => self.get_item(task_id).await?,
        };
        let Some(old) = old else {
            return Ok(Cancel::Missing);
        };
        let task = decode(old)?;
        Ok(if task.owner != owner || task.is_expired(now) {
            Cancel::Missing
        } else {
            Cancel::Finished(Box::new(task))
        })
    }
}

impl IdempotentTaskStore for DynamoTaskStore {
    async fn create_or_get(&self, task: &Task, now: DateTime<Utc>) -> Result<Option<Task>> {
        let item = encode(task)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // One conditional write decides: DynamoDB serialises writes to an item.
            .condition_expression("attribute_not_exists(task_id) OR expires_at <= :now_secs")
            .expression_attribute_values(":now_secs", n(now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(e) => match e.item {
                    Some(old) => decode(old).map(Some),
                    // Some DynamoDB emulations return no old item; read it.
                    None => match self.get_item(&task.task_id).await? {
                        Some(old) => decode(old).map(Some),
                        None => Err(Error::unavailable(
                            COMPONENT,
                            "idempotent write lost to a task that vanished",
                        )),
                    },
                },
                other => Err(unavailable(other)),
            },
        }
    }

    async fn replace_unqueued(&self, task: &Task) -> Result<bool> {
        // The same rule as `Task::never_queued`, as a condition.
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(task)?))
            .condition_expression("#status = :failed AND #error.#code = :enqueue_failed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_names("#code", "code")
            .expression_attribute_values(":failed", s(TaskStatus::Failed.as_str()))
            .expression_attribute_values(":enqueue_failed", s(ErrorCode::EnqueueFailed.as_str()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(unavailable(other)),
            },
        }
    }
}

impl TaskLister for DynamoTaskStore {
    async fn list(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
        after: Option<&PageCursor>,
    ) -> Result<TaskPage> {
        let mut tasks = Vec::new();
        let mut start = after.map(|c| {
            HashMap::from([
                ("task_id".to_owned(), s(&c.task_id)),
                ("owner".to_owned(), s(owner)),
                ("created_at".to_owned(), s(&c.created_at)),
            ])
        });
        for _ in 0..MAX_QUERY_ROUNDS {
            let wanted = limit as usize - tasks.len();
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OWNER_INDEX)
                .key_condition_expression("#owner = :owner")
                // Expired items may linger until DynamoDB deletes them.
                .filter_expression("expires_at > :now_secs")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_values(":now_secs", n(now.timestamp()))
                .scan_index_forward(false)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in out.items.unwrap_or_default() {
                tasks.push(decode(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() || tasks.len() >= limit as usize {
                break;
            }
        }
        // The cursor is where the index read stopped; a last page has none.
        let key = |k: &Item, name: &str| match k.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(Error::Internal(format!("page key without {name}"))),
        };
        let next = match start {
            Some(k) => Some(PageCursor {
                created_at: key(&k, "created_at")?,
                task_id: key(&k, "task_id")?,
            }),
            None => None,
        };
        Ok(TaskPage { tasks, next })
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode, Item, Update};
    use crate::domain::{EmploymentType, JobMatch, MatchResult, Task, Timestamp, EMBEDDING_DIM};
    use crate::error::ErrorCode;
    use crate::request::MatchRequest;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn task_with(embedding: Option<Vec<f32>>) -> Task {
        let request = MatchRequest {
            embedding,
            skills: Some(vec!["rust".into()]),
            ..MatchRequest::default()
        };
        Task::pending(
            "t-1".into(),
            "alice".into(),
            request,
            chrono::Utc::now(),
            60,
        )
    }

    #[test]
    fn the_embedding_is_stored_packed_and_both_forms_decode() {
        // Values whose decimal form is long: the packed form keeps every bit.
        let embedding: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|i| (i as f32 * 0.7311).sin() / 19.0)
            .collect();
        let task = task_with(Some(embedding));
        let item = encode(&task).expect("encode");
        let Some(AttributeValue::M(request)) = item.get("request") else {
            panic!("no request map: {item:?}");
        };
        match request.get("embedding") {
            Some(AttributeValue::B(b)) => assert_eq!(b.as_ref().len(), EMBEDDING_DIM * 4),
            other => panic!("embedding stored as {other:?}"),
        }
        assert_eq!(decode(item).expect("decode"), task);
        // A task written before packing: a list of numbers.
        let listed: Item = serde_dynamo::to_item(&task).expect("to_item");
        assert!(matches!(
            &listed["request"],
            AttributeValue::M(r) if matches!(r.get("embedding"), Some(AttributeValue::L(_)))
        ));
        assert_eq!(decode(listed).expect("decode the list form"), task);
        // Without an embedding nothing is packed.
        let bare = task_with(None);
        assert_eq!(
            decode(encode(&bare).expect("encode")).expect("decode"),
            bare
        );
    }

    #[test]
    fn the_result_is_stored_as_json_text_and_reads_back_bit_for_bit() {
        let mut task = task_with(None);
        let matches = (0..20)
            .map(|i| {
                let similarity = 1.0 - (i as f64 * 0.137).sin().abs() / 3.0;
                JobMatch {
                    job_id: format!("job-{i}"),
                    title: "Nurse".into(),
                    company: "Acme".into(),
                    location: "Berlin".into(),
                    remote: i % 2 == 0,
                    employment_type: EmploymentType::FullTime,
                    salary_min: Some(50_000),
                    salary_max: None,
                    posted_at: chrono::Utc::now(),
                    similarity,
                    score: 0.8 * similarity + 0.2 / 3.0,
                    matched_skills: vec!["rust".into()],
                }
            })
            .collect();
        task.result = Some(MatchResult {
            matches,
            count: 20,
            query_ms: 1.0 / 7.0,
            cached: false,
            computed_at: Some(Timestamp::from(chrono::Utc::now())),
        });
        let item = encode(&task).expect("encode");
        assert!(
            matches!(item.get("result"), Some(AttributeValue::S(_))),
            "{item:?}"
        );
        assert_eq!(decode(item).expect("decode"), task);
        // A result written before: a map.
        let mapped: Item = serde_dynamo::to_item(&task).expect("to_item");
        assert!(matches!(mapped.get("result"), Some(AttributeValue::M(_))));
        assert_eq!(decode(mapped).expect("decode the map form"), task);
    }

    #[test]
    fn a_packed_embedding_of_the_wrong_size_is_an_error_not_a_short_vector() {
        let mut item = encode(&task_with(Some(vec![0.5; EMBEDDING_DIM]))).expect("encode");
        if let Some(AttributeValue::M(request)) = item.get_mut("request") {
            request.insert(
                "embedding".into(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0u8; 12])),
            );
        }
        let err = decode(item).expect_err("12 bytes are not an embedding");
        assert!(err.to_string().contains("12 bytes"), "{err}");
    }

    /// A failed task's code is a plain string attribute, as before the code
    /// was typed; a string this build does not know still reads.
    #[test]
    fn a_stored_error_code_is_its_string_and_unknown_ones_still_read() {
        let mut task = task_with(None);
        task.status = crate::domain::TaskStatus::Failed;
        task.error = Some(crate::domain::TaskError {
            code: ErrorCode::DeadLettered,
            message: "gone".into(),
        });
        let mut item = encode(&task).expect("encode");
        let Some(AttributeValue::M(error)) = item.get_mut("error") else {
            panic!("no error map: {item:?}");
        };
        assert_eq!(
            error.get("code"),
            Some(&AttributeValue::S("dead_lettered".into()))
        );
        assert_eq!(decode(item.clone()).expect("decode"), task);
        if let Some(AttributeValue::M(error)) = item.get_mut("error") {
            error.insert(
                "code".into(),
                AttributeValue::S("from_a_newer_release".into()),
            );
        }
        let read = decode(item).expect("an unknown code still reads");
        assert_eq!(read.error.map(|e| e.code), Some(ErrorCode::Unknown));
    }

    /// DynamoDB refuses a name placeholder that its expressions do not use,
    /// and an expression that uses one it was not given.
    #[test]
    fn each_update_names_exactly_the_placeholders_it_uses() {
        for update in [
            Update::Claim,
            Update::Complete,
            Update::Fail,
            Update::Release,
            Update::Cancel,
        ] {
            let mut used: Vec<&str> = update
                .expression()
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '#'))
                .filter(|w| w.starts_with('#') && *w != "#status")
                .collect();
            used.sort_unstable();
            used.dedup();
            let named: Vec<&str> = update.names().iter().map(|(p, _)| *p).collect();
            assert_eq!(used, named, "{update:?}");
        }
    }
}
