//! Entry point of the completion callbacks' function: config, clients and
//! the signing secrets once per container, then `handler::App` for each
//! batch, from the tasks table's stream or from the callbacks' queue.

mod handler;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;
use shared::adapters::sqs::SqsCallbackOutbox;
use shared::callback::{CallbackPolicy, Deliverer};
use shared::config::{from_env, CallbackConfig, ConfigError};

/// Which event source an invocation comes from: its records'
/// `eventSource` (one mapping per invocation, so the first record's).
#[derive(Deserialize)]
enum Source {
    #[serde(rename = "aws:dynamodb")]
    Stream,
    #[serde(rename = "aws:sqs")]
    Queue,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "Records", default)]
    records: Vec<ProbeRecord>,
}

#[derive(Deserialize)]
struct ProbeRecord {
    #[serde(rename = "eventSource")]
    source: Source,
}

/// A rotated secret reaches every container within this.
const SECRET_MAX_AGE: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_json_logs();
    let config: CallbackConfig = from_env()?;
    let metrics = shared::telemetry::InvocationMetrics::init("callback")?;
    let aws = shared::aws::load_for_function().await?;
    let inline = config
        .webhook_secret
        .as_ref()
        .filter(|s| !s.expose().is_empty());
    let keys = match (inline, config.webhook_secret_arn.as_deref()) {
        (Some(secret), _) => handler::Keys::Fixed(Arc::new(handler::signer_of(secret.expose())?)),
        (None, Some(arn)) if !arn.is_empty() => handler::Keys::Fetched {
            client: aws_sdk_secretsmanager::Client::new(&aws),
            arn: arn.to_owned(),
            max_age: SECRET_MAX_AGE,
            cached: tokio::sync::Mutex::default(),
        },
        (None, _) => {
            return Err(ConfigError::new("WEBHOOK_SECRET or WEBHOOK_SECRET_ARN is not set").into())
        }
    };
    let timeout = Duration::from_millis(config.callback_timeout_ms);
    let app = handler::App {
        outbox: SqsCallbackOutbox::new(aws_sdk_sqs::Client::new(&aws), config.callback_queue_url),
        poster: Deliverer::new(CallbackPolicy::new(&config.callback_allow_hosts), timeout)?,
        keys,
        retry_delays: config
            .callback_retry_delays_secs
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect(),
    };
    let (app, metrics) = (&app, &metrics);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<Value>| async move {
            metrics.start(&event.context.request_id);
            let probe: Probe = serde_json::from_value(event.payload.clone())?;
            let response = match probe.records.first().map(|r| &r.source) {
                Some(Source::Stream) => {
                    let batch: StreamEvent = serde_json::from_value(event.payload)?;
                    serde_json::to_value(app.handle_stream(batch).await)?
                }
                Some(Source::Queue) => {
                    let batch: SqsEvent = serde_json::from_value(event.payload)?;
                    serde_json::to_value(app.handle_queue(batch).await)?
                }
                None => serde_json::json!({"batchItemFailures": []}),
            };
            metrics.finish();
            Ok::<Value, Error>(response)
        },
    ))
    .await
}
