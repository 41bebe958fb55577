//! The completion callbacks (DESIGN.md "Cancel and completion callbacks"),
//! in two steps, one per event source:
//! - the tasks table's stream: each task that has just ended with a
//!   `callback` becomes a [`Notice`] on the callbacks' queue (the worker and
//!   the api never wait for a receiver);
//! - the queue: each notice is POSTed, signed as Standard Webhooks 1.0
//!   specifies. A failed try comes back after the next of `retry_delays`
//!   (its message's visibility); once they are spent, the queue's redrive
//!   dead-letters it.
//!
//! Generic over the queue and the HTTP poster, so that unit tests run
//! without AWS or a receiver.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::Utc;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use shared::callback::{Delivery, Signer};
use shared::domain::{Task, TaskStatus};
use shared::error::{Error, Result};
use shared::http::TaskBody;
use shared::ports::CallbackOutbox;
use shared::telemetry::Counter;

/// One delivery to make: what the stream step queues and the queue step
/// POSTs. The body is rendered once, so every retry sends the same bytes
/// under the same `webhook-id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// `webhook-id`: the task's id (one end per task, so one delivery).
    pub webhook_id: String,
    pub url: String,
    /// The task's status body, as `GET /jobs/match/status/{id}` answers it.
    pub body: String,
}

impl Notice {
    /// The notice of a task that has just ended with a callback; `None` for
    /// any other change. `old` is the status before the change (absent for a
    /// new item). A task refused with 503 (`enqueue_failed`) was never
    /// accepted, so its caller hears nothing.
    pub fn of_change(old: Option<TaskStatus>, task: &Task) -> Result<Option<Notice>> {
        let Some(callback) = &task.request.callback else {
            return Ok(None);
        };
        let newly_ended = task.status.is_finished() && !old.is_some_and(TaskStatus::is_finished);
        if !newly_ended || task.error.as_ref().is_some_and(|e| e.never_queued()) {
            return Ok(None);
        }
        let body = serde_json::to_string(&TaskBody::status(task))
            .map_err(|e| Error::Internal(format!("encode the status body: {e}")))?;
        Ok(Some(Notice {
            webhook_id: task.task_id.clone(),
            url: callback.url.clone(),
            body,
        }))
    }
}

/// Sends a signed request; `shared::callback::Deliverer` in production,
/// which judges the URL (its guard) at every delivery.
pub trait Poster: Send + Sync {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> impl std::future::Future<Output = Delivery> + Send;
}

impl Poster for shared::callback::Deliverer {
    async fn post(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Delivery {
        shared::callback::Deliverer::post(self, url, headers, body).await
    }
}

/// Where the signing secrets come from: fixed (the local stack, tests), or
/// a Secrets Manager secret read again after `max_age`, so that a rotation
/// reaches every container within it.
pub enum Keys {
    Fixed(Arc<Signer>),
    Fetched {
        client: aws_sdk_secretsmanager::Client,
        arn: String,
        max_age: Duration,
        cached: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Signer>)>>,
    },
}

impl Keys {
    async fn signer(&self) -> Result<Arc<Signer>> {
        match self {
            Keys::Fixed(signer) => Ok(signer.clone()),
            Keys::Fetched {
                client,
                arn,
                max_age,
                cached,
            } => {
                let mut cached = cached.lock().await;
                if let Some((at, signer)) = cached.as_ref() {
                    if at.elapsed() < *max_age {
                        return Ok(signer.clone());
                    }
                }
                let secret =
                    shared::adapters::secrets::fetch_secret(client, arn, "WEBHOOK_SECRET_ARN")
                        .await
                        .map_err(|e| Error::unavailable("secretsmanager", e))?;
                let signer = Arc::new(signer_of(secret.expose())?);
                *cached = Some((std::time::Instant::now(), signer.clone()));
                Ok(signer)
            }
        }
    }
}

/// The signer of a secret's value; an error that names the setting, never
/// the value.
pub fn signer_of(secret: &str) -> Result<Signer> {
    Signer::new(secret).map_err(|e| {
        Error::Internal(format!(
            "the webhook secret (WEBHOOK_SECRET or WEBHOOK_SECRET_ARN) is not usable: {e}"
        ))
    })
}

pub struct App<O, P> {
    pub outbox: O,
    pub poster: P,
    pub keys: Keys,
    /// The waits before the retries, in order (`CALLBACK_RETRY_DELAYS_SECS`).
    pub retry_delays: Vec<Duration>,
}

/// How many deliveries of one batch run at once.
const CONCURRENCY: usize = 10;

impl<O: CallbackOutbox, P: Poster> App<O, P> {
    /// The stream step: queues a notice per task that has just ended with a
    /// callback. A record that cannot be read is logged and passed over (a
    /// failure would hold the shard back for every later task); one whose
    /// notice could not be queued is reported, so that the stream gives it
    /// (and those after it) again.
    pub async fn handle_stream(&self, event: StreamEvent) -> DynamoDbEventResponse {
        // Each queued body, and the sequence number of its record.
        let (mut bodies, mut sequence) = (Vec::new(), Vec::new());
        for record in &event.records {
            match notice_of(record) {
                Ok(Some(notice)) => match serde_json::to_string(&notice) {
                    Ok(json) => {
                        bodies.push(json);
                        sequence.push(record.change.sequence_number.clone());
                    }
                    Err(e) => tracing::error!(error = %e, "cannot encode a notice"),
                },
                Ok(None) => {}
                Err(e) => tracing::error!(
                    error = %e,
                    event_id = %record.event_id,
                    "a stream record that is not a task; passed over"
                ),
            }
        }
        let mut response = DynamoDbEventResponse::default();
        if bodies.is_empty() {
            return response;
        }
        let failed = match self.outbox.send(&bodies).await {
            Ok(failed) => failed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot queue the notices");
                (0..bodies.len()).collect()
            }
        };
        // The stream retries from the lowest sequence number reported.
        if let Some(first) = failed.first() {
            tracing::warn!(
                failed = failed.len(),
                "notices not queued; the stream gives them again"
            );
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = sequence[*first].clone();
            response.batch_item_failures.push(failure);
        } else {
            tracing::info!(queued = bodies.len(), "callback notices queued");
        }
        response
    }

    /// The queue step: one signed POST per notice, concurrently.
    pub async fn handle_queue(&self, event: SqsEvent) -> SqsBatchResponse {
        let failures: Vec<String> = stream::iter(event.records)
            .map(|record| self.deliver(record))
            .buffer_unordered(CONCURRENCY)
            .filter_map(|failed| async move { failed })
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        for id in failures {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// Delivers one notice; returns the message id when it must come back.
    async fn deliver(&self, record: SqsMessage) -> Option<String> {
        let message_id = record.message_id.clone().unwrap_or_default();
        let Some(notice) = record
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Notice>(b).ok())
        else {
            // Never deliverable: left for the redrive to dead-letter.
            tracing::error!(message_id, "unreadable callback notice");
            return Some(message_id);
        };
        let attempt: usize = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let span = tracing::info_span!("callback", task_id = %notice.webhook_id, attempt);
        let _entered = span.enter();
        let outcome = self.attempt(&notice).await;
        match outcome {
            Ok(Delivery::Delivered(status)) => {
                Counter::CallbacksDelivered.increment();
                tracing::info!(status, "callback delivered");
                None
            }
            Ok(Delivery::Refused(why)) => {
                // An address we never call: retrying cannot make it one.
                Counter::CallbacksRefused.increment();
                tracing::warn!(reason = %why, "callback refused by the address guard; dropped");
                None
            }
            Ok(failed @ (Delivery::Rejected(_) | Delivery::Failed(_))) => {
                self.again(&record, &message_id, attempt, &format!("{failed:?}"))
                    .await
            }
            Err(e) => {
                self.again(&record, &message_id, attempt, &e.to_string())
                    .await
            }
        }
    }

    /// Signs and sends a notice. An `Err` is ours (no usable secret), not
    /// the receiver's: the notice waits like any failed try.
    async fn attempt(&self, notice: &Notice) -> Result<Delivery> {
        let signer = self.keys.signer().await?;
        let timestamp = Utc::now().timestamp();
        let body = notice.body.as_bytes();
        let headers = [
            ("webhook-id", notice.webhook_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                signer.sign(&notice.webhook_id, timestamp, body),
            ),
        ];
        Ok(self.poster.post(&notice.url, &headers, body.to_vec()).await)
    }

    /// A failed try: the message comes back after the next delay, or, with
    /// none left, after the queue's visibility timeout, when the redrive
    /// moves it to the dead-letter queue.
    async fn again(
        &self,
        record: &SqsMessage,
        message_id: &str,
        attempt: usize,
        why: &str,
    ) -> Option<String> {
        Counter::CallbacksRetried.increment();
        match (
            self.retry_delays.get(attempt.saturating_sub(1)),
            &record.receipt_handle,
        ) {
            (Some(delay), Some(handle)) => {
                tracing::warn!(
                    reason = why,
                    next_in_secs = delay.as_secs(),
                    "callback failed; will retry"
                );
                if let Err(e) = self.outbox.retry_after(handle, *delay).await {
                    tracing::warn!(error = %e, "cannot set the retry's delay; it comes back sooner");
                }
            }
            _ => tracing::error!(
                reason = why,
                "callback failed on its last try; it goes to the dead-letter queue"
            ),
        }
        Some(message_id.to_owned())
    }
}

/// The notice of one stream record, if it asks for one.
fn notice_of(record: &EventRecord) -> Result<Option<Notice>> {
    let new: HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
        record.change.new_image.clone().into();
    if new.is_empty() {
        return Ok(None); // a REMOVE (TTL): no new image
    }
    let task = shared::adapters::dynamo::decode(new)?;
    let old = match record.change.old_image.get("status") {
        Some(status) => Some(
            serde_dynamo::from_attribute_value::<_, TaskStatus>(status.clone())
                .map_err(|e| Error::Internal(format!("old status: {e}")))?,
        ),
        None => None,
    };
    Notice::of_change(old, &task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::adapters::memory::MemoryOutbox;
    use shared::domain::{MatchRequest, TaskError};
    use shared::error::ErrorCode;
    use shared::request::Callback;
    use std::sync::Mutex;

    /// A request as the receiver got it: its headers and body.
    type Got = (Vec<(String, String)>, Vec<u8>);

    /// A receiver that answers from a script and records what it got.
    #[derive(Default)]
    struct Receiver {
        answers: Mutex<Vec<Delivery>>,
        got: Mutex<Vec<Got>>,
    }

    impl Poster for Receiver {
        async fn post(&self, _url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Delivery {
            let headers = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            self.got.lock().expect("lock").push((headers, body));
            let mut answers = self.answers.lock().expect("lock");
            if answers.is_empty() {
                Delivery::Delivered(200)
            } else {
                answers.remove(0)
            }
        }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn app() -> App<MemoryOutbox, Receiver> {
        App {
            outbox: MemoryOutbox::default(),
            poster: Receiver::default(),
            keys: Keys::Fixed(Arc::new(signer_of(SECRET).expect("secret"))),
            retry_delays: vec![Duration::from_secs(5), Duration::from_secs(300)],
        }
    }

    fn task(status: TaskStatus, url: Option<&str>) -> Task {
        let request = MatchRequest {
            callback: url.map(|u| Callback { url: u.into() }),
            ..MatchRequest::default()
        };
        let mut task = Task::pending("t-1".into(), "alice".into(), request, Utc::now(), 3600);
        task.status = status;
        task
    }

    fn image(task: &Task) -> serde_dynamo::Item {
        serde_dynamo::to_item(task).expect("item")
    }

    fn record(seq: &str, old: Option<&Task>, new: &Task) -> EventRecord {
        let mut record = EventRecord::default();
        record.event_name = "MODIFY".into();
        record.change.sequence_number = Some(seq.into());
        record.change.new_image = image(new);
        if let Some(old) = old {
            record.change.old_image = image(old);
        }
        record
    }

    fn stream(records: Vec<EventRecord>) -> StreamEvent {
        let mut event = StreamEvent::default();
        event.records = records;
        event
    }

    #[test]
    fn only_a_task_that_has_just_ended_with_a_callback_gets_a_notice() {
        let url = Some("https://example.com/hook");
        for end in [
            TaskStatus::Completed,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ] {
            let ended = task(end, url);
            let notice = Notice::of_change(Some(TaskStatus::Processing), &ended)
                .expect("notice")
                .expect("one");
            assert_eq!(notice.webhook_id, "t-1");
            assert_eq!(notice.url, "https://example.com/hook");
            let body: serde_json::Value = serde_json::from_str(&notice.body).expect("json");
            assert_eq!(
                body,
                serde_json::to_value(TaskBody::status(&ended)).expect("json")
            );
            // Already ended before: told once only.
            assert_eq!(Notice::of_change(Some(end), &ended).expect("ok"), None);
        }
        let running = task(TaskStatus::Processing, url);
        assert_eq!(
            Notice::of_change(Some(TaskStatus::Pending), &running).expect("ok"),
            None
        );
        let silent = task(TaskStatus::Completed, None);
        assert_eq!(
            Notice::of_change(Some(TaskStatus::Processing), &silent).expect("ok"),
            None
        );
        let mut refused = task(TaskStatus::Failed, url);
        refused.error = Some(TaskError {
            code: ErrorCode::EnqueueFailed,
            message: "not queued".into(),
        });
        assert_eq!(
            Notice::of_change(Some(TaskStatus::Pending), &refused).expect("ok"),
            None,
            "a task answered 503 was never accepted"
        );
    }

    #[tokio::test]
    async fn the_stream_step_queues_the_ended_tasks_and_reports_the_first_it_could_not() {
        let app = app();
        let url = Some("https://example.com/hook");
        let event = stream(vec![
            record(
                "1",
                Some(&task(TaskStatus::Pending, url)),
                &task(TaskStatus::Processing, url),
            ),
            record(
                "2",
                Some(&task(TaskStatus::Processing, url)),
                &task(TaskStatus::Completed, url),
            ),
            record(
                "3",
                Some(&task(TaskStatus::Processing, None)),
                &task(TaskStatus::Failed, None),
            ),
        ]);
        let response = app.handle_stream(event.clone()).await;
        assert!(response.batch_item_failures.is_empty());
        let sent = app.outbox.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), 1);
        let notice: Notice = serde_json::from_str(&sent[0]).expect("notice");
        assert_eq!(notice.webhook_id, "t-1");
        assert!(
            notice.body.contains(r#""status":"completed""#),
            "{}",
            notice.body
        );

        let down = App {
            outbox: MemoryOutbox {
                down: true,
                ..Default::default()
            },
            ..app
        };
        let response = down.handle_stream(event).await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(ids, [Some("2".to_owned())]);
    }

    fn message(notice: &Notice, receive_count: u32) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("m-{receive_count}"));
        m.receipt_handle = Some(format!("rh-{receive_count}"));
        m.body = Some(serde_json::to_string(notice).expect("json"));
        m.attributes
            .insert("ApproximateReceiveCount".into(), receive_count.to_string());
        m
    }

    fn queue(messages: Vec<SqsMessage>) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = messages;
        event
    }

    fn notice(url: &str) -> Notice {
        Notice {
            webhook_id: "t-1".into(),
            url: url.into(),
            body: r#"{"task_id":"t-1","status":"completed"}"#.into(),
        }
    }

    #[tokio::test]
    async fn a_delivery_is_signed_and_a_failed_one_waits_for_the_next_delay_then_is_dead_lettered()
    {
        let app = app();
        *app.poster.answers.lock().expect("lock") = vec![
            Delivery::Rejected(500),
            Delivery::Failed("timed out".into()),
        ];
        let n = notice("https://example.com/hook");
        for receive in 1..=3 {
            let response = app.handle_queue(queue(vec![message(&n, receive)])).await;
            let failed = !response.batch_item_failures.is_empty();
            assert_eq!(failed, receive < 3, "try {receive}");
        }
        assert_eq!(
            *app.outbox.delays.lock().expect("lock"),
            [
                ("rh-1".to_owned(), Duration::from_secs(5)),
                ("rh-2".to_owned(), Duration::from_secs(300)),
            ]
        );
        let got = app.poster.got.lock().expect("lock").clone();
        assert_eq!(got.len(), 3);
        for (headers, body) in &got {
            let h: HashMap<_, _> = headers.iter().cloned().collect();
            assert_eq!(h["webhook-id"], "t-1", "the same id on every try");
            assert_eq!(body, n.body.as_bytes());
            let timestamp: i64 = h["webhook-timestamp"].parse().expect("epoch seconds");
            assert!((Utc::now().timestamp() - timestamp).abs() < 5);
            assert!(h["webhook-signature"].starts_with("v1,"), "{h:?}");
        }
        // Past the last delay: reported, with no delay set, so that the
        // redrive dead-letters it.
        *app.poster.answers.lock().expect("lock") = vec![Delivery::Rejected(503)];
        let response = app.handle_queue(queue(vec![message(&n, 3)])).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(app.outbox.delays.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn a_delivery_the_guard_refuses_is_dropped_not_retried() {
        let app = app();
        *app.poster.answers.lock().expect("lock") =
            vec![Delivery::Refused("resolves to a private address".into())];
        let response = app
            .handle_queue(queue(vec![message(&notice("https://example.com/"), 1)]))
            .await;
        assert!(response.batch_item_failures.is_empty());
        assert!(
            app.outbox.delays.lock().expect("lock").is_empty(),
            "no retry"
        );
        // Unreadable: reported, for the redrive.
        let mut bad = message(&notice("https://example.com/"), 1);
        bad.body = Some("not json".into());
        let response = app.handle_queue(queue(vec![bad])).await;
        assert_eq!(response.batch_item_failures.len(), 1);
    }
}
