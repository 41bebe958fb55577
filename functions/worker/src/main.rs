//! Entry point of the worker function: config, the embedding model, the
//! cache's MAC key (fetched while the model loads when it is in Secrets
//! Manager), the DynamoDB and SQS clients, the PostgreSQL pool and the
//! metrics collector once per container, then `handler::App` for each SQS
//! batch.

mod handler;

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::adapters::cache::PgMatchCache;
use shared::adapters::db_connect::{Db, PoolSize};
use shared::adapters::{dynamo::DynamoTaskStore, postgres, secrets, sqs::SqsTaskQueue};
use shared::config::{from_env, CacheConfig, DbAuthConfig, WorkerConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: WorkerConfig = from_env()?;
    let db_auth: DbAuthConfig = from_env()?;
    let cache: CacheConfig = from_env()?;
    let metrics = shared::telemetry::InvocationMetrics::init("worker")?;
    let aws = shared::aws::load_for_function().await?;
    // The cache's MAC key (a Secrets Manager round trip in AWS) is fetched
    // while the model loads.
    let limits = cache.limits();
    let secrets_client = aws_sdk_secretsmanager::Client::new(&aws);
    let mac = tokio::spawn(async move { secrets::cache_mac(&cache, &secrets_client).await });
    // A missing or corrupt model stops the function here, naming its path.
    let loading = std::time::Instant::now();
    let model = embed::MiniLm::load(&config.model_dir)?;
    tracing::info!(
        model = model.id(),
        ms = loading.elapsed().as_secs_f64() * 1000.0,
        "embedding model loaded"
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let embedder =
        embed::ModelEmbedder::new(model, cores).with_max_word_pieces(config.max_text_word_pieces);
    let mac = mac.await??;
    let db = Db::connect(
        config.database_url.expose(),
        db_auth.db_auth,
        &aws,
        PoolSize::new(config.db_max_connections)
            .acquire_timeout(Duration::from_millis(config.db_acquire_timeout_ms)),
    )
    .await?;
    let app = handler::App {
        store: DynamoTaskStore::new(aws_sdk_dynamodb::Client::new(&aws), config.tasks_table),
        index: postgres::PgJobIndex::new(db.clone(), config.exact_scan_max_rows),
        queue: SqsTaskQueue::new(aws_sdk_sqs::Client::new(&aws), config.queue_url),
        embedder,
        cache: PgMatchCache::new(db, limits, mac.clone()),
        progress_mac: mac,
        max_receive_count: config.max_receive_count,
        max_deferrals: config.max_deferrals,
        concurrency: config.db_max_connections as usize,
        deadline_margin: Duration::from_millis(config.deadline_margin_ms),
    };
    let app = &app;
    let fallback_timeout = Duration::from_millis(config.fallback_timeout_ms);
    let metrics = &metrics;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<SqsEvent>| async move {
            metrics.start(&event.context.request_id);
            let deadline_ms = handler::deadline_or(event.context.deadline, fallback_timeout);
            let response = app.handle(event.payload, deadline_ms).await;
            metrics.finish();
            Ok::<SqsBatchResponse, Error>(response)
        },
    ))
    .await
}
