//! Entry point of the api function: reads config, builds the AWS clients, the
//! token verifier (fetching the HS256 secret once when it is in Secrets
//! Manager), the pool and the metrics collector once per container, then
//! serves requests with `handler::App`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api::handler;
use lambda_http::{Error, Request, RequestExt};
use metrics::Unit;
use shared::adapters::{
    db_connect::Db, dynamo::DynamoTaskStore, postgres, secrets, sqs::SqsTaskQueue,
};
use shared::config::{from_env, ApiConfig, AuthConfig, DbAuthConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: ApiConfig = from_env()?;
    let auth: AuthConfig = from_env()?;
    let db_auth: DbAuthConfig = from_env()?;
    let metrics = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace("jobmatch")
        .with_dimension("function", "api")
        .init()?;
    let aws = shared::aws::load_for_function().await?;
    let verifier = secrets::verifier(&auth, &aws_sdk_secretsmanager::Client::new(&aws)).await?;
    let db = Db::connect(
        config.database_url.expose(),
        config.db_max_connections,
        db_auth.db_auth,
        &aws,
    )
    .await?;
    let app = handler::App {
        store: DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), config.tasks_table),
        queue: SqsTaskQueue::new(aws_sdk_sqs::Client::new(&aws), config.queue_url),
        index: postgres::PgJobIndex::new(db.pool().clone(), config.exact_scan_max_rows)
            .with_statement_timeout(Duration::from_millis(config.db_statement_timeout_ms)),
        verifier,
        task_ttl_secs: config.task_ttl_secs,
    };
    let (app, db) = (&app, &db);
    // What metrics_cloudwatch_embedded's `run_http` did, without its
    // `lambda` feature (which pulls lambda_http's REST, WebSocket and ALB
    // event types): the RequestId property, ColdStart once, a flush after
    // each invocation.
    let cold = AtomicBool::new(true);
    let cold = &cold;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        let request_id = req.lambda_context_ref().map(|c| c.request_id.clone());
        metrics.set_property("RequestId", request_id.unwrap_or_default());
        if cold.swap(false, Ordering::Relaxed) {
            let written =
                metrics.write_single("ColdStart", Some(Unit::Count), 1, std::io::stdout());
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot write the ColdStart metric");
            }
        }
        // A fresh RDS IAM token for connections opened in this invocation.
        if let Err(e) = db.refresh().await {
            tracing::warn!(error = %e, "cannot refresh the database token");
        }
        let response = app.handle(req).await;
        if let Err(e) = metrics.flush(std::io::stdout()) {
            tracing::warn!(error = %e, "cannot flush the metrics");
        }
        Ok::<_, Error>(response)
    }))
    .await
}
