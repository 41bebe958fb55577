//! A text's embedding progress carried with the work (a tokio task-local,
//! as `deadline` carries the stop time): the worker puts the progress of an
//! earlier delivery in, the embedder goes on from it and leaves its own when
//! it stops, and the worker sends that with the task it hands back. Work run
//! outside [`tracked`] keeps no progress.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::domain::EmbedProgress;

type Slot = Arc<Mutex<Option<EmbedProgress>>>;

tokio::task_local! {
    static SLOT: Slot;
}

/// Runs `work` with `start` as the progress so far; answers its output and
/// the progress it left (`start` if it left none).
pub async fn tracked<F: Future>(
    start: Option<EmbedProgress>,
    work: F,
) -> (F::Output, Option<EmbedProgress>) {
    let slot: Slot = Arc::new(Mutex::new(start));
    let output = SLOT.scope(slot.clone(), work).await;
    let left = slot.lock().map(|p| p.clone()).unwrap_or(None);
    (output, left)
}

/// The progress so far, if the work is tracked and has some.
pub fn current() -> Option<EmbedProgress> {
    SLOT.try_with(|slot| slot.lock().ok().and_then(|p| p.clone()))
        .ok()
        .flatten()
}

/// Leaves `progress` for the next delivery (nothing outside [`tracked`]).
pub fn record(progress: EmbedProgress) {
    let _ = SLOT.try_with(|slot| {
        if let Ok(mut p) = slot.lock() {
            *p = Some(progress);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_goes_in_and_comes_out_only_inside() {
        let p = |windows| EmbedProgress::new("m", "text", windows, 3, &[0.5; 384]);
        assert_eq!(current(), None);
        record(p(1));
        assert_eq!(current(), None, "outside: nothing kept");
        let (seen, left) = tracked(Some(p(1)), async {
            let seen = current();
            tokio::task::yield_now().await;
            record(p(2));
            seen
        })
        .await;
        assert_eq!(seen, Some(p(1)));
        assert_eq!(left, Some(p(2)));
        let (_, untouched) = tracked(Some(p(4)), async {}).await;
        assert_eq!(untouched, Some(p(4)));
    }

    #[test]
    fn progress_is_of_one_text_and_model_and_keeps_the_sum_exactly() {
        let sum: Vec<f32> = (0..384).map(|i| i as f32 * 0.1 - 7.3).collect();
        let p = EmbedProgress::new("model-a", "a resume", 2, 500, &sum);
        assert_eq!(p.sum_for("model-a", "a resume"), Some(sum));
        assert_eq!(p.sum_for("model-a", "another resume"), None);
        assert_eq!(p.sum_for("model-b", "a resume"), None);
        let short = EmbedProgress {
            sum: "AAAA".into(),
            ..p.clone()
        };
        assert_eq!(short.sum_for("model-a", "a resume"), None);
        let json = serde_json::to_string(&p).expect("json");
        let back: EmbedProgress = serde_json::from_str(&json).expect("back");
        assert_eq!(back, p);
    }
}
