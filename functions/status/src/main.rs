//! Entry point of the status function: config and the DynamoDB client once per
//! container, then `handler::App`.

mod handler;

use lambda_http::{run, service_fn, Error, Request};
use shared::adapters::dynamo::DynamoTaskStore;
use shared::auth::Verifier;
use shared::config::{from_env, StatusConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config: StatusConfig = from_env()?;
    let aws = aws_config::load_from_env().await;
    let app = handler::App {
        store: DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), config.tasks_table),
        verifier: Verifier::hs256(
            config.jwt_secret.expose().as_bytes(),
            config.jwt_leeway_secs,
        ),
    };
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(app.handle(req).await)
    }))
    .await
}
