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

/// `RUST_LOG`'s directives, or `info` when it is unset or does not parse.
fn log_filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
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
    pub fn new(collector: &'static metrics_cloudwatch_embedded::Collector) -> InvocationMetrics {
        InvocationMetrics {
            collector,
            cold: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// At the start of an invocation.
    pub fn start(&self, request_id: &str) {
        self.collector
            .set_property("RequestId", request_id.to_owned());
        if self.cold.swap(false, std::sync::atomic::Ordering::Relaxed) {
            let unit = Some(metrics::Unit::Count);
            if let Err(e) = self
                .collector
                .write_single("ColdStart", unit, 1, std::io::stdout())
            {
                tracing::warn!(error = %e, "cannot write the ColdStart metric");
            }
        }
    }

    /// At the end of an invocation: the metrics it recorded, to stdout.
    pub fn finish(&self) {
        if let Err(e) = self.collector.flush(std::io::stdout()) {
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
}
