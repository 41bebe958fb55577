//! The moment a task's work must stop by, carried with the work (a tokio
//! task-local) so that the adapters that can stop early see it without every
//! port taking it: the model checks it between windows, the matcher turns it
//! into a statement timeout. Work run outside [`within`] has no deadline.

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static STOP_AT: Instant;
}

/// Runs `work` with `stop_at` as its deadline.
pub async fn within<F: Future>(stop_at: Instant, work: F) -> F::Output {
    STOP_AT.scope(stop_at, work).await
}

/// The deadline of the work being run, if it has one.
pub fn stop_at() -> Option<Instant> {
    STOP_AT.try_with(|at| *at).ok()
}

/// The time left before the deadline (zero once it has passed); `None`
/// without a deadline.
pub fn remaining() -> Option<Duration> {
    stop_at().map(|at| at.saturating_duration_since(Instant::now()))
}

/// The `Instant` of a deadline given in epoch milliseconds (the worker's
/// invocation deadline), on the monotonic clock the checks compare with.
pub fn instant_at(epoch_ms: i64) -> Instant {
    let left = epoch_ms - chrono::Utc::now().timestamp_millis();
    Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_is_seen_inside_and_only_inside() {
        assert_eq!(stop_at(), None);
        assert_eq!(remaining(), None);
        let at = Instant::now() + Duration::from_secs(60);
        let inside = within(at, async {
            tokio::task::yield_now().await;
            (stop_at(), remaining())
        })
        .await;
        assert_eq!(inside.0, Some(at));
        assert!(inside.1.is_some_and(|d| d > Duration::from_secs(59)));
        let past = within(Instant::now(), async { remaining() }).await;
        assert_eq!(past, Some(Duration::ZERO));
        assert_eq!(stop_at(), None);
    }

    #[test]
    fn an_epoch_deadline_becomes_an_instant() {
        let now = chrono::Utc::now().timestamp_millis();
        let at = instant_at(now + 5_000);
        let left = at.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
        assert!(instant_at(now - 5_000) <= Instant::now());
    }
}
