//! Entry point of the api function: reads config, builds the AWS clients, the
//! token verifier and the cache's MAC key (fetching the HS256 secret and the
//! key once, side by side, when they are in Secrets Manager), the pool, the
//! quota's buckets, the text bound (the bundled tokenizer) and the metrics
//! collector once per container, then serves requests with `handler::App`.

use std::time::Duration;

use api::handler;
use lambda_http::{Error, Request, RequestExt};
use shared::adapters::cache::PgMatchCache;
use shared::adapters::db_connect::{Db, PoolSize};
use shared::adapters::dynamo_quota::DynamoQuota;
use shared::adapters::{dynamo::DynamoTaskStore, postgres, secrets, sqs::SqsTaskQueue};
use shared::config::{from_env, ApiConfig, AuthConfig, CacheConfig, DbAuthConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: ApiConfig = from_env()?;
    let auth: AuthConfig = from_env()?;
    let db_auth: DbAuthConfig = from_env()?;
    let cache: CacheConfig = from_env()?;
    let quota = config.quota_policy()?;
    let metrics = shared::telemetry::InvocationMetrics::init("api")?;
    // The tokenizer (the bound on a text) is parsed on the blocking pool
    // while the init waits on the network below.
    let word_pieces = tokio::task::spawn_blocking(embed::tokenizer::WordPieces::bundled);
    let aws = shared::aws::load_for_function().await?;
    let secrets_client = aws_sdk_secretsmanager::Client::new(&aws);
    let (verifier, mac) = tokio::try_join!(
        secrets::verifier(&auth, &secrets_client),
        secrets::cache_mac(&cache, &secrets_client)
    )?;
    let db = Db::connect(
        config.database_url.expose(),
        db_auth.db_auth,
        &aws,
        PoolSize::new(config.db_max_connections),
    )
    .await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let word_pieces = word_pieces
        .await?
        .map_err(|e| format!("the bundled tokenizer: {e}"))?;
    let app = handler::App {
        quota: DynamoQuota::new(dynamodb.clone(), config.quota_table, quota),
        store: DynamoTaskStore::new(dynamodb, config.tasks_table),
        queue: SqsTaskQueue::new(aws_sdk_sqs::Client::new(&aws), config.queue_url),
        index: postgres::PgJobIndex::new(db.clone(), config.exact_scan_max_rows),
        cache: PgMatchCache::new(db, cache.limits(), mac),
        verifier,
        task_ttl_secs: config.task_ttl_secs,
        legacy_text_wait: Duration::from_millis(config.legacy_text_wait_ms),
        text_bound: embed::tokenizer::TextBound::new(word_pieces, config.max_text_word_pieces),
        health_cache: api::health::HealthCache::default(),
        callbacks: shared::callback::CallbackPolicy::new(&config.callback_allow_hosts),
    };
    let app = &app;
    let metrics = &metrics;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        let request_id = req.lambda_context_ref().map(|c| c.request_id.clone());
        metrics.start(&request_id.unwrap_or_default());
        let response = app.handle(req).await;
        metrics.finish();
        Ok::<_, Error>(response)
    }))
    .await
}
