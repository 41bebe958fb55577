//! The SQS queue adapter against the local moto server.

mod common;

use shared::adapters::sqs::SqsTaskQueue;
use shared::domain::TaskMessage;
use shared::ports::TaskQueue;

#[tokio::test]
async fn sends_the_task_message_as_json() {
    let client = aws_sdk_sqs::Client::new(&common::local_aws().await);
    let name = common::unique("queue-test");
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let queue = SqsTaskQueue::new(client.clone(), url.clone());
    queue.ping().await.expect("ping");
    queue
        .send(&TaskMessage {
            task_id: "t-42".into(),
        })
        .await
        .expect("send");
    let received = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    let body: TaskMessage =
        serde_json::from_str(messages[0].body.as_deref().expect("body")).expect("json");
    assert_eq!(body.task_id, "t-42");
    client
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete");

    let gone = SqsTaskQueue::new(client, url);
    assert!(gone.ping().await.is_err(), "a deleted queue is unhealthy");
}
