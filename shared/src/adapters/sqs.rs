//! The match queue on SQS, the ingest queue's continuations, and the
//! callbacks' queue.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use aws_sdk_sqs::Client;

use crate::domain::{Routing, TaskMessage};
use crate::error::{Error, Result};
use crate::ports::{CallbackOutbox, Continuations, TaskQueue};

const COMPONENT: &str = "sqs";
/// The message attribute that counts a task's deferrals (`Routing::deferrals`).
pub const DEFERRALS_ATTRIBUTE: &str = "deferrals";
/// The message attribute with a handed-back task's embedding progress
/// (`Routing::progress`, JSON): the body stays `{"task_id"}`.
pub const PROGRESS_ATTRIBUTE: &str = "progress";

#[derive(Clone, Debug)]
pub struct SqsTaskQueue {
    client: Client,
    queue_url: String,
}

impl SqsTaskQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> SqsTaskQueue {
        SqsTaskQueue {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl TaskQueue for SqsTaskQueue {
    async fn send(&self, message: &TaskMessage, routing: &Routing) -> Result<()> {
        let body = serde_json::to_string(message).map_err(|e| Error::Internal(e.to_string()))?;
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            // On a standard queue a group makes it a fair queue, the group
            // being the caller; unlike a FIFO queue's, it orders nothing.
            .set_message_group_id(routing.group.clone());
        if routing.deferrals > 0 {
            let count = MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(routing.deferrals.to_string())
                .build()
                .map_err(|e| Error::Internal(e.to_string()))?;
            send = send.message_attributes(DEFERRALS_ATTRIBUTE, count);
        }
        if let Some(progress) = &routing.progress {
            let json =
                serde_json::to_string(progress).map_err(|e| Error::Internal(e.to_string()))?;
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(json)
                .build()
                .map_err(|e| Error::Internal(e.to_string()))?;
            send = send.message_attributes(PROGRESS_ATTRIBUTE, value);
        }
        send.send()
            .await
            .map_err(|e| Error::unavailable(COMPONENT, DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| Error::unavailable(COMPONENT, DisplayErrorContext(e)))?;
        Ok(())
    }
}

/// The ingest queue, where an ingest out of time queues its object's
/// notification again to go on from its checkpoint.
#[derive(Clone, Debug)]
pub struct SqsContinuations {
    client: Client,
    queue_url: String,
}

impl SqsContinuations {
    pub fn new(client: Client, queue_url: impl Into<String>) -> SqsContinuations {
        SqsContinuations {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl Continuations for SqsContinuations {
    async fn send_again(&self, body: &str) -> Result<()> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| Error::unavailable(COMPONENT, DisplayErrorContext(e)))?;
        Ok(())
    }
}

/// The callbacks' queue: a notice per ended task with a callback, and the
/// wait before a failed delivery's next try.
#[derive(Clone, Debug)]
pub struct SqsCallbackOutbox {
    client: Client,
    queue_url: String,
}

impl SqsCallbackOutbox {
    pub fn new(client: Client, queue_url: impl Into<String>) -> SqsCallbackOutbox {
        SqsCallbackOutbox {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// SendMessageBatch takes at most this many messages, and this many bytes
/// of bodies in all (256 KiB, SQS's long-standing limit; one message alone
/// may now be up to 1 MiB, so a larger notice goes in a batch of its own).
const SQS_BATCH: usize = 10;
const SQS_BATCH_BYTES: usize = 256 * 1024;

/// The index ranges of `bodies` that fit one SendMessageBatch each, in order.
fn batches(bodies: &[String]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        let full = i - start == SQS_BATCH || bytes + body.len() > SQS_BATCH_BYTES;
        if i > start && full {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        out.push(start..bodies.len());
    }
    out
}

impl CallbackOutbox for SqsCallbackOutbox {
    async fn send(&self, bodies: &[String]) -> Result<Vec<usize>> {
        let mut failed = Vec::new();
        for range in batches(bodies) {
            let entries = range
                .clone()
                .map(|i| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&bodies[i])
                        .build()
                        .map_err(|e| Error::Internal(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match out {
                Ok(out) => {
                    failed.extend(out.failed.iter().filter_map(|f| f.id.parse::<usize>().ok()))
                }
                Err(e) => {
                    tracing::warn!(error = %DisplayErrorContext(e), "cannot queue callbacks");
                    failed.extend(range);
                }
            }
        }
        failed.sort_unstable();
        Ok(failed)
    }

    async fn retry_after(&self, receipt_handle: &str, delay: std::time::Duration) -> Result<()> {
        // SQS takes at most 12 hours.
        let secs = i32::try_from(delay.as_secs().min(43_200)).unwrap_or(43_200);
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| Error::unavailable(COMPONENT, DisplayErrorContext(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{batches, SQS_BATCH_BYTES};

    #[test]
    fn callback_batches_hold_ten_notices_or_256_kib_and_a_large_one_goes_alone() {
        let small = |n: usize| vec!["x".repeat(100); n];
        assert!(batches(&small(0)).is_empty());
        assert_eq!(batches(&small(23)), [0..10, 10..20, 20..23]);
        let mut mixed = small(3);
        mixed.push("y".repeat(SQS_BATCH_BYTES - 200)); // over the limit with the three
        mixed.push("z".repeat(SQS_BATCH_BYTES + 1)); // over it: alone
        mixed.extend(small(2));
        assert_eq!(batches(&mixed), [0..3, 3..4, 4..5, 5..7]);
        for range in batches(&mixed) {
            let bytes: usize = mixed[range.clone()].iter().map(String::len).sum();
            assert!(range.len() == 1 || bytes <= SQS_BATCH_BYTES, "{range:?}");
        }
    }
}
