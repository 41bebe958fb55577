//! The dead-letter consumer: every message that reached the DLQ closes its
//! task as `failed` (`dead_lettered`), whatever the worker could not do
//! (crash, out of memory, time-out, failed start). A finished task is left as
//! it is. Each message is logged whole (id, body, SQS attributes) before it
//! is acknowledged: the log and the task's own item are what an operator
//! inspects. Only a message whose task could not be written is kept, for the
//! next delivery.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use futures::stream::{self, StreamExt};

use shared::domain::TaskMessage;
use shared::ports::TaskStore;
use shared::service;
use shared::telemetry::Counter;

/// Messages closed at once; each is one conditional write.
const CONCURRENCY: usize = 10;

pub struct App<S> {
    pub store: S,
}

impl<S: TaskStore> App<S> {
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let failures: Vec<String> = stream::iter(event.records)
            .map(|record| self.handle_record(record))
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

    /// Returns the message id when the message must be delivered again.
    async fn handle_record(&self, record: SqsMessage) -> Option<String> {
        let message_id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let attributes = serde_json::to_string(&record.attributes).unwrap_or_default();
        let Ok(message) = serde_json::from_str::<TaskMessage>(body) else {
            tracing::warn!(
                message_id,
                body,
                attributes,
                "dead letter without a task id"
            );
            Counter::DeadLettersIgnored.increment();
            return None;
        };
        let task_id = message.task_id.as_str();
        match service::dead_letter(&self.store, task_id, Utc::now()).await {
            Ok(true) => {
                tracing::warn!(
                    message_id,
                    task_id,
                    attributes,
                    "dead-lettered task closed as failed"
                );
                Counter::TasksDeadLettered.increment();
                None
            }
            Ok(false) => {
                tracing::info!(
                    message_id,
                    task_id,
                    attributes,
                    "dead letter of a finished, expired or unknown task; nothing to close"
                );
                Counter::DeadLettersIgnored.increment();
                None
            }
            Err(err) => {
                tracing::error!(message_id, task_id, error = %err, "cannot close the task; kept for the next delivery");
                Some(message_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::adapters::memory::MemoryTaskStore;
    use shared::domain::{MatchRequest, Task, TaskStatus};
    use shared::error::ErrorCode;

    fn task(store: &MemoryTaskStore, id: &str, status: TaskStatus) {
        let request = MatchRequest {
            embedding: None,
            text: None,
            skills: None,
            filters: Default::default(),
            limit: 3,
            callback: None,
        };
        let mut task = Task::pending(id.into(), "alice".into(), request, Utc::now(), 3600);
        task.status = status;
        store.tasks.lock().expect("lock").insert(id.into(), task);
    }

    fn message(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    fn status(app: &App<MemoryTaskStore>, id: &str) -> (TaskStatus, Option<ErrorCode>) {
        let tasks = app.store.tasks.lock().expect("lock");
        let t = &tasks[id];
        (t.status, t.error.as_ref().map(|e| e.code))
    }

    #[tokio::test]
    async fn closes_unfinished_tasks_and_acknowledges_everything() {
        let app = App {
            store: MemoryTaskStore::default(),
        };
        task(&app.store, "t-pending", TaskStatus::Pending);
        task(&app.store, "t-processing", TaskStatus::Processing);
        task(&app.store, "t-completed", TaskStatus::Completed);
        let mut event = SqsEvent::default();
        event.records = vec![
            message("m1", r#"{"task_id": "t-pending"}"#),
            message("m2", r#"{"task_id": "t-processing"}"#),
            message("m3", r#"{"task_id": "t-completed"}"#),
            message("m4", r#"{"task_id": "t-unknown"}"#),
            message("m5", "not json"),
        ];
        let response = app.handle(event).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "nothing is kept: {:?}",
            response.batch_item_failures
        );
        let dead = Some(ErrorCode::DeadLettered);
        assert_eq!(status(&app, "t-pending"), (TaskStatus::Failed, dead));
        assert_eq!(status(&app, "t-processing"), (TaskStatus::Failed, dead));
        assert_eq!(status(&app, "t-completed"), (TaskStatus::Completed, None));
    }
}
