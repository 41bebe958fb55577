//! Entry point of the worker function: config, the DynamoDB client and the
//! PostgreSQL pool once per container, then `handler::App` for each SQS batch.

mod handler;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::adapters::{db_connect::Db, dynamo::DynamoTaskStore, postgres};
use shared::config::{from_env, DbAuthConfig, WorkerConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config: WorkerConfig = from_env()?;
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
        index: postgres::PgJobIndex::new(pool, config.exact_scan_max_rows),
        max_receive_count: config.max_receive_count,
        concurrency: config.db_max_connections as usize,
    };
    let (app, db) = (&app, &db);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // A fresh RDS IAM token for connections opened in this invocation.
        if let Err(e) = db.refresh().await {
            tracing::warn!(error = %e, "cannot refresh the database token");
        }
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        Ok::<SqsBatchResponse, Error>(app.handle(event.payload, deadline_ms).await)
    }))
    .await
}
