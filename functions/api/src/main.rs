//! Entry point of the api function: reads config, builds the AWS clients and
//! the pool once per container, then serves requests with `handler::App`.

mod handler;

use lambda_http::{run, service_fn, Error, Request};
use shared::adapters::{dynamo::DynamoTaskStore, postgres, sqs::SqsTaskQueue};
use shared::auth::Verifier;
use shared::config::{from_env, ApiConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config: ApiConfig = from_env()?;
    let aws = aws_config::load_from_env().await;
    let pool = postgres::lazy_pool(config.database_url.expose(), config.db_max_connections)?;
    let app = handler::App {
        store: DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), config.tasks_table),
        queue: SqsTaskQueue::new(aws_sdk_sqs::Client::new(&aws), config.queue_url),
        index: postgres::PgJobIndex::new(pool, config.exact_scan_max_rows),
        verifier: Verifier::hs256(
            config.jwt_secret.expose().as_bytes(),
            config.jwt_leeway_secs,
        ),
        task_ttl_secs: config.task_ttl_secs,
    };
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(app.handle(req).await)
    }))
    .await
}
