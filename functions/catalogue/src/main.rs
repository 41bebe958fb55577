//! Entry point of the catalogue function: config, the writer's pool, the
//! ingest bucket and table, and the token verifier once per container, then
//! `handler::App`.

mod handler;

use lambda_http::{run, service_fn, Error, Request};
use shared::adapters::db_connect::{Db, PoolSize};
use shared::adapters::dynamo_ingest::DynamoIngestStore;
use shared::adapters::postgres_catalogue::PgCatalogue;
use shared::adapters::s3::S3Objects;
use shared::adapters::secrets;
use shared::config::{from_env, AuthConfig, CatalogueConfig, DbAuthConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: CatalogueConfig = from_env()?;
    let auth: AuthConfig = from_env()?;
    let db_auth: DbAuthConfig = from_env()?;
    let aws = shared::aws::load_for_function().await?;
    let verifier = secrets::verifier(&auth, &aws_sdk_secretsmanager::Client::new(&aws)).await?;
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
        bucket: config.ingest_bucket,
        verifier,
        admin_group: config.admin_group.filter(|g| !g.is_empty()),
    };
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(app.handle(req).await)
    }))
    .await
}
