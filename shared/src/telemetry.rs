//! Structured JSON logs for the functions. Each line carries its spans, so the
//! Lambda request id (the runtime's invoke span) and the task id (the worker's
//! per-message span) appear on every line written while they are open. Also
//! the functions' per-invocation CloudWatch EMF metrics.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Installs the JSON subscriber; `RUST_LOG` filters (default `info`).
///
/// The filter is `Targets` (`info`, `sqlx=warn,info`...), not `EnvFilter`:
/// EnvFilter's span and field directives, unused here, bring a regex engine
/// that added 0.36 MB to every bootstrap.
pub fn init_json_logs() {
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(false)
                .with_span_list(true)
                .with_target(false),
        )
        .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .init();
}

/// Targets whose TRACE events print payloads: lambda_runtime's
/// `layers/api_response.rs` each raw invoke event (request bodies: resumes,
/// query vectors, bearer tokens), and the AWS SDK's `client/orchestrator.rs`
/// each request as sent (a task item with its text and embedding).
const PAYLOAD_TARGETS: [&str; 2] = [
    "lambda_runtime::layers::api_response",
    "aws_smithy_runtime::client::orchestrator",
];

/// `RUST_LOG`'s directives, or `info` when it is unset or does not parse;
/// whatever they ask, [`PAYLOAD_TARGETS`] log at DEBUG at most.
fn log_filter(rust_log: Option<&str>) -> Targets {
    let targets = rust_log
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    PAYLOAD_TARGETS.iter().fold(targets, |targets, target| {
        // Lowered, never raised: `warn` stays `warn` there. Directives
        // with the same target replace each other, so this one wins.
        if targets.would_enable(target, &tracing::Level::TRACE) {
            targets.with_target(*target, LevelFilter::DEBUG)
        } else {
            targets
        }
    })
}

/// Per-invocation EMF metrics: what metrics_cloudwatch_embedded's `lambda`
/// layer does, without that feature (it pulls all of lambda_http's event
/// types into the bootstraps): the RequestId property, ColdStart once, and a
/// flush after each invocation.
pub struct InvocationMetrics {
    collector: &'static metrics_cloudwatch_embedded::Collector,
    cold: std::sync::atomic::AtomicBool,
}

impl InvocationMetrics {
    /// Installs the process's metrics recorder: namespace `jobmatch`,
    /// dimension `function`.
    pub fn init(
        function: &'static str,
    ) -> Result<InvocationMetrics, metrics_cloudwatch_embedded::Error> {
        let collector = metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace("jobmatch")
            .with_dimension("function", function)
            .init()?;
        Ok(InvocationMetrics {
            collector,
            cold: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// At the start of an invocation.
    pub fn start(&self, request_id: &str) {
        self.start_to(request_id, std::io::stdout());
    }

    /// At the end of an invocation: the metrics it recorded, to stdout.
    pub fn finish(&self) {
        self.finish_to(std::io::stdout());
    }

    fn start_to(&self, request_id: &str, out: impl std::io::Write) {
        self.collector
            .set_property("RequestId", request_id.to_owned());
        if self.cold.swap(false, std::sync::atomic::Ordering::Relaxed) {
            let unit = Some(metrics::Unit::Count);
            if let Err(e) = self.collector.write_single("ColdStart", unit, 1, out) {
                tracing::warn!(error = %e, "cannot write the ColdStart metric");
            }
        }
    }

    fn finish_to(&self, out: impl std::io::Write) {
        if let Err(e) = self.collector.flush(out) {
            tracing::warn!(error = %e, "cannot flush the metrics");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_directives_or_info() {
        let default = log_filter(None);
        assert!(default.would_enable("api", &Level::INFO));
        assert!(!default.would_enable("api", &Level::DEBUG));

        let custom = log_filter(Some("sqlx=warn,debug"));
        assert!(custom.would_enable("api", &Level::DEBUG));
        assert!(!custom.would_enable("sqlx::query", &Level::INFO));
        assert!(custom.would_enable("sqlx::query", &Level::WARN));

        // A value that does not parse falls back to info.
        let bad = log_filter(Some("sqlx=loud"));
        assert!(bad.would_enable("api", &Level::INFO));
        assert!(!bad.would_enable("api", &Level::DEBUG));
    }

    /// `trace`, even named for the very target, never reaches the events that
    /// print request bodies; other targets keep it, and a lower level stays.
    #[test]
    fn payloads_are_never_traced() {
        let event = "lambda_runtime::layers::api_response";
        let sdk = "aws_smithy_runtime::client::orchestrator";
        for rust_log in [
            "trace",
            "lambda_runtime=trace,aws_smithy_runtime=trace",
            "lambda_runtime::layers::api_response=trace,aws_smithy_runtime::client::orchestrator=trace,info",
        ] {
            let f = log_filter(Some(rust_log));
            for target in [event, sdk, "aws_smithy_runtime::client::orchestrator::auth"] {
                assert!(!f.would_enable(target, &Level::TRACE), "{rust_log}: {target}");
                assert!(f.would_enable(target, &Level::DEBUG), "{rust_log}: {target}");
            }
        }
        let f = log_filter(Some("trace"));
        assert!(f.would_enable("lambda_runtime::runtime", &Level::TRACE));
        assert!(f.would_enable("worker", &Level::TRACE));
        let f = log_filter(Some("warn"));
        assert!(!f.would_enable(event, &Level::INFO));
        assert!(f.would_enable(event, &Level::WARN));
        assert!(!log_filter(None).would_enable(sdk, &Level::DEBUG));
    }

    /// The only test that installs the process's metrics recorder.
    #[test]
    fn cold_start_once_and_each_invocation_flushed_with_its_request_id() {
        let metrics = InvocationMetrics::init("test").expect("the first recorder");
        let text = |buf: Vec<u8>| String::from_utf8(buf).expect("utf8");

        let mut first = Vec::new();
        metrics.start_to("req-1", &mut first);
        let first = text(first);
        assert!(first.contains(r#""ColdStart":1"#), "{first}");
        assert!(first.contains(r#""RequestId":"req-1""#), "{first}");
        assert!(first.contains(r#""function":"test""#), "{first}");

        let mut second = Vec::new();
        metrics.start_to("req-2", &mut second);
        assert!(second.is_empty(), "{}", text(second));
        metrics::counter!("Probe").increment(2);
        let mut flushed = Vec::new();
        metrics.finish_to(&mut flushed);
        let flushed = text(flushed);
        assert!(flushed.contains(r#""Probe":2"#), "{flushed}");
        assert!(flushed.contains(r#""RequestId":"req-2""#), "{flushed}");
        assert!(!flushed.contains("ColdStart"), "{flushed}");
    }
}
