//! Entry point of the api function: reads config, builds the AWS clients and
//! the pool once per container, then serves requests with `handler::App`.

mod handler;

use lambda_http::{run, service_fn, Error, Request};
use shared::adapters::{db_connect::Db, dynamo::DynamoTaskStore, postgres, sqs::SqsTaskQueue};
use shared::auth::Verifier;
use shared::config::{from_env, ApiConfig, DbAuthConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config: ApiConfig = from_env()?;
    let db_auth: DbAuthConfig = from_env()?;
    let aws = aws_config::load_from_env().await;
    let db = Db::connect(
        config.database_url.expose(),
        config.db_max_connections,
        db_auth.db_auth,
        &aws,
    )
    .await?;
    let pool = db.pool().clone();
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
    let (app, db) = (&app, &db);
    run(service_fn(move |req: Request| async move {
        // A fresh RDS IAM token for connections opened in this invocation.
        if let Err(e) = db.refresh().await {
            tracing::warn!(error = %e, "cannot refresh the database token");
        }
        Ok::<_, std::convert::Infallible>(app.handle(req).await)
    }))
    .await
}
