//! The SQS queue adapter against the local moto server.

mod common;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use shared::adapters::sqs::{SqsTaskQueue, DEFERRALS_ATTRIBUTE, PROGRESS_ATTRIBUTE};
use shared::domain::{Routing, TaskMessage};
use shared::ports::TaskQueue;

/// The one message waiting on `url`: its body.
async fn receive_one(client: &aws_sdk_sqs::Client, url: &str) -> String {
    let received = client
        .receive_message()
        .queue_url(url)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages[0].body.clone().expect("body")
}

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
    let message = TaskMessage::new("t-42");
    queue
        .send(&message, &Routing::default())
        .await
        .expect("send");
    let body: TaskMessage = serde_json::from_str(&receive_one(&client, &url).await).expect("json");
    assert_eq!(body.task_id, "t-42");

    // A caller's group (a fair queue's tenant) and a handed-back task's count
    // travel as metadata; the body stays `{"task_id"}`.
    let progress = shared::domain::EmbedProgress::new("model", "a resume", 3, 700, &[0.25; 384]);
    let routing = Routing {
        group: Some("3f7a".into()),
        deferrals: 2,
        progress: Some(progress.clone()),
    };
    queue.send(&message, &routing).await.expect("send");
    let received = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive");
    let m = &received.messages.unwrap_or_default()[0];
    assert_eq!(m.body.as_deref(), Some(r#"{"task_id":"t-42"}"#));
    let group = m
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId));
    assert_eq!(group.map(String::as_str), Some("3f7a"));
    let deferrals = m
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(DEFERRALS_ATTRIBUTE))
        .and_then(|v| v.string_value.as_deref());
    assert_eq!(deferrals, Some("2"));
    let carried = m
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(PROGRESS_ATTRIBUTE))
        .and_then(|v| v.string_value.as_deref())
        .map(|json| serde_json::from_str(json).expect("progress json"));
    assert_eq!(carried, Some(progress));
    client
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete");

    let gone = SqsTaskQueue::new(client, url);
    assert!(gone.ping().await.is_err(), "a deleted queue is unhealthy");
}

/// `.local/env`'s `AWS_ENDPOINT_URL` alone reaches SQS too (DESIGN.md: "any
/// tool"): the DynamoDB server passes SQS requests on to the SQS one.
#[tokio::test]
async fn the_general_endpoint_reaches_sqs_too() {
    let general = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let config = aws_sdk_sqs::config::Builder::from(&common::local_aws().await)
        .endpoint_url(&general)
        .build();
    let client = aws_sdk_sqs::Client::from_conf(config);
    let name = common::unique("general-endpoint");
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("create queue through AWS_ENDPOINT_URL")
        .queue_url
        .expect("queue url");
    client
        .send_message()
        .queue_url(&url)
        .message_body("through the general endpoint")
        .send()
        .await
        .expect("send");
    // The same queue, read through the SQS server's own endpoint.
    let direct = aws_sdk_sqs::Client::new(&common::local_aws().await);
    let listed = direct
        .list_queues()
        .queue_name_prefix(&name)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.queue_urls.unwrap_or_default().len(), 1);
    assert_eq!(
        receive_one(&client, &url).await,
        "through the general endpoint"
    );
    // DynamoDB still answers on it.
    let ddb = aws_sdk_dynamodb::Client::new(&common::local_aws().await);
    ddb.list_tables()
        .send()
        .await
        .expect("dynamodb on the general endpoint");
}
