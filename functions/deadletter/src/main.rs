//! Entry point of the dead-letter consumer: config and the DynamoDB client
//! once per container, then `handler::App` for each batch of the DLQ.

mod handler;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::dynamo::DynamoTaskStore;
use shared::config::{from_env, DeadLetterConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: DeadLetterConfig = from_env()?;
    let metrics = shared::telemetry::InvocationMetrics::init("deadletter")?;
    let aws = shared::aws::load_for_function().await?;
    let app = handler::App {
        store: DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), config.tasks_table),
    };
    let (app, metrics) = (&app, &metrics);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<SqsEvent>| async move {
            metrics.start(&event.context.request_id);
            let response = app.handle(event.payload).await;
            metrics.finish();
            Ok::<SqsBatchResponse, Error>(response)
        },
    ))
    .await
}
