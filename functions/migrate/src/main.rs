//! Entry point of the migrate function, a CloudFormation custom resource:
//! on Create and Update it runs the sqlx migrations (`CREATE EXTENSION vector`
//! included) through RDS Proxy, on Delete it does nothing, and it always PUTs
//! SUCCESS or FAILED to the pre-signed ResponseURL, so a failed migration
//! rolls the deploy back. The parts live in the library (`migrate_fn`).

use std::time::Duration;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use migrate_fn::{handler, time_left, HttpResponder, PgMigrator, ANSWER_MARGIN};
use shared::adapters::db_connect::Db;
use shared::config::{from_env, DbAuthConfig, MigrateConfig};
use shared::http_client::HttpClient;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: MigrateConfig = from_env()?;
    let db_auth: DbAuthConfig = from_env()?;
    let aws = shared::aws::load_for_function().await?;
    let migrator = PgMigrator {
        db: Db::connect(config.database_url.expose(), 1, db_auth.db_auth, &aws).await?,
    };
    let responder = HttpResponder {
        client: HttpClient::new(Duration::from_secs(15))?,
    };
    let (migrator, responder) = (&migrator, &responder);
    run(service_fn(
        move |event: LambdaEvent<CloudFormationCustomResourceRequest>| async move {
            let within = time_left(event.context.deadline).saturating_sub(ANSWER_MARGIN);
            let log_stream = event.context.env_config.log_stream.clone();
            let status = handler::handle(&event.payload, migrator, responder, within, &log_stream)
                .await
                .map_err(Error::from)?;
            tracing::info!(?status, "answered CloudFormation");
            Ok::<(), Error>(())
        },
    ))
    .await
}
