//! Entry point of the migrate function, a CloudFormation custom resource:
//! on Create and Update it runs the sqlx migrations (`CREATE EXTENSION vector`
//! included) through RDS Proxy, on Delete it does nothing, and it always PUTs
//! SUCCESS or FAILED to the pre-signed ResponseURL, so a failed migration
//! rolls the deploy back. An init error does not end the process: the
//! function starts anyway and answers FAILED with that error (`Migrator`).
//! The parts live in the library (`migrate_fn`).

use std::time::Duration;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use migrate_fn::{handler, time_left, HttpResponder, Migrator, ANSWER_MARGIN};
use shared::adapters::postgres;
use shared::config::{from_env, DbAuthConfig, MigrateConfig};
use shared::http_client::HttpClient;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    // The one init step whose failure cannot be answered: without a TLS
    // client no answer reaches the pre-signed HTTPS URL.
    let responder = HttpResponder {
        client: HttpClient::new(Duration::from_secs(15))?,
    };
    let migrator = init().await;
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

/// The migrator, or the init error to answer every Create and Update with.
async fn init() -> Migrator {
    let config: MigrateConfig = match from_env() {
        Ok(c) => c,
        Err(e) => return Migrator::init_failed(e),
    };
    let db_auth: DbAuthConfig = match from_env() {
        Ok(c) => c,
        Err(e) => return Migrator::init_failed(e),
    };
    let aws = match shared::aws::load_for_function().await {
        Ok(aws) => aws,
        Err(e) => return Migrator::init_failed(format!("AWS configuration: {e}")),
    };
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let mut logins = Vec::new();
    for (arn, variable, group) in [
        (
            &config.functions_db_secret_arn,
            "FUNCTIONS_DB_SECRET_ARN",
            postgres::READER_ROLE,
        ),
        (
            &config.writer_db_secret_arn,
            "WRITER_DB_SECRET_ARN",
            postgres::WRITER_ROLE,
        ),
    ] {
        if let Some(arn) = arn.as_deref().filter(|a| !a.is_empty()) {
            match migrate_fn::FunctionsLogin::fetch(&client, arn, variable, group).await {
                Ok(login) => logins.push(login),
                Err(e) => return Migrator::init_failed(e),
            }
        }
    }
    Migrator::connect(config.database_url.expose(), db_auth.db_auth, &aws, logins).await
}
