//! Structured JSON logs for the functions. Each line carries its spans, so the
//! Lambda request id (the runtime's invoke span) and the task id (the worker's
//! per-message span) appear on every line written while they are open.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber; `RUST_LOG` filters (default `info`).
pub fn init_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .init();
}
