//! The match queue on SQS.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;

use crate::domain::TaskMessage;
use crate::error::{Error, Result};
use crate::ports::TaskQueue;

const COMPONENT: &str = "sqs";

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
    async fn send(&self, message: &TaskMessage) -> Result<()> {
        let body = serde_json::to_string(message).map_err(|e| Error::Internal(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
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
