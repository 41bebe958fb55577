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

/// The counts jobmatch writes (unit `Count`); with [`Histogram`], every
/// metric of namespace `jobmatch`, dimension `function`. docs/operations.md
/// "Metrics" says what each means. The names are what alarms
/// (template.yaml) and dashboards read: they must not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    ColdStart,
    TasksCompleted,
    TasksFailed,
    TasksRetried,
    DuplicateDeliveries,
    MessagesPoisoned,
    MessagesNotStarted,
    TasksDeadLettered,
    DeadLettersIgnored,
    /// A task out of time handed back as a new message (a deferral).
    TasksDeferred,
    /// A task ended `cancelled` by its owner (the api).
    TasksCancelled,
    /// A worker stopped a task its owner cancelled, before the search.
    CancelledWorkStopped,
    /// A callback delivery answered 2xx.
    CallbacksDelivered,
    /// A callback not sent: its URL's address is forbidden (at delivery).
    CallbacksRefused,
    /// A callback attempt that failed and waits for its next try (after the
    /// last one, the message goes to the callbacks' DLQ).
    CallbacksRetried,
    /// A cache answered, with dimension `kind`.
    CacheHits(CacheKind),
    CacheMisses(CacheKind),
}

/// The `kind` dimension of the cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    Result,
    Embedding,
}

impl CacheKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheKind::Result => "result",
            CacheKind::Embedding => "embedding",
        }
    }
}

impl Counter {
    /// Every counter (the cache ones with one of their kinds).
    pub const ALL: [Counter; 17] = [
        Counter::ColdStart,
        Counter::TasksCompleted,
        Counter::TasksFailed,
        Counter::TasksRetried,
        Counter::DuplicateDeliveries,
        Counter::MessagesPoisoned,
        Counter::MessagesNotStarted,
        Counter::TasksDeadLettered,
        Counter::DeadLettersIgnored,
        Counter::TasksDeferred,
        Counter::TasksCancelled,
        Counter::CancelledWorkStopped,
        Counter::CallbacksDelivered,
        Counter::CallbacksRefused,
        Counter::CallbacksRetried,
        Counter::CacheHits(CacheKind::Result),
        Counter::CacheMisses(CacheKind::Result),
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Counter::ColdStart => "ColdStart",
            Counter::TasksCompleted => "TasksCompleted",
            Counter::TasksFailed => "TasksFailed",
            Counter::TasksRetried => "TasksRetried",
            Counter::DuplicateDeliveries => "DuplicateDeliveries",
            Counter::MessagesPoisoned => "MessagesPoisoned",
            Counter::MessagesNotStarted => "MessagesNotStarted",
            Counter::TasksDeadLettered => "TasksDeadLettered",
            Counter::DeadLettersIgnored => "DeadLettersIgnored",
            Counter::TasksDeferred => "TasksDeferred",
            Counter::TasksCancelled => "TasksCancelled",
            Counter::CancelledWorkStopped => "CancelledWorkStopped",
            Counter::CallbacksDelivered => "CallbacksDelivered",
            Counter::CallbacksRefused => "CallbacksRefused",
            Counter::CallbacksRetried => "CallbacksRetried",
            Counter::CacheHits(_) => "CacheHits",
            Counter::CacheMisses(_) => "CacheMisses",
        }
    }

    pub const fn unit(self) -> metrics::Unit {
        metrics::Unit::Count
    }

    /// Counts one.
    pub fn increment(self) {
        match self {
            Counter::CacheHits(kind) | Counter::CacheMisses(kind) => {
                metrics::counter!(self.name(), "kind" => kind.as_str()).increment(1)
            }
            _ => metrics::counter!(self.name()).increment(1),
        }
    }
}

/// The durations jobmatch writes (unit `Milliseconds`); see [`Counter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histogram {
    QueueWaitMs,
    ProcessingMs,
    QueryMs,
    EmbedMs,
}

impl Histogram {
    pub const ALL: [Histogram; 4] = [
        Histogram::QueueWaitMs,
        Histogram::ProcessingMs,
        Histogram::QueryMs,
        Histogram::EmbedMs,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Histogram::QueueWaitMs => "QueueWaitMs",
            Histogram::ProcessingMs => "ProcessingMs",
            Histogram::QueryMs => "QueryMs",
            Histogram::EmbedMs => "EmbedMs",
        }
    }

    pub const fn unit(self) -> metrics::Unit {
        metrics::Unit::Milliseconds
    }

    /// Records one duration in milliseconds.
    pub fn record(self, ms: f64) {
        metrics::histogram!(self.name()).record(ms);
    }
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
        // The recorder keeps each name's unit, which EMF writes beside it.
        for c in Counter::ALL {
            metrics::describe_counter!(c.name(), c.unit(), "");
        }
        for h in Histogram::ALL {
            metrics::describe_histogram!(h.name(), h.unit(), "");
        }
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
            let (name, unit) = (Counter::ColdStart.name(), Counter::ColdStart.unit());
            if let Err(e) = self.collector.write_single(name, Some(unit), 1, out) {
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
        Histogram::QueryMs.record(3.5);
        Counter::TasksCompleted.increment();
        Counter::CacheHits(CacheKind::Embedding).increment();
        let mut flushed = Vec::new();
        metrics.finish_to(&mut flushed);
        let flushed = text(flushed);
        assert!(flushed.contains(r#""Probe":2"#), "{flushed}");
        assert!(flushed.contains(r#""RequestId":"req-2""#), "{flushed}");
        assert!(!flushed.contains("ColdStart"), "{flushed}");
        // Each with its unit; the cache counter with its kind.
        assert!(
            flushed.contains(r#"{"Name":"QueryMs","Unit":"Milliseconds"}"#),
            "{flushed}"
        );
        assert!(
            flushed.contains(r#"{"Name":"TasksCompleted","Unit":"Count"}"#),
            "{flushed}"
        );
        // Not its count: the service's tests, in this process, count cache hits too.
        assert!(flushed.contains(r#""kind":"embedding""#), "{flushed}");
        assert!(
            flushed.contains(r#"{"Name":"CacheHits","Unit":"Count"}"#),
            "{flushed}"
        );
    }

    fn names() -> Vec<&'static str> {
        let counters = Counter::ALL.iter().map(|c| c.name());
        counters
            .chain(Histogram::ALL.iter().map(|h| h.name()))
            .collect()
    }

    /// The names on the wire: alarms and dashboards read them.
    #[test]
    fn metric_names_stay_as_they_are() {
        assert_eq!(
            names(),
            [
                "ColdStart",
                "TasksCompleted",
                "TasksFailed",
                "TasksRetried",
                "DuplicateDeliveries",
                "MessagesPoisoned",
                "MessagesNotStarted",
                "TasksDeadLettered",
                "DeadLettersIgnored",
                "TasksDeferred",
                "TasksCancelled",
                "CancelledWorkStopped",
                "CallbacksDelivered",
                "CallbacksRefused",
                "CallbacksRetried",
                "CacheHits",
                "CacheMisses",
                "QueueWaitMs",
                "ProcessingMs",
                "QueryMs",
                "EmbedMs",
            ]
        );
    }

    /// Every `jobmatch` metric an alarm of template.yaml reads is one of ours.
    #[test]
    fn the_template_alarms_read_metrics_defined_here() {
        let template = include_str!("../../template.yaml");
        let mut namespace = "";
        let mut read = Vec::new();
        for line in template.lines().map(str::trim) {
            if let Some(ns) = line.strip_prefix("Namespace:") {
                namespace = ns.trim();
            } else if let Some(name) = line.strip_prefix("MetricName:") {
                if namespace == "jobmatch" {
                    read.push(name.trim());
                }
            }
        }
        assert!(!read.is_empty(), "template.yaml reads no jobmatch metric");
        for name in read {
            assert!(names().contains(&name), "template.yaml reads {name}");
        }
    }

    /// docs/operations.md's table lists each metric once, with its unit.
    #[test]
    fn the_operations_guide_lists_each_metric_with_its_unit() {
        let guide = include_str!("../../docs/operations.md");
        let section = guide
            .split("### Metrics")
            .nth(1)
            .and_then(|s| s.split("\n#").next())
            .expect("a Metrics section");
        let mut listed: Vec<(&str, &str)> = section
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `")?.split('|');
                let name = cells.next()?.trim().strip_suffix('`')?;
                Some((name, cells.next()?.trim()))
            })
            .collect();
        listed.sort_unstable();
        let unit = |u: metrics::Unit| match u {
            metrics::Unit::Count => "count",
            metrics::Unit::Milliseconds => "ms",
            other => panic!("no spelling for {other:?}"),
        };
        let counters = Counter::ALL.iter().map(|c| (c.name(), unit(c.unit())));
        let histograms = Histogram::ALL.iter().map(|h| (h.name(), unit(h.unit())));
        let mut ours: Vec<(&str, &str)> = counters.chain(histograms).collect();
        ours.sort_unstable();
        assert_eq!(listed, ours);
    }
}
