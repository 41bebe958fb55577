//! `GET /health` (no token): each dependency the api reaches (PostgreSQL
//! with its pgvector version, DynamoDB, SQS) probed concurrently within
//! `HEALTH_TIMEOUT`, and the answer kept per instance for `HEALTH_CACHE_TTL`.

use std::time::{Duration, Instant};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;

use shared::error::{Error, Result};
use shared::http;
use shared::ports::{JobIndex, TaskQueue, TaskStore};

use crate::handler::App;

/// Each health probe gets this long; the checks run concurrently, so
/// `/health` answers within about this time whatever hangs.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an instance answers `/health` from its last deep check. The
/// route needs no token, so without this every call (a monitor, a load
/// balancer, anyone on the internet) would reach PostgreSQL, DynamoDB and SQS;
/// with it an instance probes them at most once per window, whatever the
/// request rate. A failure shows within the window (plus HEALTH_TIMEOUT).
pub const HEALTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// The last deep health check of this instance (status and body), reused
/// until `ttl` has passed. Its clock is tokio's, which tests can pause and
/// advance.
pub struct HealthCache {
    ttl: Duration,
    last: std::sync::Mutex<Option<CachedHealth>>,
}

struct CachedHealth {
    at: tokio::time::Instant,
    status: StatusCode,
    body: serde_json::Value,
}

impl HealthCache {
    /// A cache that keeps an answer for `ttl` (zero: probe on every call).
    pub fn new(ttl: Duration) -> HealthCache {
        HealthCache {
            ttl,
            last: std::sync::Mutex::new(None),
        }
    }

    fn fresh(&self, now: tokio::time::Instant) -> Option<(StatusCode, serde_json::Value)> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|c| now.saturating_duration_since(c.at) < self.ttl)
            .map(|c| (c.status, c.body.clone()))
    }

    fn store(&self, at: tokio::time::Instant, status: StatusCode, body: &serde_json::Value) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedHealth {
            at,
            status,
            body: body.clone(),
        });
    }
}

impl Default for HealthCache {
    fn default() -> HealthCache {
        HealthCache::new(HEALTH_CACHE_TTL)
    }
}

impl<S: TaskStore, Q: TaskQueue, J: JobIndex, R, C> App<S, Q, J, R, C> {
    /// The last deep check while it is younger than the cache's window, a
    /// new one otherwise; the body is the same either way.
    pub(crate) async fn health(&self) -> Response<Body> {
        if let Some((status, body)) = self.health_cache.fresh(tokio::time::Instant::now()) {
            return http::json(status, &body);
        }
        // The window starts when the probes start: their answers are at most
        // this old.
        let started = tokio::time::Instant::now();
        let (status, body) = self.deep_health().await;
        self.health_cache.store(started, status, &body);
        http::json(status, &body)
    }

    /// Checks each dependency concurrently, each within its own timeout.
    async fn deep_health(&self) -> (StatusCode, serde_json::Value) {
        let (postgres, dynamodb, sqs) = tokio::join!(
            check(self.index.pgvector_version()),
            check(self.store.ping()),
            check(self.queue.ping()),
        );
        let timeout_ms = HEALTH_TIMEOUT.as_millis() as u64;
        let component = |(outcome, ms): &(Result<Option<String>, ProbeFailure>, f64)| match outcome
        {
            Ok(pgvector) => {
                let mut c = json!({"status": "ok", "latency_ms": ms, "timeout_ms": timeout_ms});
                if let Some(v) = pgvector {
                    c["pgvector"] = json!(v);
                }
                c
            }
            Err(e) => json!({
                "status": "down",
                "latency_ms": ms,
                "timeout_ms": timeout_ms,
                "error": health_error(e),
            }),
        };
        let failing: Vec<&str> = [
            ("postgres", &postgres.0),
            ("dynamodb", &dynamodb.0),
            ("sqs", &sqs.0),
        ]
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect();
        let healthy = failing.is_empty();
        let (postgres, dynamodb, sqs) =
            (component(&postgres), component(&dynamodb), component(&sqs));
        let body = json!({
            "status": if healthy { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "failing": failing,
            "components": {
                "postgres": postgres,
                "dynamodb": dynamodb,
                "sqs": sqs,
            },
        });
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body)
    }
}

/// Why a health probe reports its component down.
enum ProbeFailure {
    /// No answer within `HEALTH_TIMEOUT`.
    TimedOut,
    Failed(Error),
}

/// Runs one health probe within the timeout; returns its outcome and latency.
async fn check<T: HealthDetail>(
    probe: impl std::future::Future<Output = Result<T>>,
) -> (Result<Option<String>, ProbeFailure>, f64) {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
        Ok(r) => r.map(HealthDetail::detail).map_err(ProbeFailure::Failed),
        Err(_) => Err(ProbeFailure::TimedOut),
    };
    let ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    (outcome, ms)
}

/// The reason a component is down, without internals (addresses, messages).
fn health_error(failure: &ProbeFailure) -> String {
    match failure {
        ProbeFailure::TimedOut => format!("no answer within {} ms", HEALTH_TIMEOUT.as_millis()),
        ProbeFailure::Failed(Error::Unavailable { .. }) => "unavailable".into(),
        ProbeFailure::Failed(other) => other.code().as_str().replace('_', " "),
    }
}

/// What a health probe reports besides "ok".
trait HealthDetail {
    fn detail(self) -> Option<String>;
}
impl HealthDetail for () {
    fn detail(self) -> Option<String> {
        None
    }
}
impl HealthDetail for String {
    fn detail(self) -> Option<String> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::tests::{app, json_body, request, request_with, SECRET};
    use shared::adapters::memory::{MemoryJobIndex, MemoryTaskStore};
    use shared::auth::Verifier;
    use shared::ports::NoCache;

    /// A probe that never answers.
    struct Hangs;
    impl TaskQueue for Hangs {
        async fn send(
            &self,
            _: &shared::domain::TaskMessage,
            _: &shared::domain::Routing,
        ) -> Result<()> {
            std::future::pending().await
        }
        async fn ping(&self) -> Result<()> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn health_never_hangs_and_names_the_component_that_does() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: Hangs,
            index: MemoryJobIndex::default(),
            quota: crate::handler::tests::quota(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: crate::handler::tests::text_bound(),
            health_cache: HealthCache::default(),
            callbacks: shared::callback::CallbackPolicy::new(""),
            cache: NoCache,
        };
        let started = tokio::time::Instant::now();
        let resp = app.handle(request_with("GET", "/health", b"", &[])).await;
        // Virtual time: the answer came at the probe timeout, not later.
        assert_eq!(started.elapsed(), HEALTH_TIMEOUT);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = json_body(&resp);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["failing"], serde_json::json!(["sqs"]));
        assert_eq!(body["components"]["sqs"]["status"], "down");
        assert_eq!(
            body["components"]["sqs"]["error"],
            "no answer within 2000 ms"
        );
        assert_eq!(body["components"]["sqs"]["timeout_ms"], 2000);
        assert_eq!(body["components"]["postgres"]["status"], "ok");
        assert_eq!(body["components"]["dynamodb"]["status"], "ok");
    }

    /// A queue whose every call fails at once.
    struct Down;
    impl TaskQueue for Down {
        async fn send(
            &self,
            _: &shared::domain::TaskMessage,
            _: &shared::domain::Routing,
        ) -> Result<()> {
            Err(Error::unavailable("sqs", "connection refused at 10.0.0.7"))
        }
        async fn ping(&self) -> Result<()> {
            Err(Error::unavailable("sqs", "connection refused at 10.0.0.7"))
        }
    }

    #[tokio::test]
    async fn health_is_503_naming_a_failing_component() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: Down,
            index: MemoryJobIndex::default(),
            quota: crate::handler::tests::quota(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: crate::handler::tests::text_bound(),
            health_cache: HealthCache::default(),
            callbacks: shared::callback::CallbackPolicy::new(""),
            cache: NoCache,
        };
        let resp = app.handle(request_with("GET", "/health", b"", &[])).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = json_body(&resp);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["failing"], serde_json::json!(["sqs"]));
        assert_eq!(body["components"]["sqs"]["status"], "down");
        assert_eq!(body["components"]["sqs"]["error"], "unavailable");
        // Internals (addresses) stay in the log.
        assert!(!String::from_utf8_lossy(resp.body().as_ref()).contains("10.0.0.7"));
    }

    #[tokio::test]
    async fn health_reports_each_component() {
        let resp = app(false).handle(request("GET", "/health", "", None)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = json_body(&resp);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["failing"], serde_json::json!([]));
        assert_eq!(body["components"]["postgres"]["pgvector"], "memory");
        for c in ["postgres", "dynamodb", "sqs"] {
            assert_eq!(body["components"][c]["status"], "ok");
            assert_eq!(body["components"][c]["timeout_ms"], 2000);
            assert!(body["components"][c]["latency_ms"].is_number());
        }
    }

    /// A queue that counts its health probes.
    #[derive(Default)]
    struct CountingQueue {
        pings: std::sync::atomic::AtomicUsize,
    }
    impl TaskQueue for CountingQueue {
        async fn send(
            &self,
            _: &shared::domain::TaskMessage,
            _: &shared::domain::Routing,
        ) -> Result<()> {
            Ok(())
        }
        async fn ping(&self) -> Result<()> {
            self.pings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    // Paused virtual time: the clock moves only by `advance`.
    #[tokio::test(start_paused = true)]
    async fn health_probes_once_per_window_and_again_after_it() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: CountingQueue::default(),
            index: MemoryJobIndex::default(),
            quota: crate::handler::tests::quota(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: crate::handler::tests::text_bound(),
            health_cache: HealthCache::default(),
            callbacks: shared::callback::CallbackPolicy::new(""),
            cache: NoCache,
        };
        let pings = || app.queue.pings.load(std::sync::atomic::Ordering::SeqCst);
        let health = || app.handle(request_with("GET", "/health", b"", &[]));

        let first = health().await;
        assert_eq!(pings(), 1);
        tokio::time::advance(HEALTH_CACHE_TTL - Duration::from_millis(1)).await;
        let second = health().await;
        assert_eq!(pings(), 1, "a call within the window probes nothing");
        // The same answer, byte for byte, with the same headers.
        assert_eq!(second.status(), first.status());
        assert_eq!(second.headers(), first.headers());
        assert_eq!(second.body().as_ref(), first.body().as_ref());
        assert_eq!(json_body(&second)["status"], "ok");

        tokio::time::advance(Duration::from_millis(1)).await;
        let third = health().await;
        assert_eq!(pings(), 2, "the window is over: probe again");
        assert_eq!(third.status(), 200);
        let _ = health().await;
        assert_eq!(pings(), 2, "and the new answer starts a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_degraded_answer_is_kept_for_the_window_too() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: Down,
            index: MemoryJobIndex::default(),
            quota: crate::handler::tests::quota(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: crate::handler::tests::text_bound(),
            health_cache: HealthCache::default(),
            callbacks: shared::callback::CallbackPolicy::new(""),
            cache: NoCache,
        };
        let first = app.handle(request_with("GET", "/health", b"", &[])).await;
        let second = app.handle(request_with("GET", "/health", b"", &[])).await;
        assert_eq!(first.status(), 503);
        assert_eq!(second.status(), 503);
        assert_eq!(second.body().as_ref(), first.body().as_ref());
    }

    #[tokio::test]
    async fn a_zero_window_probes_on_every_call() {
        let app = App {
            store: MemoryTaskStore::default(),
            queue: CountingQueue::default(),
            index: MemoryJobIndex::default(),
            quota: crate::handler::tests::quota(),
            verifier: Verifier::hs256(SECRET, 0),
            task_ttl_secs: 3600,
            legacy_text_wait: Duration::from_millis(300),
            text_bound: crate::handler::tests::text_bound(),
            health_cache: HealthCache::new(Duration::ZERO),
            callbacks: shared::callback::CallbackPolicy::new(""),
            cache: NoCache,
        };
        for _ in 0..3 {
            let resp = app.handle(request_with("GET", "/health", b"", &[])).await;
            assert_eq!(resp.status(), 200);
        }
        assert_eq!(app.queue.pings.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
