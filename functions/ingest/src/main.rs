//! Entry point of the ingest function: config, the model, the writer's
//! pool, the bucket, table and queue clients once per container, then
//! `handler::App` for each event (an SQS batch of S3 notifications, or the
//! daily schedule).

mod handler;
mod lines;

use std::time::{Duration, Instant};

use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use shared::adapters::db_connect::{Db, PoolSize};
use shared::adapters::dynamo_ingest::DynamoIngestStore;
use shared::adapters::postgres_catalogue::PgCatalogue;
use shared::adapters::s3::S3Objects;
use shared::adapters::sqs::SqsContinuations;
use shared::config::{from_env, DbAuthConfig, IngestConfig};

/// Kept free before the deadline: the record's last write and the
/// continuation's send.
const MARGIN: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: IngestConfig = from_env()?;
    let db_auth: DbAuthConfig = from_env()?;
    let aws = shared::aws::load_for_function().await?;
    let model = embed::MiniLm::load(&config.model_dir)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let db = Db::connect(
        config.writer_database_url.expose(),
        db_auth.db_auth,
        &aws,
        PoolSize::new(config.db_max_connections),
    )
    .await?;
    let app = handler::App {
        ingests: DynamoIngestStore::new(aws_sdk_dynamodb::Client::new(&aws), config.ingests_table),
        jobs: PgCatalogue::new(db),
        objects: S3Objects::for_config(&aws, config.ingest_bucket.clone()),
        embedder: embed::ModelEmbedder::new(model, cores),
        continuations: SqsContinuations::new(
            aws_sdk_sqs::Client::new(&aws),
            config.ingest_queue_url,
        ),
        bucket: config.ingest_bucket,
        chunk_lines: handler::CHUNK_LINES,
        margin: MARGIN,
        expired_retention_days: config.expired_retention_days,
    };
    let app = &app;
    let fallback = Duration::from_millis(config.ingest_fallback_timeout_ms);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<Value>| async move {
            let stop_at = stop_at(event.context.deadline, fallback);
            Ok::<Value, Error>(app.handle(event.payload, stop_at).await)
        },
    ))
    .await
}

/// The invocation's deadline as an Instant; a runtime that sends none
/// (`cargo lambda watch`) gets `now + fallback`.
fn stop_at(deadline_ms: u64, fallback: Duration) -> Instant {
    let now_ms = chrono::Utc::now().timestamp_millis();
    match i64::try_from(deadline_ms) {
        Ok(d) if d > now_ms => Instant::now() + Duration::from_millis((d - now_ms) as u64),
        _ => Instant::now() + fallback,
    }
}
