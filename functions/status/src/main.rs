//! Entry point of the status function: config, the DynamoDB client and the
//! token verifier once per container, then `handler::App`.

mod handler;

use lambda_http::{run, service_fn, Error, Request};
use shared::adapters::{dynamo::DynamoTaskStore, secrets};
use shared::config::{from_env, AuthConfig, StatusConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: StatusConfig = from_env()?;
    let auth: AuthConfig = from_env()?;
    let aws = shared::aws::load_for_function().await?;
    let verifier = secrets::verifier(&auth, &aws_sdk_secretsmanager::Client::new(&aws)).await?;
    let app = handler::App {
        store: DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), config.tasks_table),
        verifier,
    };
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(app.handle(req).await)
    }))
    .await
}
